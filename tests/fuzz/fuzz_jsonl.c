/* fuzz_jsonl.c — one line of a JSONL catalog or attribute file (`cirrus build --catalog`,
 * `--attrs`, `cirrus load`): JSON parse, the catalog line's required fields, the attribute
 * converter every reader shares (cr_attrs_from_json) and the per-attribute validation, then
 * the converter's inverse: the attributes print back to JSON that converts to the same count. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"
#include "fuzz.h"
#include "gateway/attrs_json.h"

static void check_attrs(const json_t *obj)
{
    Cirrus__V1__Attribute **attrs = NULL, **again = NULL;
    size_t n = 0, m = 0;
    json_t *back;
    if (cr_attrs_from_json(obj, &attrs, &n) != CR_OK)
        return;
    for (size_t i = 0; i < n; i++)
        (void)cr_validate_attribute(attrs[i]);
    back = cr_attrs_to_json(attrs, n);
    FUZZ_ASSERT(back);
    FUZZ_ASSERT(cr_attrs_from_json(back, &again, &m) == CR_OK && m == n);
    json_decref(back);
    cr_attrs_free(again, m);
    cr_attrs_free(attrs, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err), *attrs;
    if (!j)
        return 0;
    if (json_is_object(j)) {
        json_t *id = json_object_get(j, "id");
        if (json_is_string(id))
            (void)cr_validate_id(json_string_value(id));
        attrs = json_object_get(j, "attributes");
        check_attrs(attrs ? attrs : j);
    }
    json_decref(j);
    return 0;
}
