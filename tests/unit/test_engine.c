/* The shard engine's index backlog: acknowledged writes are searchable at once (the queued
 * tail is scanned exactly), deletes of queued items hide them, and after the indexer catches
 * up, a snapshot and a reopen the answers are the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/filter_parse.h"
#include "common/log.h"
#include "common/test.h"
#include "shard/engine.h"

#define DIM 16
#define N 3000
#define BATCH 100

static float vecs[N][DIM];

static void write_batch(shard_engine *e, int from, int n, int is_delete)
{
    Cirrus__V1__Item items[BATCH];
    Cirrus__V1__Vector v[BATCH];
    Cirrus__V1__Attribute a[BATCH], *ap[BATCH];
    Cirrus__V1__AttrValue av[BATCH];
    shard_engine_write_op ops[BATCH];
    shard_engine_write_result res[BATCH];
    char ids[BATCH][32];
    for (int i = 0; i < n; i++) {
        cirrus__v1__item__init(&items[i]);
        cirrus__v1__vector__init(&v[i]);
        cirrus__v1__attribute__init(&a[i]);
        cirrus__v1__attr_value__init(&av[i]);
        snprintf(ids[i], sizeof ids[i], "it-%d", from + i);
        items[i].id = ids[i];
        if (!is_delete) {
            v[i].values = vecs[from + i];
            v[i].n_values = DIM;
            items[i].vector = &v[i];
            av[i].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
            av[i].i = (from + i) % 10;
            a[i].name = "bucket";
            a[i].value = &av[i];
            ap[i] = &a[i];
            items[i].attributes = &ap[i];
            items[i].n_attributes = 1;
        }
        ops[i].is_delete = is_delete;
        ops[i].item = &items[i];
    }
    CR_CHECK(shard_engine_write(e, ops, (size_t)n, res) == CR_OK);
    for (int i = 0; i < n; i++)
        CR_CHECK_MSG(res[i].status == CR_OK, "write %d: %s", from + i, res[i].message);
}

/* The external id of the best hit for item i's own vector ("" when none). */
static void top1(shard_engine *e, int i, const Cirrus__V1__Filter *f, char *out, size_t len)
{
    shard_engine_query q = {vecs[i], 1, f, 0, 32, 0, 0};
    shard_engine_hit hit;
    Cirrus__V1__Hit *h = NULL;
    size_t n = 0, nf = 0;
    out[0] = '\0';
    CR_CHECK(shard_engine_search(e, &q, &hit, &n) == CR_OK);
    if (n == 1 && shard_engine_hits_fill(e, &hit, 1, 0, 0, &h, &nf) == CR_OK && nf == 1) {
        snprintf(out, len, "%s", h->id);
        shard_engine_hit_clear(h);
        free(h);
    }
}

static int self_found(shard_engine *e, int i, const Cirrus__V1__Filter *f)
{
    char want[32], got[64];
    snprintf(want, sizeof want, "it-%d", i);
    top1(e, i, f, got, sizeof got);
    return strcmp(want, got) == 0;
}

static int check_all(shard_engine *e, int upto)
{
    int bad = 0;
    for (int i = 0; i < upto; i++) {
        int dead = i % 7 == 3;
        char got[64], want[32];
        snprintf(want, sizeof want, "it-%d", i);
        top1(e, i, NULL, got, sizeof got);
        bad += dead ? strcmp(got, want) == 0 : strcmp(got, want) != 0;
    }
    return bad;
}

int main(void)
{
    char dir[] = "/tmp/cirrus-test-engine-XXXXXX", cmd[128];
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    Cirrus__V1__Filter *f = NULL;
    int misses = 0, queued_seen = 0;

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    CR_CHECK(mkdtemp(dir) != NULL);
    srand(7);
    for (int i = 0; i < N; i++)
        for (int d = 0; d < DIM; d++)
            vecs[i][d] = (float)rand() / RAND_MAX - 0.5f;
    o.create = 1;
    o.dim = DIM;
    o.factory = "HNSW16";
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    CR_CHECK(cr_filter_parse("bucket = 3 or bucket = 4", &f) == CR_OK);

    /* Every acknowledged item is its own nearest neighbour at once, filtered or not, and a
     * delete hides it at once, whether or not the indexer has reached it. */
    for (int from = 0; from < N; from += BATCH) {
        write_batch(e, from, BATCH, 0);
        queued_seen += shard_engine_index_backlog(e) > 0;
        for (int i = from; i < from + BATCH; i++) {
            misses += !self_found(e, i, NULL);
            if (i % 10 == 3 || i % 10 == 4)
                misses += !self_found(e, i, f);
        }
        for (int i = from; i < from + BATCH; i++)
            if (i % 7 == 3)
                write_batch(e, i, 1, 1);
    }
    CR_CHECK_MSG(misses == 0, "%d acknowledged items not found right after their write", misses);
    CR_CHECK_MSG(queued_seen > 0, "the backlog was never used (%d)", queued_seen);
    CR_CHECK_MSG(check_all(e, N) == 0, "wrong answers with a backlog");

    shard_engine_index_drain(e);
    CR_CHECK(shard_engine_index_backlog(e) == 0);
    CR_CHECK_MSG(check_all(e, N) == 0, "wrong answers after the drain");
    CR_CHECK(shard_engine_snapshot(e, NULL) == CR_OK);
    shard_engine_close(&e);

    o.create = 0;
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    CR_CHECK_MSG(check_all(e, N) == 0, "wrong answers after a reopen");
    shard_engine_close(&e);

    /* Closed with items still queued and no snapshot since (as after a crash): the next open
     * replays them from the store. */
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    for (int from = 0; from < N; from += BATCH)
        write_batch(e, from, BATCH, 0); /* replaces every item: all new internal ids */
    queued_seen = shard_engine_index_backlog(e) > 0;
    shard_engine_close(&e);
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    CR_CHECK(shard_engine_index_backlog(e) == 0);
    misses = 0;
    for (int i = 0; i < N; i++)
        misses += !self_found(e, i, NULL);
    CR_CHECK_MSG(misses == 0, "%d items missing after reopening with a backlog (queued: %d)",
                 misses, queued_seen);
    shard_engine_close(&e);

    cirrus__v1__filter__free_unpacked(f, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
