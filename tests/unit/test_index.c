/* test_index.c — shard/index: training lifecycle, recall, filters, removal, exact and
 * candidate search, snapshots, errors; small random data, compared with brute force. */
#include "shard/index.h"

#include "common/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { D = 32, NB = 3000, NQ = 20, K = 10 };

static float *xb, *xq;
static int64_t ids_all[NB];

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

/* Clustered data (so IVF/PQ have structure): 30 centres + noise. */
static void make_data(void)
{
    float centres[30][D];
    for (int c = 0; c < 30; c++)
        for (int j = 0; j < D; j++)
            centres[c][j] = frand() * 4;
    for (int i = 0; i < NB; i++) {
        for (int j = 0; j < D; j++)
            xb[i * D + j] = centres[i % 30][j] + frand();
        ids_all[i] = i;
    }
    for (int q = 0; q < NQ; q++)
        for (int j = 0; j < D; j++)
            xq[q * D + j] = centres[(q * 7) % 30][j] + frand();
}

/* Brute-force top-K over the first n rows accepted by ok (NULL: all). */
static void brute(int ip, int n, const uint8_t *ok, int64_t *lab, float *dis)
{
    for (int q = 0; q < NQ; q++) {
        int64_t cnt = 0;
        float *d = dis + q * K;
        int64_t *l = lab + q * K;
        for (int i = 0; i < K; i++)
            l[i] = -1;
        for (int r = 0; r < n; r++) {
            if (ok && !ok[r])
                continue;
            float s = 0;
            for (int j = 0; j < D; j++) {
                float a = xq[q * D + j], b = xb[r * D + j];
                s += ip ? a * b : (a - b) * (a - b);
            }
            if (cnt == K && !(ip ? s > d[K - 1] : s < d[K - 1]))
                continue;
            int64_t pos = cnt < K ? cnt++ : K - 1;
            while (pos > 0 && (ip ? s > d[pos - 1] : s < d[pos - 1])) {
                d[pos] = d[pos - 1];
                l[pos] = l[pos - 1];
                pos--;
            }
            d[pos] = s;
            l[pos] = r;
        }
    }
}

static double recall(const int64_t *got, const int64_t *truth)
{
    int hit = 0, tot = 0;
    for (int q = 0; q < NQ; q++)
        for (int i = 0; i < K; i++) {
            if (truth[q * K + i] < 0)
                continue;
            tot++;
            for (int j = 0; j < K; j++)
                hit += got[q * K + j] == truth[q * K + i];
        }
    return tot ? (double)hit / tot : 1.0;
}

static cr_err fetch_rows(void *ctx, const int64_t *ids, size_t n, float *out)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * D, xb + ids[i] * D, D * sizeof(float));
    return CR_OK;
}

static shard_index *open_ix(const char *factory, shard_index_metric m, int64_t train)
{
    shard_index_opts o = shard_index_default_opts();
    shard_index *ix = NULL;
    o.dim = D;
    o.metric = m;
    o.factory = factory;
    o.train_size = train;
    cr_err rc = shard_index_create(&ix, &o);
    CR_CHECK_MSG(rc == CR_OK, "create %s: %s", factory, cr_error_message());
    return ix;
}

