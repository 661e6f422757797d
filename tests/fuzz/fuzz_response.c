/* fuzz_response.c — a Response from a peer (what libcirrus and the coordinator read from
 * shards, encoders and the broker): the bounded unpack and the repack round trip, then the
 * JSON the CLI and the HTTP API print for a search result, an item list or stats. */
#include <jansson.h>
#include <stdlib.h>

#include "cirrus.pb-c.h"
#include "fuzz.h"
#include "gateway/json.h"

static void print_json(json_t *j)
{
    char *s;
    if (!j)
        return;
    s = cirrus_json_dumps(j, JSON_COMPACT);
    free(s);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Cirrus__V1__Response *r = fuzz_pb_roundtrip(&cirrus__v1__response__descriptor, data, size);
    if (!r)
        return 0;
    if (r->result_case == CIRRUS__V1__RESPONSE__RESULT_SEARCH)
        print_json(cirrus_result_json(r->search));
    if (r->result_case == CIRRUS__V1__RESPONSE__RESULT_GET)
        for (size_t i = 0; i < r->get->n_items; i++)
            print_json(cirrus_item_json(r->get->items[i]));
    if (r->result_case == CIRRUS__V1__RESPONSE__RESULT_STATS)
        print_json(cirrus_stats_json(r->stats));
    if (r->result_case == CIRRUS__V1__RESPONSE__RESULT_SCHEMA)
        print_json(cirrus_schema_json(r->schema));
    fuzz_pb_free(r);
    return 0;
}
