/* test_faiss_capi.c — the FAISS C API (our compat library over libfaiss.a, or a system
 * libfaiss_c) checked against brute force on random data. */
#include "faiss_c_ext.h"

#include "common/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { D = 32, NB = 2000, NQ = 20, K = 10 };

static float *xb, *xq;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float dist(const float *a, const float *b, int ip)
{
    float s = 0;
    for (int j = 0; j < D; j++)
        s += ip ? a[j] * b[j] : (a[j] - b[j]) * (a[j] - b[j]);
    return s;
}

/* Exact top-k of query q over xb rows accepted by `ok` (NULL: all), labels mapped by ids
 * (NULL: row number). Missing results are -1. */
static void brute(const float *q, int ip, const int *ok, const idx_t *ids, float *dis, idx_t *lab)
{
    for (int i = 0; i < K; i++) {
        lab[i] = -1;
        dis[i] = ip ? -1e30f : 1e30f;
    }
    for (int r = 0; r < NB; r++) {
        if (ok && !ok[r])
            continue;
        float s = dist(q, xb + (size_t)r * D, ip);
        int pos = K;
        while (pos > 0 && (lab[pos - 1] < 0 || (ip ? s > dis[pos - 1] : s < dis[pos - 1])))
            pos--;
        if (pos >= K)
            continue;
        memmove(dis + pos + 1, dis + pos, (size_t)(K - pos - 1) * sizeof(float));
        memmove(lab + pos + 1, lab + pos, (size_t)(K - pos - 1) * sizeof(idx_t));
        dis[pos] = s;
        lab[pos] = ids ? ids[r] : r;
    }
}

/* Compares a search result with brute force; returns the number of mismatching labels. */
static int compare_exact(const float *dis, const idx_t *lab, int ip, const int *ok,
                         const idx_t *ids)
{
    int bad = 0;
    float bd[K];
    idx_t bl[K];
    for (int q = 0; q < NQ; q++) {
        brute(xq + (size_t)q * D, ip, ok, ids, bd, bl);
        for (int i = 0; i < K; i++) {
            if (lab[q * K + i] != bl[i])
                bad++;
            else if (bl[i] >= 0 && fabsf(dis[q * K + i] - bd[i]) > 1e-3f * (1 + fabsf(bd[i])))
                bad++;
        }
    }
    return bad;
}

static FaissIndex *make(const char *desc, FaissMetricType m)
{
    FaissIndex *ix = NULL;
    int rc = faiss_index_factory(&ix, D, desc, m);
    CR_CHECK_MSG(rc == 0 && ix, "factory %s: %s", desc, faiss_get_last_error());
    return ix;
}

static void test_flat(int ip)
{
    FaissIndex *ix = make("Flat", ip ? METRIC_INNER_PRODUCT : METRIC_L2);
    if (!ix)
        return;
    float dis[NQ * K];
    idx_t lab[NQ * K];
    CR_CHECK(faiss_Index_d(ix) == D);
    CR_CHECK(faiss_Index_is_trained(ix) == 1);
    CR_CHECK(faiss_Index_metric_type(ix) == (ip ? METRIC_INNER_PRODUCT : METRIC_L2));
    CR_CHECK(faiss_Index_add(ix, NB, xb) == 0);
    CR_CHECK(faiss_Index_ntotal(ix) == NB);
    CR_CHECK(faiss_Index_search(ix, NQ, xq, K, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, ip, NULL, NULL) == 0, "flat ip=%d", ip);

    /* search_with_params with no selector = plain search */
    FaissSearchParameters *sp = NULL;
    CR_CHECK(faiss_SearchParameters_new(&sp, NULL) == 0);
    CR_CHECK(faiss_Index_search_with_params(ix, NQ, xq, K, sp, dis, lab) == 0);
    CR_CHECK(compare_exact(dis, lab, ip, NULL, NULL) == 0);
    faiss_SearchParameters_free(sp);

    /* reconstruct */
    float rec[D];
    CR_CHECK(faiss_Index_reconstruct(ix, 123, rec) == 0);
    CR_CHECK(memcmp(rec, xb + 123 * D, sizeof rec) == 0);

    /* remove_ids with a range: rows [0, 100) go, the rest shift down */
    FaissIDSelectorRange *range = NULL;
    size_t nrem = 0;
    CR_CHECK(faiss_IDSelectorRange_new(&range, 0, 100) == 0);
    CR_CHECK(faiss_Index_remove_ids(ix, (const FaissIDSelector *)range, &nrem) == 0);
    CR_CHECK(nrem == 100);
    CR_CHECK(faiss_Index_ntotal(ix) == NB - 100);
    CR_CHECK(faiss_Index_reconstruct(ix, 0, rec) == 0);
    CR_CHECK(memcmp(rec, xb + 100 * D, sizeof rec) == 0);
    faiss_IDSelectorRange_free(range);

    CR_CHECK(faiss_Index_reset(ix) == 0);
    CR_CHECK(faiss_Index_ntotal(ix) == 0);
    faiss_Index_free(ix);
}