/* Exact before training, good recall after; filters; exact flag; snapshot. */
static void test_lifecycle(const char *factory, shard_index_metric m, double min_recall,
                           int nprobe)
{
    int ip = m == SHARD_INDEX_METRIC_IP;
    shard_index *ix = open_ix(factory, m, 2000);
    float dis[NQ * K], bd[NQ * K];
    int64_t lab[NQ * K], bl[NQ * K];
    shard_index_stats st;
    shard_index_search_params p = shard_index_default_search_params();
    if (!ix)
        return;
    p.nprobe = nprobe;
    p.ef_search = 128;

    /* buffered phase: exact and complete */
    CR_CHECK(shard_index_add(ix, 1000, ids_all, xb) == CR_OK);
    shard_index_stats_get(ix, &st);
    bool needs_training = !st.is_trained;
    CR_CHECK(st.ntotal == 1000);
    if (needs_training)
        CR_CHECK(st.buffered == 1000);
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    brute(ip, 1000, NULL, bl, bd);
    if (needs_training || strcmp(factory, "Flat") == 0)
        CR_CHECK_MSG(memcmp(lab, bl, sizeof lab) == 0, "%s exact before training", factory);

    /* cross train_size: trained, everything moved in */
    CR_CHECK(shard_index_add(ix, NB - 1000, ids_all + 1000, xb + 1000 * D) == CR_OK);
    shard_index_stats_get(ix, &st);
    CR_CHECK(st.is_trained);
    CR_CHECK(st.buffered == 0);
    CR_CHECK(st.ntotal == NB);
    CR_CHECK(st.dim == D && st.metric == m && strcmp(st.factory, factory) == 0);
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    brute(ip, NB, NULL, bl, bd);
    double r = recall(lab, bl);
    CR_CHECK_MSG(r >= min_recall, "%s recall %.3f < %.2f", factory, r, min_recall);

    /* allow bitmap: every result allowed */
    uint8_t allow[(NB + 7) / 8] = {0};
    uint8_t ok[NB] = {0};
    for (int i = 0; i < NB; i += 3) {
        allow[i / 8] |= (uint8_t)(1u << (i % 8));
        ok[i] = 1;
    }
    p.allow = allow;
    p.allow_bytes = sizeof allow;
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    int bad = 0, found = 0;
    for (int i = 0; i < NQ * K; i++) {
        if (lab[i] >= 0) {
            found++;
            bad += !ok[lab[i]];
        }
    }
    CR_CHECK_MSG(bad == 0 && found > NQ * K / 2, "%s allow filter: bad %d found %d", factory,
                 bad, found);

    /* exact flag (with fetch): identical to brute force under the filter */
    p.exact = true;
    p.fetch = fetch_rows;
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    brute(ip, NB, ok, bl, bd);
    CR_CHECK_MSG(memcmp(lab, bl, sizeof lab) == 0, "%s exact + filter", factory);
    p.exact = false;
    p.allow = NULL;
    p.fetch = NULL;

    /* snapshot round trip: identical results; stats kept */
    char path[] = "/tmp/cirrus_test_index_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    float d1[NQ * K], d2[NQ * K];
    int64_t l1[NQ * K], l2[NQ * K], hw = 0;
    CR_CHECK(shard_index_snapshot(ix, path, 4242) == CR_OK);
    shard_index_opts o = shard_index_default_opts();
    o.dim = D;
    o.metric = m;
    o.factory = factory;
    shard_index *back = NULL;
    cr_err rc = shard_index_load(&back, path, &o, &hw);
    CR_CHECK_MSG(rc == CR_OK, "load %s: %s", factory, cr_error_message());
    if (back) {
        CR_CHECK(hw == 4242);
        CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, d1, l1) == CR_OK);
        CR_CHECK(shard_index_search(back, NQ, xq, K, &p, d2, l2) == CR_OK);
        CR_CHECK_MSG(memcmp(l1, l2, sizeof l1) == 0 && memcmp(d1, d2, sizeof d1) == 0,
                     "%s snapshot round trip", factory);
        shard_index_stats s2;
        shard_index_stats_get(back, &s2);
        CR_CHECK(s2.ntotal == NB && s2.is_trained);
        shard_index_close(&back);
    }
    /* mismatched expectations */
    o.dim = D + 1;
    CR_CHECK(shard_index_load(&back, path, &o, NULL) == CR_ERR_INVALID);
    o.dim = D;
    o.factory = "HNSW16";
    CR_CHECK(shard_index_load(&back, path, &o, NULL) == CR_ERR_INVALID);
    CR_CHECK(back == NULL);
    unlink(path);

    shard_index_close(&ix);
    CR_CHECK(ix == NULL);
}

/* HNSW: removal by tombstones; rebuild clears them. */
static cr_err feed_live(void *ctx, shard_index_builder *b)
{
    const uint8_t *dead = ctx;
    for (int i = 0; i < NB; i++) {
        if (dead[i])
            continue;
        cr_err rc = shard_index_builder_add(b, 1, &ids_all[i], xb + i * D);
        if (rc)
            return rc;
    }
    return CR_OK;
}

