#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cr_err cr_file_read(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long size;
    uint8_t *buf;
    if (!f)
        return cr_error_set(CR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return cr_error_set(CR_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    if ((size_t)size > CR_FILE_MAX_BYTES) {
        fclose(f);
        return cr_error_set(CR_ERR_IO, "%s: larger than 1 GiB", path);
    }
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return cr_error_set(buf ? CR_ERR_IO : CR_ERR_NOMEM, "%s: cannot read", path);
    }
    fclose(f);
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return CR_OK;
}