static void test_selectors(void)
{
    static idx_t ids[NB];
    static int ok[NB];
    float dis[NQ * K];
    idx_t lab[NQ * K];
    for (int i = 0; i < NB; i++)
        ids[i] = (idx_t)i * 7 + 3;

    /* IDMap,Flat: our ids come back */
    FaissIndex *ix = make("IDMap,Flat", METRIC_L2);
    if (!ix)
        return;
    CR_CHECK(faiss_Index_add_with_ids(ix, NB, xb, ids) == 0);
    CR_CHECK(faiss_Index_search(ix, NQ, xq, K, dis, lab) == 0);
    CR_CHECK(compare_exact(dis, lab, 0, NULL, ids) == 0);

    /* bitmap over external ids: every id whose row is a multiple of 3 */
    size_t nbytes = (size_t)(ids[NB - 1] / 8 + 1);
    uint8_t *bm = calloc(nbytes, 1);
    for (int i = 0; i < NB; i++) {
        ok[i] = i % 3 == 0;
        if (ok[i])
            bm[ids[i] / 8] |= (uint8_t)(1u << (ids[i] % 8));
    }
    FaissIDSelectorBitmap *bsel = NULL;
    FaissSearchParameters *sp = NULL;
    CR_CHECK(faiss_IDSelectorBitmap_new(&bsel, nbytes, bm) == 0);
    CR_CHECK(faiss_IDSelectorBitmap_n(bsel) == nbytes);
    CR_CHECK(faiss_IDSelector_is_member(bsel, ids[3]) == 1);
    CR_CHECK(faiss_IDSelector_is_member(bsel, ids[4]) == 0);
    CR_CHECK(faiss_SearchParameters_new(&sp, bsel) == 0);
    CR_CHECK(faiss_Index_search_with_params(ix, NQ, xq, K, sp, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 0, ok, ids) == 0, "idmap + bitmap");
    faiss_SearchParameters_free(sp);

    /* batch selector on a plain Flat index (row numbers) */
    FaissIndex *flat = make("Flat", METRIC_INNER_PRODUCT);
    idx_t batch[300];
    memset(ok, 0, sizeof ok);
    for (int i = 0; i < 300; i++) {
        batch[i] = (idx_t)((i * 37 + 11) % NB);
        ok[batch[i]] = 1;
    }
    FaissIDSelectorBatch *bat = NULL;
    CR_CHECK(faiss_Index_add(flat, NB, xb) == 0);
    CR_CHECK(faiss_IDSelectorBatch_new(&bat, 300, batch) == 0);
    CR_CHECK(faiss_SearchParameters_new(&sp, (FaissIDSelector *)bat) == 0);
    CR_CHECK(faiss_Index_search_with_params(flat, NQ, xq, K, sp, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 1, ok, NULL) == 0, "flat + batch");
    faiss_SearchParameters_free(sp);

    /* And(batch, Not(range [0, 1000))) */
    FaissIDSelectorRange *range = NULL;
    FaissIDSelectorNot *nsel = NULL;
    FaissIDSelectorAnd *asel = NULL;
    CR_CHECK(faiss_IDSelectorRange_new(&range, 0, 1000) == 0);
    CR_CHECK(faiss_IDSelectorNot_new(&nsel, (const FaissIDSelector *)range) == 0);
    CR_CHECK(faiss_IDSelectorAnd_new(&asel, (const FaissIDSelector *)bat, nsel) == 0);
    for (int i = 0; i < 1000; i++)
        ok[i] = 0;
    CR_CHECK(faiss_SearchParameters_new(&sp, asel) == 0);
    CR_CHECK(faiss_Index_search_with_params(flat, NQ, xq, K, sp, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 1, ok, NULL) == 0, "flat + and/not");
    faiss_SearchParameters_free(sp);
    faiss_IDSelector_free(asel);
    faiss_IDSelector_free(nsel);
    faiss_IDSelectorRange_free(range);

    /* remove_ids by batch on IDMap: the removed ids never come back */
    size_t nrem = 0;
    idx_t gone[NQ];
    CR_CHECK(faiss_Index_search(ix, NQ, xq, K, dis, lab) == 0);
    for (int q = 0; q < NQ; q++)
        gone[q] = lab[q * K];
    FaissIDSelectorBatch *rm = NULL;
    CR_CHECK(faiss_IDSelectorBatch_new(&rm, NQ, gone) == 0);
    CR_CHECK(faiss_Index_remove_ids(ix, (const FaissIDSelector *)rm, &nrem) == 0);
    CR_CHECK(nrem > 0 && nrem <= NQ);
    CR_CHECK(faiss_Index_ntotal(ix) == (idx_t)(NB - nrem));
    CR_CHECK(faiss_Index_search(ix, NQ, xq, K, dis, lab) == 0);
    int found = 0;
    for (int i = 0; i < NQ * K; i++)
        for (int j = 0; j < NQ; j++)
            found += lab[i] == gone[j];
    CR_CHECK(found == 0);
    faiss_IDSelector_free((FaissIDSelector *)rm);

    faiss_IDSelector_free((FaissIDSelector *)bat);
    faiss_IDSelectorBitmap_free(bsel);
    free(bm);
    faiss_Index_free(flat);
    faiss_Index_free(ix);
}

