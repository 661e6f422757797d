/* fileio.h — whole-file reads for the tools (images to upload, catalogs). */
#ifndef CR_FILEIO_H
#define CR_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CR_FILE_MAX_BYTES ((size_t)1 << 30) /* 1 GiB: nothing cirrus reads whole is larger */

/* Reads all of `path` into a malloc'd buffer (NUL-terminated one past *len, so text can be
 * used as a string). CR_ERR_IO names the file and the reason. */
cr_err cr_file_read(const char *path, uint8_t **data, size_t *len);

/* Copies `src` to `dst` (created; an existing dst is CR_ERR_IO), streaming, then fsyncs dst.
 * src is read through one open descriptor: a file renamed over src meanwhile does not tear
 * the copy. *bytes (may be NULL) gets the size copied. */
cr_err cr_file_copy(const char *src, const char *dst, uint64_t *bytes);

#endif
