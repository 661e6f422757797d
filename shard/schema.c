/* schema.c — the Schema op on the engine side: the attribute index describes itself
 * (shard_attrs_schema) and this bounds the request and owns the result type. */
#include "shard/schema.h"

#include <stdlib.h>
#include <string.h>

void shard_schema_clear(shard_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->attrs && i < s->n; i++) {
        shard_schema_attr *a = &s->attrs[i];
        for (size_t v = 0; v < a->n_values; v++)
            free(a->values[v].value);
        free(a->values);
        free(a->name);
    }
    free(s->attrs);
    memset(s, 0, sizeof *s);
}

cr_err shard_engine_schema(shard_engine *e, size_t max_values, shard_schema *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!e || !out)
        return cr_error_set(CR_ERR_INVALID, "schema: NULL argument");
    if (max_values == 0)
        max_values = SHARD_SCHEMA_VALUES_DEFAULT;
    if (max_values > SHARD_SCHEMA_VALUES_MAX)
        max_values = SHARD_SCHEMA_VALUES_MAX;
    return shard_attrs_schema(shard_engine_attrs(e), max_values, out);
}