static void same_results(FaissIndex *a, FaissIndex *b, const FaissSearchParameters *sp,
                         const char *what)
{
    float d1[NQ * K], d2[NQ * K];
    idx_t l1[NQ * K], l2[NQ * K];
    CR_CHECK(faiss_Index_search_with_params(a, NQ, xq, K, sp, d1, l1) == 0);
    CR_CHECK(faiss_Index_search_with_params(b, NQ, xq, K, sp, d2, l2) == 0);
    CR_CHECK_MSG(memcmp(l1, l2, sizeof l1) == 0 && memcmp(d1, d2, sizeof d1) == 0, "%s", what);
}

static void test_ivf_io_params(void)
{
    FaissIndex *ix = make("IVF16,Flat", METRIC_L2);
    if (!ix)
        return;
    float dis[NQ * K];
    idx_t lab[NQ * K];
    CR_CHECK(faiss_Index_is_trained(ix) == 0);
    CR_CHECK(faiss_Index_add(ix, NB, xb) != 0); /* untrained: an error, not a crash */
    CR_CHECK(faiss_get_last_error() && faiss_get_last_error()[0]);
    CR_CHECK(faiss_Index_train(ix, NB, xb) == 0);
    CR_CHECK(faiss_Index_is_trained(ix) == 1);
    CR_CHECK(faiss_Index_add(ix, NB, xb) == 0);

    FaissIndexIVF *ivf = faiss_IndexIVF_cast(ix);
    CR_CHECK(ivf != NULL);
    CR_CHECK(ivf && faiss_IndexIVF_nlist(ivf) == 16);

    /* nprobe = nlist through search parameters: exact */
    FaissSearchParametersIVF *spi = NULL;
    CR_CHECK(faiss_SearchParametersIVF_new_with(&spi, NULL, 16, 0) == 0);
    CR_CHECK(faiss_SearchParametersIVF_nprobe(spi) == 16);
    CR_CHECK(faiss_Index_search_with_params(ix, NQ, xq, K, spi, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 0, NULL, NULL) == 0, "ivf nprobe=nlist");

    /* nprobe = nlist through ParameterSpace, then a plain search: exact */
    FaissParameterSpace *ps = NULL;
    CR_CHECK(faiss_ParameterSpace_new(&ps) == 0);
    CR_CHECK(faiss_ParameterSpace_set_index_parameter(ps, ix, "nprobe", 16) == 0);
    CR_CHECK(ivf && faiss_IndexIVF_nprobe(ivf) == 16);
    CR_CHECK(faiss_Index_search(ix, NQ, xq, K, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 0, NULL, NULL) == 0, "ivf ParameterSpace nprobe");
    CR_CHECK(faiss_ParameterSpace_set_index_parameter(ps, ix, "no_such_param", 1) != 0);
    CR_CHECK(faiss_get_last_error() && faiss_get_last_error()[0]);
    CR_CHECK(faiss_ParameterSpace_set_index_parameters(ps, ix, "nprobe=4") == 0);
    CR_CHECK(ivf && faiss_IndexIVF_nprobe(ivf) == 4);
    faiss_ParameterSpace_free(ps);

    /* IVF + selector */
    static int ok[NB];
    idx_t batch[500];
    memset(ok, 0, sizeof ok);
    for (int i = 0; i < 500; i++) {
        batch[i] = (idx_t)((i * 13 + 5) % NB);
        ok[batch[i]] = 1;
    }
    FaissIDSelectorBatch *bat = NULL;
    FaissSearchParametersIVF *spsel = NULL;
    CR_CHECK(faiss_IDSelectorBatch_new(&bat, 500, batch) == 0);
    CR_CHECK(faiss_SearchParametersIVF_new_with(&spsel, (FaissIDSelector *)bat, 16, 0) == 0);
    CR_CHECK(faiss_Index_search_with_params(ix, NQ, xq, K, spsel, dis, lab) == 0);
    CR_CHECK_MSG(compare_exact(dis, lab, 0, ok, NULL) == 0, "ivf + batch");
    faiss_SearchParametersIVF_free(spsel);
    faiss_IDSelector_free((FaissIDSelector *)bat);

    /* file round trip */
    char path[] = "/tmp/cirrus_test_faiss_XXXXXX";
    int fd = mkstemp(path);
    CR_CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    FaissIndex *back = NULL;
    CR_CHECK(faiss_write_index_fname(ix, path) == 0);
    CR_CHECK(faiss_read_index_fname(path, 0, &back) == 0 && back);
    if (back) {
        CR_CHECK(faiss_Index_ntotal(back) == NB);
        same_results(ix, back, spi, "file round trip");
        faiss_Index_free(back);
        back = NULL;
    }
    unlink(path);
    CR_CHECK(faiss_read_index_fname(path, 0, &back) != 0); /* gone: error */

    /* buffer round trip, and a truncated buffer is an error */
    unsigned char *buf = NULL;
    size_t n = 0;
    CR_CHECK(faiss_write_index_buf(ix, &n, &buf) == 0 && buf && n > 0);
    CR_CHECK(faiss_read_index_buf(buf, n, 0, &back) == 0 && back);
    if (back) {
        same_results(ix, back, spi, "buffer round trip");
        faiss_Index_free(back);
        back = NULL;
    }
    CR_CHECK(faiss_read_index_buf(buf, n / 2, 0, &back) != 0);
    CR_CHECK(faiss_get_last_error() && faiss_get_last_error()[0]);
    free(buf);

    faiss_SearchParametersIVF_free(spi);
    faiss_Index_free(ix);
}

