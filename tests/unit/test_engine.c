/* The shard engine's index backlog: acknowledged writes are searchable at once (the queued
 * tail is scanned exactly), deletes of queued items hide them, and after the indexer catches
 * up, a snapshot and a reopen the answers are the same. The indexer's failures (injected
 * through CIRRUS_SHARD_FAULTS) never hang a writer or the shutdown and never leave an
 * acknowledged item unsearchable. Each failure scenario runs in a child process with a
 * deadline, so a hang is reported, not waited on. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"

#include "shard/filter_parse.h"
#include "common/log.h"
#include "common/test.h"
#include "shard/convert.h"
#include "shard/engine.h"

#define DIM 16
#define N 3000
#define BATCH 100

static float vecs[N][DIM];

static void write_batch(shard_engine *e, int from, int n, int is_delete)
{
    shard_item items[BATCH];
    shard_attr a[BATCH];
    shard_engine_write_op ops[BATCH];
    shard_engine_write_result res[BATCH];
    char ids[BATCH][32];
    for (int i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        snprintf(ids[i], sizeof ids[i], "it-%d", from + i);
        items[i].id = ids[i];
        if (!is_delete) {
            items[i].vector = vecs[from + i];
            items[i].dim = DIM;
            a[i].name = "bucket";
            a[i].value.type = SHARD_VALUE_INT;
            a[i].value.u.i = (from + i) % 10;
            items[i].attrs = &a[i];
            items[i].n_attrs = 1;
        }
        ops[i].is_delete = is_delete;
        ops[i].item = &items[i];
    }
    CR_CHECK(shard_engine_write(e, ops, (size_t)n, res) == CR_OK);
    for (int i = 0; i < n; i++)
        CR_CHECK_MSG(res[i].status == CR_OK, "write %d: %s", from + i, res[i].message);
}

/* The external id of the best hit for item i's own vector ("" when none). */
static void top1(shard_engine *e, int i, const shard_filter *f, char *out, size_t len)
{
    shard_engine_query q = {vecs[i], 1, f, 0, 32, 0, 0, 0};
    shard_engine_hit hit;
    shard_hit *h = NULL;
    size_t n = 0, nf = 0;
    out[0] = '\0';
    CR_CHECK(shard_engine_search(e, &q, &hit, &n) == CR_OK);
    if (n == 1 && shard_engine_hits_fill(e, &hit, 1, 0, 0, &h, &nf) == CR_OK && nf == 1) {
        snprintf(out, len, "%s", h->id);
        shard_hit_free(&h);
    }
}

static int self_found(shard_engine *e, int i, const shard_filter *f)
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

/* ---- failure scenarios (child processes) ------------------------------------------------ */

typedef void (*scenario_fn)(const char *dir);

/* Runs fn in a child (own data directory); its exit status, or -1 when it outlived
 * timeout_s (then it is killed): a hang is a failure, not a stuck test. */
static int run_child(const char *name, scenario_fn fn, const char *parent, int timeout_s)
{
    char dir[512];
    uint64_t until = cr_clock_mono_ms() + (uint64_t)timeout_s * 1000;
    int st = 0;
    pid_t pid, w = 0;
    snprintf(dir, sizeof dir, "%s/%s", parent, name);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int r;
        CR_TEST_BEGIN();
        fn(dir);
        r = CR_TEST_END();
        fflush(NULL);
        _exit(r);
    }
    if (pid < 0)
        return -2;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && cr_clock_mono_ms() < until)
        cr_clock_sleep_ms(20);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        fprintf(stderr, "%s: still running after %d s (hung): killed\n", name, timeout_s);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static shard_engine *open_small(const char *dir, uint64_t backlog_items)
{
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    o.create = 1;
    o.dim = DIM;
    o.factory = "HNSW16";
    o.index_backlog_bytes = backlog_items * DIM * sizeof(float);
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    return e;
}

