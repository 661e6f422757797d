/* fuzz_search_body.c — the body of POST /v1/search from any HTTP client: depth check and JSON
 * parse as the gateway does them (duplicate keys refused), the body's Query (gw_search_parse: every field,
 * base64 images, the filter text), and the Query it makes must pack. */
#include <jansson.h>
#include <stdlib.h>

#include "cirrus.pb-c.h"
#include "fuzz.h"
#include "gateway/api.h"
#include "gateway/limits.h"
#include "gateway/search_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j;
    gw_search s;
    if (gw_json_depth_check((const char *)data, size, GW_JSON_DEPTH_MAX))
        return 0; /* the gateway answers 400 before parsing */
    if (!(j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err)))
        return 0;
    if (gw_search_parse(j, &s) == CR_OK) {
        size_t n = cirrus__v1__query__get_packed_size(&s.q);
        uint8_t *buf = malloc(n ? n : 1);
        FUZZ_ASSERT(buf);
        FUZZ_ASSERT(cirrus__v1__query__pack(&s.q, buf) == n);
        free(buf);
    }
    gw_search_free(&s);
    json_decref(j);
    return 0;
}