static void test_hnsw(void)
{
    FaissIndex *ix = make("HNSW32", METRIC_L2);
    if (!ix)
        return;
    float dis[NQ * K], bd[K];
    idx_t lab[NQ * K], bl[K];
    CR_CHECK(faiss_Index_add(ix, NB, xb) == 0);
    /* FAISS 1.7.3 bounds the per-call efSearch by the index's own efSearch field (fixed
     * upstream later): raise the field once so that the search parameter governs. */
    FaissParameterSpace *ps = NULL;
    CR_CHECK(faiss_ParameterSpace_new(&ps) == 0);
    CR_CHECK(faiss_ParameterSpace_set_index_parameter(ps, ix, "efSearch", 1024) == 0);
    faiss_ParameterSpace_free(ps);
    FaissSearchParametersHNSW *sp = NULL;
    CR_CHECK(faiss_SearchParametersHNSW_new_with(&sp, NULL, 256) == 0);
    CR_CHECK(faiss_SearchParametersHNSW_efSearch(sp) == 256);
    CR_CHECK(faiss_Index_search_with_params(ix, NQ, xq, K, sp, dis, lab) == 0);
    int hit = 0;
    for (int q = 0; q < NQ; q++) {
        brute(xq + (size_t)q * D, 0, NULL, NULL, bd, bl);
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                hit += lab[q * K + i] == bl[j];
    }
    double recall = (double)hit / (NQ * K);
    CR_CHECK_MSG(recall >= 0.95, "hnsw recall %.3f", recall);
    /* HNSW cannot remove: an error with a message */
    FaissIDSelectorRange *range = NULL;
    size_t nrem = 0;
    CR_CHECK(faiss_IDSelectorRange_new(&range, 0, 10) == 0);
    CR_CHECK(faiss_Index_remove_ids(ix, (const FaissIDSelector *)range, &nrem) != 0);
    CR_CHECK(faiss_get_last_error() && faiss_get_last_error()[0]);
    faiss_IDSelectorRange_free(range);
    faiss_SearchParametersHNSW_free(sp);
    faiss_Index_free(ix);
}

