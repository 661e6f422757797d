/* fuzz_items_body.c — the body of POST /v1/items from any HTTP client: the gateway's JSON
 * depth check and parse, then gw_items_parse (ids, vectors, base64 images, attributes,
 * image_uri, versions); the Items it makes must pass the id check and pack. */
#include <jansson.h>
#include <stdlib.h>

#include "cirrus.pb-c.h"
#include "common/validate.h"
#include "fuzz.h"
#include "gateway/api.h"
#include "gateway/items_body.h"
#include "gateway/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j;
    Cirrus__V1__Item **items = NULL;
    size_t n = 0;
    if (gw_json_depth_check((const char *)data, size, GW_JSON_DEPTH_MAX))
        return 0;
    if (!(j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err)))
        return 0;
    if (json_is_object(j) && gw_items_parse(j, &items, &n) == CR_OK) {
        FUZZ_ASSERT(n >= 1 && n <= GW_UPSERT_MAX);
        for (size_t i = 0; i < n; i++) {
            size_t len = cirrus__v1__item__get_packed_size(items[i]);
            uint8_t *buf = malloc(len ? len : 1);
            FUZZ_ASSERT(cr_validate_id(items[i]->id) == CR_OK);
            FUZZ_ASSERT(buf && cirrus__v1__item__pack(items[i], buf) == len);
            free(buf);
        }
    }
    gw_items_free(items, n);
    json_decref(j);
    return 0;
}