/* Writes items [from, from + n) and returns the engine's code; every op's status when OK. */
static cr_err try_batch(shard_engine *e, int from, int n)
{
    shard_item items[BATCH];
    shard_engine_write_op ops[BATCH];
    shard_engine_write_result res[BATCH];
    char ids[BATCH][32];
    cr_err rc;
    for (int i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        snprintf(ids[i], sizeof ids[i], "it-%d", from + i);
        items[i].id = ids[i];
        items[i].vector = vecs[from + i];
        items[i].dim = DIM;
        ops[i].is_delete = 0;
        ops[i].item = &items[i];
    }
    rc = shard_engine_write(e, ops, (size_t)n, res);
    for (int i = 0; rc == CR_OK && i < n; i++)
        CR_CHECK_MSG(res[i].status == CR_OK, "write %d: %s", from + i, res[i].message);
    return rc;
}

static int missing(shard_engine *e, int upto)
{
    int bad = 0;
    for (int i = 0; i < upto; i++)
        bad += !self_found(e, i, NULL);
    return bad;
}

/* The first index adds fail: the items stay queued (searched exactly) and are retried, so
 * after the drain they are in the ANN index, not lost from it until a restart. */
static void scenario_add_retry(const char *dir)
{
    shard_engine *e;
    setenv("CIRRUS_SHARD_FAULTS", "index-add=3", 1);
    e = open_small(dir, 100000);
    for (int from = 0; from < 600; from += BATCH)
        CR_CHECK(try_batch(e, from, BATCH) == CR_OK);
    CR_CHECK_MSG(missing(e, 600) == 0, "items unsearchable while the index add fails");
    CR_CHECK_MSG(shard_engine_index_drain(e) == CR_OK, "%s", cr_error_message());
    CR_CHECK(shard_engine_index_backlog(e) == 0);
    CR_CHECK_MSG(missing(e, 600) == 0, "%d items unsearchable after the failed adds",
                 missing(e, 600));
    shard_engine_close(&e);
}

/* Every index add fails: acknowledged items stay searchable through the queue; once the
 * queue is full writes are refused (an error, at once), and the drain and close return. */
static void scenario_add_fails_forever(const char *dir)
{
    shard_engine *e;
    int accepted = 0, refused = 0;
    uint64_t t0;
    setenv("CIRRUS_SHARD_FAULTS", "index-add=1000000000", 1);
    e = open_small(dir, 200);
    for (int from = 0; from < 800; from += BATCH) {
        cr_err rc;
        t0 = cr_clock_mono_ms();
        rc = try_batch(e, from, BATCH);
        CR_CHECK_MSG(cr_clock_mono_ms() - t0 < 5000, "a write waited %llu ms",
                     (unsigned long long)(cr_clock_mono_ms() - t0));
        if (rc == CR_OK && !refused)
            accepted += BATCH;
        else if (rc != CR_OK)
            CR_CHECK_MSG(++refused && rc == CR_ERR_INDEX && strstr(cr_error_message(), "fail"),
                         "%d: %s", rc, cr_error_message());
    }
    CR_CHECK_MSG(refused > 0, "writes past the full queue were accepted (%d)", accepted);
    {
        shard_item *it = NULL; /* a refused write changed nothing */
        CR_CHECK(shard_engine_get(e, "it-799", 0, &it) == CR_NOTFOUND);
        shard_item_free(&it);
    }
    CR_CHECK_MSG(accepted >= 200, "only %d items accepted", accepted);
    CR_CHECK_MSG(missing(e, accepted) == 0, "%d acknowledged items unsearchable",
                 missing(e, accepted));
    t0 = cr_clock_mono_ms();
    CR_CHECK(shard_engine_index_drain(e) == CR_ERR_INDEX);
    CR_CHECK_MSG(strstr(cr_error_message(), "injected") != NULL, "%s", cr_error_message());
    shard_engine_close(&e);
    CR_CHECK_MSG(cr_clock_mono_ms() - t0 < 10000, "drain and close took %llu ms",
                 (unsigned long long)(cr_clock_mono_ms() - t0));
}

/* The indexer thread dies: writers past the queue bound and the drain do not wait for it
 * (the engine indexes on the writer instead), and every item ends up searchable. */
static void scenario_indexer_dies(const char *dir)
{
    shard_engine *e;
    setenv("CIRRUS_SHARD_FAULTS", "indexer-exit=1", 1);
    e = open_small(dir, 200);
    for (int from = 0; from < 1000; from += BATCH)
        CR_CHECK(try_batch(e, from, BATCH) == CR_OK);
    CR_CHECK_MSG(shard_engine_index_drain(e) == CR_OK, "%s", cr_error_message());
    CR_CHECK(shard_engine_index_backlog(e) == 0);
    CR_CHECK_MSG(missing(e, 1000) == 0, "%d items unsearchable", missing(e, 1000));
    shard_engine_close(&e);
}