static void test_removal(const char *factory, bool expect_tombstones)
{
    shard_index *ix = open_ix(factory, SHARD_INDEX_METRIC_L2, 1000);
    float dis[NQ * K], bd[NQ * K];
    int64_t lab[NQ * K], bl[NQ * K], nrem = 0;
    uint8_t dead[NB] = {0}, ok[NB];
    shard_index_stats st;
    shard_index_search_params p = shard_index_default_search_params();
    if (!ix)
        return;
    p.nprobe = 64;
    p.ef_search = 200;
    CR_CHECK(shard_index_add(ix, NB, ids_all, xb) == CR_OK);
    /* remove the current top-3 of every query (the ones most likely to show up) */
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    int64_t rm[NQ * 3 + 1];
    int nrm = 0;
    for (int q = 0; q < NQ; q++)
        for (int i = 0; i < 3; i++)
            if (lab[q * K + i] >= 0)
                rm[nrm++] = lab[q * K + i];
    rm[nrm++] = NB + 100; /* never added: ignored */
    CR_CHECK(shard_index_remove(ix, nrm, rm, &nrem) == CR_OK);
    for (int i = 0; i < nrm; i++)
        if (rm[i] < NB)
            dead[rm[i]] = 1;
    int ndead = 0;
    for (int i = 0; i < NB; i++) {
        ndead += dead[i];
        ok[i] = !dead[i];
    }
    CR_CHECK_MSG(nrem == ndead, "%s removed %lld of %d", factory, (long long)nrem, ndead);
    shard_index_stats_get(ix, &st);
    CR_CHECK(st.ntotal == NB - ndead);
    CR_CHECK(st.removes_in_place == !expect_tombstones);
    CR_CHECK(st.tombstones == (expect_tombstones ? ndead : 0));
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    int bad = 0;
    for (int i = 0; i < NQ * K; i++)
        bad += lab[i] >= 0 && dead[lab[i]];
    CR_CHECK_MSG(bad == 0, "%s: %d removed ids returned", factory, bad);
    brute(0, NB, ok, bl, bd);
    CR_CHECK_MSG(recall(lab, bl) >= 0.9, "%s recall after removal %.3f", factory,
                 recall(lab, bl));
    /* a removed id cannot come back before a rebuild (tombstones) / can't be duplicated */
    CR_CHECK(shard_index_add(ix, 1, &ids_all[5], xb + 5 * D) == CR_ERR_INVALID);
    if (expect_tombstones)
        CR_CHECK(shard_index_add(ix, 1, &rm[0], xb + rm[0] * D) == CR_ERR_INVALID);

    /* rebuild from the live pairs: tombstones gone, same answers */
    CR_CHECK(shard_index_rebuild(ix, feed_live, dead) == CR_OK);
    shard_index_stats_get(ix, &st);
    CR_CHECK(st.tombstones == 0 && st.ntotal == NB - ndead);
    CR_CHECK(shard_index_search(ix, NQ, xq, K, &p, dis, lab) == CR_OK);
    bad = 0;
    for (int i = 0; i < NQ * K; i++)
        bad += lab[i] >= 0 && dead[lab[i]];
    CR_CHECK(bad == 0);
    CR_CHECK_MSG(recall(lab, bl) >= 0.9, "%s recall after rebuild", factory);
    shard_index_close(&ix);
}

