/* jsonfile.h — the one way cirrus reads a JSON file (datasets, annotations, configs). */
#ifndef CR_JSONFILE_H
#define CR_JSONFILE_H

#include <jansson.h>

#include "common/err.h"

/* Parses the file at `path` into *out (a new reference). A duplicate key in any object is an
 * error, as is anything after the value. Errors: CR_ERR_IO when the file cannot be opened,
 * CR_ERR_INVALID when it is not JSON ("PATH: malformed JSON at line L, column C: why"). */
cr_err cr_json_load_file(const char *path, json_t **out);

#endif