/* The indexer thread cannot start: the open fails and says so. */
static void scenario_indexer_start(const char *dir)
{
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    setenv("CIRRUS_SHARD_FAULTS", "indexer-start", 1);
    o.create = 1;
    o.dim = DIM;
    o.factory = "HNSW16";
    CR_CHECK(shard_engine_open(&e, dir, &o) != CR_OK);
    CR_CHECK_MSG(strstr(cr_error_message(), "indexer") != NULL, "%s", cr_error_message());
    CR_CHECK(e == NULL);
}

/* The indexer cannot allocate its chunk buffers: the open fails and says so (before: the
 * thread exited, still marked running, and the first writer past the queue bound hung). */
static void scenario_indexer_alloc(const char *dir)
{
    shard_engine *e = NULL;
    shard_engine_opts o = shard_engine_default_opts();
    cr_err rc;
    setenv("CIRRUS_SHARD_FAULTS", "indexer-alloc", 1);
    o.create = 1;
    o.dim = DIM;
    o.factory = "HNSW16";
    o.index_backlog_bytes = 200 * DIM * sizeof(float);
    rc = shard_engine_open(&e, dir, &o);
    CR_CHECK_MSG(rc != CR_OK, "the engine opened without its indexer's buffers");
    for (int from = 0; rc == CR_OK && from < 1000; from += BATCH)
        CR_CHECK(try_batch(e, from, BATCH) == CR_OK);
    shard_engine_close(&e);
}

static void failure_scenarios(const char *parent)
{
    int rc;
    rc = run_child("indexer-start", scenario_indexer_start, parent, 20);
    CR_CHECK_MSG(rc == 0, "indexer start failure: %d", rc);
    rc = run_child("indexer-alloc", scenario_indexer_alloc, parent, 20);
    CR_CHECK_MSG(rc == 0, "indexer allocation failure: %d", rc);
    rc = run_child("add-retry", scenario_add_retry, parent, 20);
    CR_CHECK_MSG(rc == 0, "failed index adds retried: %d", rc);
    rc = run_child("add-fails-forever", scenario_add_fails_forever, parent, 30);
    CR_CHECK_MSG(rc == 0, "index adds failing for good: %d", rc);
    rc = run_child("indexer-dies", scenario_indexer_dies, parent, 20);
    CR_CHECK_MSG(rc == 0, "indexer thread death: %d", rc);
}

/* ---- a shard directory of the previous format (tests/fixtures/shard_v1, see make.c) ----- */