static void test_candidates_and_errors(void)
{
    shard_index *ix = open_ix("HNSW32", SHARD_INDEX_METRIC_IP, 0);
    float dis[NQ * K], bd[NQ * K];
    int64_t lab[NQ * K], bl[NQ * K];
    if (!ix)
        return;
    CR_CHECK(shard_index_add(ix, NB, ids_all, xb) == CR_OK);
    /* candidates: rows with i % 5 == 0, plus a removed one and one never added */
    int64_t cand[NB / 5 + 2];
    float *cv = malloc(sizeof(float) * D * (NB / 5 + 2));
    uint8_t ok[NB] = {0};
    int nc = 0;
    for (int i = 0; i < NB; i += 5) {
        cand[nc] = i;
        memcpy(cv + nc * D, xb + i * D, sizeof(float) * D);
        ok[i] = 1;
        nc++;
    }
    int64_t gone = 10;
    CR_CHECK(shard_index_remove(ix, 1, &gone, NULL) == CR_OK);
    ok[10] = 0;
    cand[nc] = NB + 7; /* not in the index */
    memcpy(cv + nc * D, xq, sizeof(float) * D); /* would be a perfect hit for query 0 */
    nc++;
    CR_CHECK(shard_index_search_candidates(ix, NQ, xq, K, nc, cand, cv, dis, lab) == CR_OK);
    brute(1, NB, ok, bl, bd);
    CR_CHECK_MSG(memcmp(lab, bl, sizeof lab) == 0, "candidate search");
    free(cv);

    /* k larger than the candidates: -1 padding */
    float d3[3];
    int64_t l3[3], one = 0;
    float *v0 = xb;
    CR_CHECK(shard_index_search_candidates(ix, 1, xq, 3, 1, &one, v0, d3, l3) == CR_OK);
    CR_CHECK(l3[0] == 0 && l3[1] == -1 && l3[2] == -1);

    /* exact on a non-flat index without fetch: a clear error */
    shard_index_search_params p = shard_index_default_search_params();
    p.exact = true;
    CR_CHECK(shard_index_search(ix, 1, xq, K, &p, dis, lab) == CR_ERR_INVALID);
    CR_CHECK(shard_index_search(ix, 1, xq, 0, NULL, dis, lab) == CR_ERR_INVALID);

    /* corrupt snapshot: flip a byte in the middle, truncate; missing file */
    char path[] = "/tmp/cirrus_test_index_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    CR_CHECK(shard_index_snapshot(ix, path, 1) == CR_OK);
    FILE *f = fopen(path, "r+b");
    long size = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fseek(f, size / 2, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, size / 2, SEEK_SET);
        fputc(ch ^ 0x5a, f);
        fclose(f);
    }
    shard_index_opts o = shard_index_default_opts();
    o.dim = D;
    o.metric = SHARD_INDEX_METRIC_IP;
    o.factory = "HNSW32";
    shard_index *back = NULL;
    CR_CHECK(shard_index_load(&back, path, &o, NULL) == CR_ERR_INDEX);
    CR_CHECK(strstr(cr_error_message(), "corrupt") != NULL);
    CR_CHECK(truncate(path, size / 3) == 0);
    CR_CHECK(shard_index_load(&back, path, &o, NULL) == CR_ERR_INDEX);
    CR_CHECK(back == NULL);
    unlink(path);
    CR_CHECK(shard_index_load(&back, path, &o, NULL) == CR_NOTFOUND);
    shard_index_close(&ix);

    /* bad factory string / bad options */
    shard_index_opts bad = shard_index_default_opts();
    bad.dim = D;
    bad.factory = "NoSuchThing99";
    CR_CHECK(shard_index_create(&ix, &bad) == CR_ERR_INDEX);
    CR_CHECK(ix == NULL);
    CR_CHECK(cr_error_message()[0] != '\0');
    bad.factory = "Flat";
    bad.dim = 0;
    CR_CHECK(shard_index_create(&ix, &bad) == CR_ERR_INVALID);
    shard_index_metric m;
    CR_CHECK(shard_index_metric_parse("l2", &m) == CR_OK && m == SHARD_INDEX_METRIC_L2);
    CR_CHECK(shard_index_metric_parse("cosine", &m) == CR_ERR_INVALID);
}

/* A template that cannot be read is a clear error. */
static void test_template(void)
{
    shard_index *ix = NULL;
    shard_index_opts o = shard_index_default_opts();
    o.dim = D;
    o.metric = SHARD_INDEX_METRIC_L2;
    o.factory = "IVF16,Flat";
    o.template_path = "/nonexistent/template.faiss";
    CR_CHECK(shard_index_create(&ix, &o) == CR_ERR_INDEX);
    CR_CHECK(ix == NULL);
}

int main(void)
{
    CR_TEST_BEGIN();
    xb = malloc(sizeof(float) * NB * D);
    xq = malloc(sizeof(float) * NQ * D);
    make_data();
    test_lifecycle("Flat", SHARD_INDEX_METRIC_L2, 1.0, 0);
    test_lifecycle("Flat", SHARD_INDEX_METRIC_IP, 1.0, 0);
    test_lifecycle("HNSW32", SHARD_INDEX_METRIC_L2, 0.95, 0);
    test_lifecycle("IVF64,Flat", SHARD_INDEX_METRIC_L2, 0.9, 16);
    /* "np": no polysemous training, which alone takes ~1 min for PQ8 on this machine */
    test_lifecycle("IVF64,PQ8np", SHARD_INDEX_METRIC_L2, 0.4, 16);
    test_lifecycle("SQ8", SHARD_INDEX_METRIC_IP, 0.8, 0);
    test_lifecycle("OPQ8,IVF32,PQ8np", SHARD_INDEX_METRIC_L2, 0.4, 16);
    test_removal("HNSW32", true);
    test_removal("IVF64,Flat", false);
    test_removal("Flat", false);
    test_candidates_and_errors();
    test_template();
    free(xb);
    free(xq);
    return CR_TEST_END();
}
