#include "common/jsonfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

cr_err cr_json_load_file(const char *path, json_t **out)
{
    json_error_t e;
    json_t *j;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cr_error_set(CR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    j = json_loadf(f, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    fclose(f);
    if (!j)
        return cr_error_set(CR_ERR_INVALID, "%s: malformed JSON at line %d, column %d: %s", path,
                            e.line, e.column, e.text);
    *out = j;
    return CR_OK;
}
