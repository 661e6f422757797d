/* test_compose.c — composition heads against the clip-tiny fixture (SEARLE phi and prompt
 * encoding, CLIP4Cir Combiner, sum, baselines), the FashionIQ two-caption protocol, and the
 * failure paths (missing or misshapen heads, bad templates). */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/test.h"
#include "encoder/clip_model.h"
#include "encoder/compose.h"
#include "encoder/safetensors.h"
#include "encoder/tokenizer.h"

#define D 64
#define W 128
#define NCAP 15

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

static void normalize_rows(float *x, size_t n, size_t d)
{
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++)
            s += (double)x[i * d + j] * x[i * d + j];
        s = sqrt(s);
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(x[i * d + j] / s);
    }
}

static double cosine(const float *a, const float *b, size_t d)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t j = 0; j < d; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    return ab / sqrt(aa * bb);
}

/* Writes a safetensors file of zero-filled F32 tensors (names in the order given; the format
 * only needs valid, non-overlapping offsets). */
typedef struct fake_tensor {
    const char *name;
    int ndim;
    int64_t shape[2];
} fake_tensor;

static int write_fake_st(const char *path, const fake_tensor *t, size_t n)
{
    char header[4096];
    size_t len = 0, off = 0;
    FILE *f;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (size_t i = 0; i < n; i++) {
        size_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++)
            numel *= (size_t)t[i].shape[k];
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                                t[i].name);
        for (int k = 0; k < t[i].ndim; k++)
            len += (size_t)snprintf(header + len, sizeof header - len, "%s%lld", k ? "," : "",
                                    (long long)t[i].shape[k]);
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "],\"data_offsets\":[%zu,%zu]}", off, off + numel * 4);
        off += numel * 4;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char hl[8];
    for (int k = 0; k < 8; k++)
        hl[k] = (unsigned char)((uint64_t)len >> (8 * k));
    fwrite(hl, 1, 8, f);
    fwrite(header, 1, len, f);
    for (size_t i = 0; i < off; i++)
        fputc(0, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* Opens a composer whose phi (or combiner) comes from fake tensors; returns the rc and
 * whether the message names `expect`. */
static cr_err open_fake(const enc_clip *m, const enc_tokenizer *tok, const fake_tensor *t,
                        size_t n, int is_phi, const char *expect)
{
    char path[] = "/tmp/test_compose_XXXXXX";
    int fd = mkstemp(path);
    enc_composer *c = NULL;
    cr_err rc;
    if (fd < 0)
        return CR_ERR_IO;
    close(fd);
    if (write_fake_st(path, t, n)) {
        unlink(path);
        return CR_ERR_IO;
    }
    rc = enc_composer_open(&c, m, tok, is_phi ? path : NULL, is_phi ? NULL : path);
    CR_CHECK_MSG(rc != CR_ERR_MODEL || strstr(cr_error_message(), expect), "message '%s'",
                 cr_error_message());
    if (rc)
        printf("  (expected) %s\n", cr_error_message());
    CR_CHECK(rc == CR_OK || c == NULL);
    enc_composer_close(&c);
    unlink(path);
    return rc;
}

static void test_bad_heads(const enc_clip *m, const enc_tokenizer *tok)
{
    /* phi whose input is not embed_dim */
    fake_tensor phi_in[] = {{"layers.0.weight", 2, {256, 32}}, {"layers.0.bias", 1, {256}},
                            {"layers.3.weight", 2, {256, 256}}, {"layers.3.bias", 1, {256}},
                            {"layers.6.weight", 2, {128, 256}}, {"layers.6.bias", 1, {128}}};
    CR_CHECK(open_fake(m, tok, phi_in, 6, 1, "layers.0.weight") == CR_ERR_MODEL);
    /* phi whose output is not the text width */
    fake_tensor phi_out[] = {{"layers.0.weight", 2, {256, 64}}, {"layers.0.bias", 1, {256}},
                             {"layers.3.weight", 2, {256, 256}}, {"layers.3.bias", 1, {256}},
                             {"layers.6.weight", 2, {64, 256}}, {"layers.6.bias", 1, {64}}};
    CR_CHECK(open_fake(m, tok, phi_out, 6, 1, "layers.6.weight") == CR_ERR_MODEL);
    /* phi with a missing bias */
    CR_CHECK(open_fake(m, tok, phi_out, 3, 1, "layers.3.bias") == CR_ERR_MODEL);
    /* a correctly shaped fake phi loads */
    fake_tensor phi_ok[] = {{"layers.0.weight", 2, {32, 64}}, {"layers.0.bias", 1, {32}},
                            {"layers.3.weight", 2, {16, 32}}, {"layers.3.bias", 1, {16}},
                            {"layers.6.weight", 2, {128, 16}}, {"layers.6.bias", 1, {128}}};
    CR_CHECK(open_fake(m, tok, phi_ok, 6, 1, "") == CR_OK);
    /* combiner with the wrong output layer */
    fake_tensor comb[] = {{"text_projection_layer.weight", 2, {128, 64}},
                          {"text_projection_layer.bias", 1, {128}},
                          {"image_projection_layer.weight", 2, {128, 64}},
                          {"image_projection_layer.bias", 1, {128}},
                          {"combiner_layer.weight", 2, {256, 256}},
                          {"combiner_layer.bias", 1, {256}},
                          {"output_layer.weight", 2, {512, 256}},
                          {"output_layer.bias", 1, {512}},
                          {"dynamic_scalar.0.weight", 2, {256, 256}},
                          {"dynamic_scalar.0.bias", 1, {256}},
                          {"dynamic_scalar.3.weight", 2, {1, 256}},
                          {"dynamic_scalar.3.bias", 1, {1}}};
    CR_CHECK(open_fake(m, tok, comb, 12, 0, "output_layer.weight") == CR_ERR_MODEL);
    comb[6].shape[0] = 64;
    comb[7].shape[0] = 64;
    CR_CHECK(open_fake(m, tok, comb, 12, 0, "") == CR_OK);
    comb[8].shape[1] = 128; /* dynamic scalar must read the 2 x projection concatenation */
    CR_CHECK(open_fake(m, tok, comb, 12, 0, "dynamic_scalar.0.weight") == CR_ERR_MODEL);
}

static void test_unsupported(const enc_clip *m, const enc_tokenizer *tok, const float *ref)
{
    enc_composer *c = NULL;
    float out[D];
    enc_compose_input in = {.ref = ref, .caption = "is red", .method = ENC_COMPOSE_SEARLE};

    CR_CHECK(enc_composer_open(&c, m, tok, NULL, "/nonexistent/combiner.safetensors") == CR_OK);
    CR_CHECK(enc_composer_has(c, ENC_COMPOSE_SEARLE) == 0);
    CR_CHECK(enc_composer_has(c, ENC_COMPOSE_COMBINER) == 0);
    CR_CHECK(enc_composer_has(c, ENC_COMPOSE_SUM) == 1);
    CR_CHECK(enc_composer_run(c, &in, 1, out, NULL) == CR_ERR_UNSUPPORTED);
    in.method = ENC_COMPOSE_COMBINER;
    CR_CHECK(enc_composer_run(c, &in, 1, out, NULL) == CR_ERR_UNSUPPORTED);
    CR_CHECK_MSG(strstr(cr_error_message(), "/nonexistent/combiner.safetensors"), "'%s'",
                 cr_error_message());
    in.method = ENC_COMPOSE_SUM;
    CR_CHECK(enc_composer_run(c, &in, 1, out, NULL) == CR_OK);
    enc_composer_close(&c);
    CR_CHECK(c == NULL);
    enc_composer_close(&c);
}

static void test_methods(void)
{
    enc_compose_method m;
    CR_CHECK(enc_compose_method_parse("searle", &m) == CR_OK && m == ENC_COMPOSE_SEARLE);
    CR_CHECK(enc_compose_method_parse("image", &m) == CR_OK && m == ENC_COMPOSE_IMAGE);
    CR_CHECK(enc_compose_method_parse("pic2word", &m) == CR_ERR_INVALID);
    CR_CHECK(strcmp(enc_compose_method_name(ENC_COMPOSE_COMBINER), "combiner") == 0);
    CR_CHECK(strcmp(enc_compose_method_name((enc_compose_method)42), "unknown") == 0);
}

int main(void)
{
    char dir[1024], path[1200];
    enc_clip *model = NULL;
    enc_tokenizer *tok = NULL;
    enc_st *exp = NULL;
    enc_composer *cmp = NULL;
    json_t *cases = NULL;
    float *img = NULL, *phi_exp = NULL, *searle = NULL, *comb = NULL, *sum = NULL, *caps = NULL;
    const char *captions[NCAP];
    float out[NCAP * D], out2[NCAP * D], pseudo[6 * W];
    int trunc[NCAP];
    enc_compose_input in[NCAP];
    int64_t s6d[2] = {6, D}, s6w[2] = {6, W}, scd[2] = {NCAP, D};
    double e;

    CR_TEST_BEGIN();
    snprintf(dir, sizeof dir, "%s/fixtures/clip-tiny", cr_test_shared_dir());
    snprintf(path, sizeof path, "%s/clip-openai-names.safetensors", dir);
    if (access(path, R_OK) != 0) {
        printf("SKIP: %s not found\n", path);
        return 77;
    }
    test_methods();
    CR_CHECK(enc_clip_open(&model, path, NULL) == CR_OK);
    CR_CHECK(enc_tokenizer_open(&tok, NULL) == CR_OK);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CR_CHECK(enc_st_open(&exp, path) == CR_OK);
    snprintf(path, sizeof path, "%s/cases.json", dir);
    cases = json_load_file(path, 0, NULL);
    if (!model || !tok || !exp || !cases) {
        fprintf(stderr, "fixture load failed: %s\n", cr_error_message());
        return 1;
    }
    CR_CHECK(enc_clip_embed_dim(model) == D && enc_clip_text_width(model) == W);
    CR_CHECK(enc_st_get_f32(exp, "image_embeds", 2, s6d, &img) == CR_OK);
    CR_CHECK(enc_st_get_f32(exp, "phi_pseudo_tokens", 2, s6w, &phi_exp) == CR_OK);
    CR_CHECK(enc_st_get_f32(exp, "composed_searle", 2, s6d, &searle) == CR_OK);
    CR_CHECK(enc_st_get_f32(exp, "combiner_out", 2, s6d, &comb) == CR_OK);
    CR_CHECK(enc_st_get_f32(exp, "sum_out", 2, s6d, &sum) == CR_OK);
    CR_CHECK(enc_st_get_f32(exp, "caption_embeds", 2, scd, &caps) == CR_OK);
    json_t *jc = json_object_get(cases, "captions");
    CR_CHECK(json_array_size(jc) == NCAP);
    for (size_t i = 0; i < NCAP; i++)
        captions[i] = json_string_value(json_array_get(jc, i));

    test_unsupported(model, tok, img);
    test_bad_heads(model, tok);

    char phi_path[1200], comb_path[1200];
    snprintf(phi_path, sizeof phi_path, "%s/phi.safetensors", dir);
    snprintf(comb_path, sizeof comb_path, "%s/combiner.safetensors", dir);
    CR_CHECK(enc_composer_open(&cmp, model, tok, phi_path, comb_path) == CR_OK);
    if (!cmp) {
        fprintf(stderr, "composer open failed: %s\n", cr_error_message());
        return 1;
    }
    for (int m = ENC_COMPOSE_SEARLE; m <= ENC_COMPOSE_IMAGE; m++)
        CR_CHECK(enc_composer_has(cmp, (enc_compose_method)m));

    /* phi alone */
    CR_CHECK(enc_composer_phi(cmp, img, 6, pseudo) == CR_OK);
    e = rel_err(pseudo, phi_exp, 6 * W);
    printf("phi_pseudo_tokens rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);

    /* SEARLE, batched; reference normalized here (the fixture's is not) */
    memset(in, 0, sizeof in);
    for (int i = 0; i < 6; i++)
        in[i] = (enc_compose_input){
            .ref = img + i * D, .caption = captions[i], .method = ENC_COMPOSE_SEARLE};
    CR_CHECK(enc_composer_run(cmp, in, 6, out, trunc) == CR_OK);
    normalize_rows(searle, 6, D);
    e = rel_err(out, searle, 6 * D);
    printf("composed_searle rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);
    for (int i = 0; i < 6; i++)
        CR_CHECK(trunc[i] == 0);
    /* one at a time gives the same */
    CR_CHECK(enc_composer_run(cmp, &in[3], 1, out2, NULL) == CR_OK);
    CR_CHECK(rel_err(out2, out + 3 * D, D) < 1e-6);

    /* Combiner: end to end, and the head alone on the fixture's caption embeddings */
    for (int i = 0; i < 6; i++)
        in[i].method = ENC_COMPOSE_COMBINER;
    CR_CHECK(enc_composer_run(cmp, in, 6, out, NULL) == CR_OK);
    e = rel_err(out, comb, 6 * D);
    printf("combiner_out rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);
    CR_CHECK(enc_composer_combine(cmp, img, caps, 6, out2) == CR_OK);
    e = rel_err(out2, comb, 6 * D);
    printf("combiner head (given text feats) rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);

    /* Sum */
    for (int i = 0; i < 6; i++)
        in[i].method = ENC_COMPOSE_SUM;
    CR_CHECK(enc_composer_run(cmp, in, 6, out, NULL) == CR_OK);
    e = rel_err(out, sum, 6 * D);
    printf("sum_out rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);

    /* TEXT baseline over all captions (empty and over-long ones included) */
    for (int i = 0; i < NCAP; i++)
        in[i] = (enc_compose_input){
            .ref = img + (i % 6) * D, .caption = captions[i], .method = ENC_COMPOSE_TEXT};
    CR_CHECK(enc_composer_run(cmp, in, NCAP, out, trunc) == CR_OK);
    normalize_rows(caps, NCAP, D);
    e = rel_err(out, caps, NCAP * D);
    printf("text baseline rel err %.3g\n", e);
    CR_CHECK(e < 1e-4);
    for (int i = 0; i < NCAP; i++)
        CR_CHECK_MSG(trunc[i] == 0, "caption %d truncated=%d", i, trunc[i]); /* 14: 45 ids */
    CR_CHECK(captions[9][0] == '\0');
    /* caption 14 twice (90 ids) is cut to 77 tokens */
    char longcap[1024];
    snprintf(longcap, sizeof longcap, "%s %s", captions[14], captions[14]);
    in[0].caption = longcap;
    CR_CHECK(enc_composer_run(cmp, in, 1, out, trunc) == CR_OK);
    CR_CHECK(trunc[0] == 1);

    /* IMAGE baseline */
    for (int i = 0; i < 6; i++)
        in[i].method = ENC_COMPOSE_IMAGE;
    CR_CHECK(enc_composer_run(cmp, in, 6, out, trunc) == CR_OK);
    memcpy(out2, img, 6 * D * sizeof *out2);
    normalize_rows(out2, 6, D);
    CR_CHECK(rel_err(out, out2, 6 * D) < 1e-6);

    /* A mixed batch equals the single-method runs; long and empty captions through SEARLE */
    {
        enc_compose_input mix[5] = {
            {.ref = img, .caption = captions[0], .method = ENC_COMPOSE_SEARLE},
            {.ref = img + D, .caption = captions[1], .method = ENC_COMPOSE_COMBINER},
            {.ref = img + 2 * D, .caption = longcap, .method = ENC_COMPOSE_SEARLE},
            {.ref = img + 3 * D, .caption = "", .method = ENC_COMPOSE_SEARLE},
            {.ref = img + 4 * D, .caption = captions[4], .method = ENC_COMPOSE_IMAGE}};
        float one[D];
        CR_CHECK(enc_composer_run(cmp, mix, 5, out, trunc) == CR_OK);
        CR_CHECK(rel_err(out, searle, D) < 1e-4);
        CR_CHECK(trunc[2] == 1 && trunc[0] == 0 && trunc[3] == 0);
        for (int i = 0; i < 5; i++) {
            CR_CHECK(enc_composer_run(cmp, &mix[i], 1, one, NULL) == CR_OK);
            CR_CHECK_MSG(rel_err(out + i * D, one, D) < 1e-6, "mixed row %d", i);
        }
    }

    /* FashionIQ: mean of "{c1} and {c2}" and "{c2} and {c1}", normalized */
    {
        static const enc_compose_method ms[] = {ENC_COMPOSE_TEXT, ENC_COMPOSE_SEARLE,
                                                ENC_COMPOSE_COMBINER, ENC_COMPOSE_SUM};
        for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            enc_compose_input two = {.ref = img + 2 * D, .caption = "is blue",
                                     .caption2 = "has long sleeves", .method = ms[k]};
            enc_compose_input ab[2] = {two, two};
            float want[D];
            ab[0].caption = "is blue and has long sleeves";
            ab[1].caption = "has long sleeves and is blue";
            ab[0].caption2 = ab[1].caption2 = NULL;
            CR_CHECK(enc_composer_run(cmp, &two, 1, out, trunc) == CR_OK);
            CR_CHECK(enc_composer_run(cmp, ab, 2, out2, NULL) == CR_OK);
            for (int j = 0; j < D; j++)
                want[j] = out2[j] + out2[D + j];
            normalize_rows(want, 1, D);
            CR_CHECK_MSG(rel_err(out, want, D) < 1e-6, "caption2 %s",
                         enc_compose_method_name(ms[k]));
            CR_CHECK(cosine(out2, out2 + D, D) < 0.99999); /* the two orders differ */
            CR_CHECK(trunc[0] == 0);
        }
    }

    /* Templates */
    {
        enc_compose_input t = {.ref = img, .caption = captions[0], .method = ENC_COMPOSE_SEARLE};
        t.prompt_template = "a photo that {}";
        CR_CHECK(enc_composer_run(cmp, &t, 1, out, NULL) == CR_ERR_INVALID);
        t.prompt_template = "$ and $ that {}";
        CR_CHECK(enc_composer_run(cmp, &t, 1, out, NULL) == CR_ERR_INVALID);
        t.prompt_template = "a photo of $";
        CR_CHECK(enc_composer_run(cmp, &t, 1, out, NULL) == CR_ERR_INVALID);
        t.prompt_template = "a photo of $ that {}";
        CR_CHECK(enc_composer_run(cmp, &t, 1, out, NULL) == CR_OK);
        CR_CHECK(rel_err(out, searle, D) < 1e-4);
        /* "{}" first, a caption with '$' tokens: the template's '$' is the one replaced */
        t.caption = captions[11]; /* "$$ dollar $ signs $5" */
        t.prompt_template = "{} like $";
        CR_CHECK(enc_composer_run(cmp, &t, 1, out, NULL) == CR_OK);
        {
            int32_t ids[ENC_TOKENIZER_CONTEXT];
            char text[256];
            float ph[W], ref_first[D], ref_tmpl[D];
            int n_used = 0, dollars = 0;
            snprintf(text, sizeof text, "%s like $", captions[11]);
            CR_CHECK(enc_tokenizer_encode(tok, text, ids, &n_used, NULL) == CR_OK);
            CR_CHECK(ids[n_used - 2] == 259); /* the template's '$' is last */
            for (int j = 0; j < n_used; j++)
                dollars += ids[j] == 259;
            CR_CHECK(dollars >= 2);
            CR_CHECK(enc_composer_phi(cmp, img, 1, ph) == CR_OK);
            /* SEARLE's literal rule would replace the caption's first '$' instead */
            CR_CHECK(enc_clip_encode_tokens_pseudo(model, ids, 1, ph, 259, ref_first) == CR_OK);
            ids[n_used - 2] = 1; /* "\"" is not in this prompt: mark the template's '$' */
            CR_CHECK(enc_clip_encode_tokens_pseudo(model, ids, 1, ph, 1, ref_tmpl) == CR_OK);
            normalize_rows(ref_tmpl, 1, D);
            CR_CHECK(rel_err(out, ref_tmpl, D) < 1e-6);
            CR_CHECK(cosine(out, ref_first, D) < 0.99999);
        }
    }

    /* Bad inputs */
    {
        enc_compose_input b = {.ref = NULL, .caption = "x", .method = ENC_COMPOSE_SUM};
        float bad[D];
        CR_CHECK(enc_composer_run(cmp, &b, 1, out, NULL) == CR_ERR_INVALID);
        memcpy(bad, img, sizeof bad);
        bad[3] = NAN;
        b.ref = bad;
        CR_CHECK(enc_composer_run(cmp, &b, 1, out, NULL) == CR_ERR_INVALID);
        b.ref = img;
        b.method = (enc_compose_method)9;
        CR_CHECK(enc_composer_run(cmp, &b, 1, out, NULL) == CR_ERR_INVALID);
        b.method = ENC_COMPOSE_TEXT;
        b.caption = "\xff\xfe bad utf-8";
        CR_CHECK(enc_composer_run(cmp, &b, 1, out, NULL) == CR_ERR_INVALID);
        CR_CHECK(enc_composer_run(cmp, &b, 0, out, NULL) == CR_OK);
    }

    enc_composer_close(&cmp);
    CR_CHECK(cmp == NULL);
    json_decref(cases);
    free(img);
    free(phi_exp);
    free(searle);
    free(comb);
    free(sum);
    free(caps);
    enc_st_close(&exp);
    enc_tokenizer_close(&tok);
    enc_clip_close(&model);
    return CR_TEST_END();
}