static size_t fixture_count(shard_engine *e, const char *text)
{
    static const float q[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    Cirrus__V1__Filter *pf = NULL;
    shard_filter *f = NULL;
    shard_engine_query sq = {q, 50, NULL, 0, 0, 1, 0, 0};
    shard_engine_hit hits[50];
    size_t n = 999;
    if (cr_filter_parse(text, &pf) || shard_conv_filter_compile(pf, &f))
        return 999;
    sq.filter = f;
    if (shard_engine_search(e, &sq, hits, &n))
        n = 999;
    shard_filter_free(&f);
    cirrus__v1__filter__free_unpacked(pf, NULL);
    return n;
}

static const shard_attr *find_attr(const shard_item *it, const char *name)
{
    for (size_t k = 0; k < it->n_attrs; k++)
        if (strcmp(it->attrs[k].name, name) == 0)
            return &it->attrs[k];
    return NULL;
}

static void test_old_format(const char *parent)
{
    const char *src = getenv("CIRRUS_SOURCE_DIR");
    char dir[600], cmd[1400];
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    shard_item *it = NULL;
    shard_stats st;
    const shard_attr *a;
    int self = 0;
    snprintf(dir, sizeof dir, "%s/v1", parent);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/tests/fixtures/shard_v1/data.mdb %s/", dir,
             src ? src : ".", dir);
    CR_CHECK(system(cmd) == 0);
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    if (!e)
        return;
    CR_CHECK(shard_engine_dim(e) == 8 && strcmp(shard_engine_factory(e), "Flat") == 0);
    CR_CHECK(shard_engine_stats(e, &st) == CR_OK && st.count == 19);
    CR_CHECK(shard_engine_get(e, "v1-0", 1, &it) == CR_OK);
    if (it) {
        CR_CHECK(it->version == 100 && it->n_attrs == 5 && it->dim == 8 && it->vector[0] == 1.0f);
        CR_CHECK((a = find_attr(it, "color")) && strcmp(a->value.u.s, "red") == 0);
        CR_CHECK((a = find_attr(it, "size")) && a->value.type == SHARD_VALUE_INT &&
                 a->value.u.i == -50);
        CR_CHECK((a = find_attr(it, "price")) && a->value.u.d == 0.25);
        CR_CHECK((a = find_attr(it, "sale")) && a->value.type == SHARD_VALUE_BOOL && a->value.u.b);
        CR_CHECK((a = find_attr(it, "tags")) && a->value.u.strings.n == 2 &&
                 strcmp(a->value.u.strings.v[1], "all") == 0);
    }
    shard_item_free(&it);
    CR_CHECK(shard_engine_get(e, "v1-7", 0, &it) == CR_OK && it && it->n_attrs == 0);
    shard_item_free(&it);
    CR_CHECK(shard_engine_get(e, "v1-13", 0, &it) == CR_OK && it && it->n_attrs == 7 &&
             (a = find_attr(it, "big")) && a->value.u.i == INT64_MAX);
    shard_item_free(&it);
    CR_CHECK(shard_engine_get(e, "v1-5", 0, &it) == CR_NOTFOUND);
    CR_CHECK(shard_engine_get(e, "v1-6", 0, &it) == CR_OK && it && it->version == 600 &&
             (a = find_attr(it, "color")) && strcmp(a->value.u.s, "black") == 0);
    shard_item_free(&it);
    CR_CHECK(fixture_count(e, "color = \"red\"") == 6);
    CR_CHECK(fixture_count(e, "size >= 100") == 5);
    CR_CHECK(fixture_count(e, "price < 3") == 3);
    CR_CHECK(fixture_count(e, "sale = false and tags = \"t1\"") == 4);
    CR_CHECK(fixture_count(e, "tags = \"all\"") == 18);
    CR_CHECK(fixture_count(e, "not color = \"red\"") == 13);
    for (int i = 0; i < 20; i++) {
        float v[8];
        shard_engine_query sq = {v, 1, NULL, 0, 0, 1, 0, 0};
        shard_engine_hit h;
        shard_hit *hh = NULL;
        size_t n = 0, nf = 0;
        char want[16];
        for (int j = 0; j < 8; j++)
            v[j] = 0.01f * (float)i;
        v[i % 8] += 1.0f + (float)(i / 8);
        snprintf(want, sizeof want, "v1-%d", i);
        if (shard_engine_search(e, &sq, &h, &n) == CR_OK && n == 1 &&
            shard_engine_hits_fill(e, &h, 1, 1, 0, &hh, &nf) == CR_OK && nf == 1)
            self += (strcmp(hh->id, want) == 0) == (i != 5);
        shard_hit_free(&hh);
    }
    CR_CHECK_MSG(self == 20, "%d of 20 old items found as their own neighbour", self);
    /* new writes beside old records: both read back after a reopen */
    {
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 1};
        shard_attr na = {"color", {.type = SHARD_VALUE_STRING, .u.s = "red"}};
        shard_item ni = {"v2-new", v, 8, &na, 1, 0, NULL, 0};
        shard_engine_write_op op = {0, &ni};
        shard_engine_write_result r;
        CR_CHECK(shard_engine_write(e, &op, 1, &r) == CR_OK && r.status == CR_OK);
    }
    shard_engine_close(&e);
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    CR_CHECK(fixture_count(e, "color = \"red\"") == 7);
    CR_CHECK(shard_engine_get(e, "v1-3", 0, &it) == CR_OK && it && it->n_attrs == 5);
    shard_item_free(&it);
    shard_engine_close(&e);
}

/* The rebuild that drops tombstones runs beside the writer: writes made while it builds are
 * acknowledged at once, and after the swap the fresh index holds exactly the live items —
 * the ones replaced or deleted meanwhile gone, the ones written meanwhile searchable. */
