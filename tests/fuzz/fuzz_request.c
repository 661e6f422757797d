/* fuzz_request.c — a Request from an untrusted peer: the bounded unpack every server does
 * (cr_wire_unpack through cr_pb_bounded) with the repack round trip (fuzz_pb_roundtrip), then
 * the checks the servers run before acting: ids, vectors, k, attributes, the filter tree (and
 * its text form, which the coordinator logs). */
#include "cirrus.pb-c.h"
#include "common/log.h"
#include "common/validate.h"
#include "fuzz.h"
#include "shard/filter_parse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cr_log_set_level(CR_LOG_ERROR);
    return 0;
}

static void check_items(Cirrus__V1__Item *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const Cirrus__V1__Item *it = items[i];
        (void)cr_validate_id(it->id);
        if (it->vector)
            (void)cr_validate_vector(it->vector, 0, "vector");
        for (size_t k = 0; k < it->n_attributes; k++)
            (void)cr_validate_attribute(it->attributes[k]);
    }
}

static void check_query(const Cirrus__V1__Query *q)
{
    if (!q)
        return;
    (void)cr_validate_k(q->k, 1000);
    if (q->filter && cr_filter_validate(q->filter) == CR_OK) {
        char text[8192];
        (void)cr_filter_format(q->filter, text, sizeof text);
    }
    if (q->kind_case == CIRRUS__V1__QUERY__KIND_COMPOSED && q->composed->reference &&
        q->composed->reference->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID)
        (void)cr_validate_id(q->composed->reference->item_id);
    if (q->kind_case == CIRRUS__V1__QUERY__KIND_VECTOR && q->vector)
        (void)cr_validate_vector(q->vector, 0, "query vector");
    if (q->kind_case == CIRRUS__V1__QUERY__KIND_ITEM_ID)
        (void)cr_validate_id(q->item_id);
}

static void check_request(const Cirrus__V1__Request *r)
{
    switch (r->op_case) {
    case CIRRUS__V1__REQUEST__OP_SEARCH:
        check_query(r->search->query);
        break;
    case CIRRUS__V1__REQUEST__OP_SEARCH_BATCH:
        for (size_t i = 0; i < r->search_batch->n_queries; i++)
            check_query(r->search_batch->queries[i]);
        break;
    case CIRRUS__V1__REQUEST__OP_UPSERT:
        check_items(r->upsert->items, r->upsert->n_items);
        break;
    case CIRRUS__V1__REQUEST__OP_GET:
        for (size_t i = 0; i < r->get->n_ids; i++)
            (void)cr_validate_id(r->get->ids[i]);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Cirrus__V1__Request *r = fuzz_pb_roundtrip(&cirrus__v1__request__descriptor, data, size);
    if (!r)
        return 0;
    check_request(r);
    fuzz_pb_free(r);
    return 0;
}