static void test_errors(void)
{
    FaissIndex *ix = NULL;
    int rc = faiss_index_factory(&ix, D, "NoSuchIndex123", METRIC_L2);
    CR_CHECK(rc != 0);
    CR_CHECK(ix == NULL);
    const char *msg = faiss_get_last_error();
    CR_CHECK(msg != NULL && msg[0] != '\0');
    CR_CHECK(faiss_read_index_fname("/nonexistent/cirrus/index", 0, &ix) != 0);
}

/* The ext switch gives exactly FAISS's own "np" (no polysemous) variant of a PQ factory; the
 * variant with polysemous training only relabels centroids (ADC distances unchanged) and
 * takes minutes even here, which is why cirrus skips it. */
static void test_skip_polysemous(void)
{
    FaissIndex *flat = make("Flat", METRIC_L2);
    CR_CHECK(flat && faiss_Index_skip_polysemous_training_ext(flat) == 1);
    faiss_Index_free(flat);
    const char *descs[] = {"IVF8,PQ4", "PQ4", "IDMap,PQ4"};
    for (size_t d = 0; d < sizeof descs / sizeof *descs; d++) {
        char np[32];
        snprintf(np, sizeof np, "%snp", descs[d]);
        FaissIndex *a = make(np, METRIC_L2), *b = make(descs[d], METRIC_L2);
        if (!a || !b)
            return;
        CR_CHECK_MSG(faiss_Index_skip_polysemous_training_ext(b) == 0, "%s: no PQ found", descs[d]);
        float da[NQ * K], db[NQ * K];
        idx_t la[NQ * K], lb[NQ * K];
        CR_CHECK(faiss_Index_train(a, NB, xb) == 0 && faiss_Index_train(b, NB, xb) == 0);
        if (strncmp(descs[d], "IDMap", 5) == 0) {
            idx_t *ids = malloc(sizeof(idx_t) * NB);
            for (int i = 0; i < NB; i++)
                ids[i] = 1000 + i;
            CR_CHECK(faiss_Index_add_with_ids(a, NB, xb, ids) == 0);
            CR_CHECK(faiss_Index_add_with_ids(b, NB, xb, ids) == 0);
            free(ids);
        } else {
            CR_CHECK(faiss_Index_add(a, NB, xb) == 0 && faiss_Index_add(b, NB, xb) == 0);
        }
        CR_CHECK(faiss_Index_search(a, NQ, xq, K, da, la) == 0);
        CR_CHECK(faiss_Index_search(b, NQ, xq, K, db, lb) == 0);
        int diff = 0;
        for (int i = 0; i < NQ * K; i++)
            diff += la[i] != lb[i] || fabsf(da[i] - db[i]) > 1e-4f * (1 + fabsf(da[i]));
        CR_CHECK_MSG(diff == 0, "%s: %d of %d answers differ without polysemous training",
                     descs[d], diff, NQ * K);
        faiss_Index_free(a);
        faiss_Index_free(b);
    }
}

int main(void)
{
    CR_TEST_BEGIN();
    xb = malloc(sizeof(float) * NB * D);
    xq = malloc(sizeof(float) * NQ * D);
    for (int i = 0; i < NB * D; i++)
        xb[i] = frand();
    for (int i = 0; i < NQ * D; i++)
        xq[i] = frand();
    test_flat(0);
    test_flat(1);
    test_selectors();
    test_ivf_io_params();
    test_hnsw();
    test_errors();
    test_skip_polysemous();
    free(xb);
    free(xq);
    return CR_TEST_END();
}