static void test_background_rebuild(const char *parent)
{
    char dir[512];
    shard_engine *e;
    shard_stats st;
    uint64_t tomb_before, worst_ms = 0;
    int misses = 0, rounds = 0;
    snprintf(dir, sizeof dir, "%s/rebuild", parent);
    e = open_small(dir, 100000);
    for (int from = 0; from < N; from += BATCH)
        write_batch(e, from, BATCH, 0);
    CR_CHECK(shard_engine_index_drain(e) == CR_OK);
    for (int from = 0; from < N / 2; from += BATCH) /* replaced: tombstones in HNSW */
        write_batch(e, from, BATCH, 0);
    CR_CHECK(shard_engine_index_drain(e) == CR_OK);
    CR_CHECK(shard_engine_stats(e, &st) == CR_OK);
    tomb_before = st.tombstones;
    CR_CHECK_MSG(tomb_before >= N / 2, "tombstones %llu", (unsigned long long)tomb_before);
    CR_CHECK(shard_engine_maybe_rebuild(e, 0.1) == CR_OK);
    /* While it builds (or after, if it was quick): delete some, replace some, time each. */
    for (int i = 0; i < N; i += 7, rounds++) {
        uint64_t t0 = cr_clock_mono_ms(), dt;
        write_batch(e, i, 1, i % 2 == 0);
        dt = cr_clock_mono_ms() - t0;
        worst_ms = dt > worst_ms ? dt : worst_ms;
    }
    CR_CHECK(shard_engine_rebuild_wait(e) == CR_OK);
    CR_CHECK(shard_engine_index_drain(e) == CR_OK);
    CR_CHECK(shard_engine_stats(e, &st) == CR_OK);
    CR_CHECK_MSG(st.tombstones < tomb_before, "tombstones %llu -> %llu: no rebuild",
                 (unsigned long long)tomb_before, (unsigned long long)st.tombstones);
    CR_CHECK(st.count == (uint64_t)(N - (rounds + 1) / 2));
    for (int i = 0; i < N; i++) {
        int deleted = i % 7 == 0 && i % 2 == 0;
        misses += deleted ? self_found(e, i, NULL) : !self_found(e, i, NULL);
    }
    CR_CHECK_MSG(misses == 0, "%d wrong answers after a rebuild with writes beside it", misses);
    CR_CHECK_MSG(worst_ms < 2000, "a write waited %llu ms beside the rebuild",
                 (unsigned long long)worst_ms);
    CR_CHECK(shard_engine_snapshot(e, NULL) == CR_OK);
    shard_engine_close(&e);
    e = open_small(dir, 100000);
    misses = 0;
    for (int i = 0; i < N; i++) {
        int deleted = i % 7 == 0 && i % 2 == 0;
        misses += deleted ? self_found(e, i, NULL) : !self_found(e, i, NULL);
    }
    CR_CHECK_MSG(misses == 0, "%d wrong answers after reopening the rebuilt shard", misses);
    shard_engine_close(&e);
}

int main(void)
{
    char dir[] = "/tmp/cirrus-test-engine-XXXXXX", cmd[128];
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    Cirrus__V1__Filter *pf = NULL;
    shard_filter *f = NULL;
    int misses = 0, queued_seen = 0;

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    CR_CHECK(mkdtemp(dir) != NULL);
    srand(7);
    for (int i = 0; i < N; i++)
        for (int d = 0; d < DIM; d++)
            vecs[i][d] = (float)rand() / RAND_MAX - 0.5f;
    failure_scenarios(dir); /* first: no FAISS/OpenMP threads exist yet at fork */
    o.create = 1;
    o.dim = DIM;
    o.factory = "HNSW16";
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    CR_CHECK(cr_filter_parse("bucket = 3 or bucket = 4", &pf) == CR_OK);
    CR_CHECK(shard_conv_filter_compile(pf, &f) == CR_OK);

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

    CR_CHECK(shard_engine_index_drain(e) == CR_OK);
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

    shard_filter_free(&f);
    cirrus__v1__filter__free_unpacked(pf, NULL);
    test_old_format(dir);
    test_background_rebuild(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
