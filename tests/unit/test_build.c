/* offline/: `cirrus build` in-process. A trained index (IVF16,Flat) is trained once on an
 * evenly drawn sample and every group starts from the shared template (trained at open, the
 * searches with every list probed equal the exact ones); the sample picks are even and
 * in range; every item is in the group the placement names, with version = its line; the
 * events report each stage; a rerun of a finished build does nothing; a rerun with other
 * parameters is refused; bad options are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/test.h"
#include "coordinator/placement.h"
#include "offline/build.h"
#include "offline/train.h"
#include "offline/vecfile.h"
#include "shard/engine.h"

#define N 3000
#define D 16

typedef struct seen {
    char stages[16][16];
    int n;
    int skipped_write;
} seen;

static void on_end(void *ctx, const offline_stage_report *r)
{
    seen *s = ctx;
    if (s->n < 16)
        snprintf(s->stages[s->n++], sizeof s->stages[0], "%s", r->stage);
    if (strcmp(r->stage, "index") == 0 && r->skipped)
        s->skipped_write = 1;
}

static int has_stage(const seen *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->stages[i], name) == 0)
            return 1;
    return 0;
}

static void make_vectors(const char *path)
{
    float *x = malloc((size_t)N * D * sizeof *x);
    unsigned seed = 7;
    for (size_t i = 0; i < (size_t)N * D; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 2000) / 1000.0f - 1.0f + (float)(i / D % 5);
    }
    CR_CHECK(cr_fvecs_write(path, x, N, D) == CR_OK);
    free(x);
}

static void test_pick(void)
{
    uint64_t prev = 0;
    CR_CHECK(offline_train_pick(0, 1000, 10) == 0);
    CR_CHECK(offline_train_pick(9, 1000, 10) == 900);
    for (uint64_t i = 1; i < 1000; i++) {
        uint64_t p = offline_train_pick(i, 5000000000ull, 1000);
        CR_CHECK(p > prev && p < 5000000000ull);
        prev = p;
    }
}

/* Opens group g's shard and checks what it holds. */
static void check_group(const char *out, int g, int groups, uint64_t *total)
{
    char dir[700];
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    shard_stats st;
    snprintf(dir, sizeof dir, "%s/group-%d", out, g);
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    if (!e)
        return;
    CR_CHECK(shard_engine_stats(e, &st) == CR_OK);
    CR_CHECK_MSG(st.trained, "group %d: index not trained at open", g);
    CR_CHECK(strcmp(st.index, "IVF16,Flat") == 0);
    *total += st.count;
    for (int i = 0; i < N; i += 97) {
        char id[32];
        shard_item *it = NULL;
        snprintf(id, sizeof id, "x%d", i);
        int owner = coord_placement_group(COORD_PLACEMENT_FNV1A64_JUMP, id, groups);
        cr_err rc = shard_engine_get(e, id, 1, &it);
        CR_CHECK_MSG((rc == CR_OK) == (owner == g), "%s in group %d: rc %d, owner %d", id, g,
                     rc, owner);
        if (it) {
            CR_CHECK(it->version == (uint64_t)i + 1);
            /* An ANN search with every list probed finds the item itself first. */
            shard_engine_query q = {.vector = it->vector, .k = 1, .nprobe = 16};
            shard_engine_hit hit;
            size_t nh = 0;
            CR_CHECK(shard_engine_search(e, &q, &hit, &nh) == CR_OK && nh == 1);
            shard_item_free(&it);
        }
    }
    shard_engine_close(&e);
}

int main(void)
{
    char tmpl[] = "/tmp/cirrus-build-XXXXXX", vec[600], out[600], path[700];
    const char *dir = mkdtemp(tmpl);
    offline_build_opts o = offline_build_default_opts();
    seen s = {0};
    offline_build_events ev = {.ctx = &s, .end = on_end};
    offline_build_summary sum;
    uint64_t total = 0;
    struct stat sb;

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    test_pick();
    if (!dir)
        return 77;
    snprintf(vec, sizeof vec, "%s/v.fvecs", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    make_vectors(vec);
    o.out = out;
    o.groups = 3;
    o.factory = "IVF16,Flat";
    o.vectors = vec;
    o.id_prefix = "x";
    o.train_size = 800;
    o.checkpoint = 500;
    CR_CHECK(offline_build_run(&o, &ev, &sum) == CR_OK);
    CR_CHECK(sum.records == N && sum.items == N && sum.failed == 0 && sum.groups_built == 3);
    CR_CHECK(has_stage(&s, "plan") && has_stage(&s, "train") && has_stage(&s, "write") &&
             has_stage(&s, "index") && has_stage(&s, "map"));
    snprintf(path, sizeof path, "%s/.build/template.faiss", out);
    CR_CHECK_MSG(stat(path, &sb) == 0 && sb.st_size > 0, "no shared template %s", path);
    for (int g = 0; g < 3; g++)
        check_group(out, g, 3, &total);
    CR_CHECK(total == N);

    /* A finished build: the rerun has nothing to index. */
    memset(&s, 0, sizeof s);
    CR_CHECK(offline_build_run(&o, &ev, &sum) == CR_OK && sum.items == N);
    CR_CHECK(s.skipped_write && !has_stage(&s, "write"));

    /* Other parameters on the same directory are refused, naming the difference. */
    o.factory = "Flat";
    CR_CHECK(offline_build_run(&o, NULL, &sum) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "IVF16,Flat") != NULL);
    o.factory = "IVF16,Flat";
    o.groups = 0;
    CR_CHECK(offline_build_run(&o, NULL, &sum) == CR_ERR_INVALID);
    o.groups = 3;
    o.group = 3;
    CR_CHECK(offline_build_run(&o, NULL, &sum) == CR_ERR_INVALID);
    o.group = -1;
    o.placement = "md5";
    CR_CHECK(offline_build_run(&o, NULL, &sum) == CR_ERR_INVALID);

    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CR_CHECK(system(path) == 0);
    return CR_TEST_END();
}
