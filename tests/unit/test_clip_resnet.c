/* test_clip_resnet.c — CLIP's ModifiedResNet image tower against the reference outputs of
 * ../shared/fixtures/clip-rn-tiny (OpenAI CLIP's own model.py, fp32): embeddings from the
 * fixture's pixels, also with their mean over the images removed (random ResNet embeddings of
 * different images are nearly parallel, so the plain error alone would hide a wrong tower);
 * hyper-parameters derived from the shapes; batches across a chunk; the text tower of the same
 * checkpoint; and load errors (a missing shortcut, a missing BatchNorm statistic). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/test.h"
#include "encoder/clip_model.h"
#include "encoder/safetensors.h"

#define TOL 1e-4
#define E 64
#define S 96

static char fixture_dir[1024];

static float *get_any(enc_st *st, const char *name, int ndim)
{
    int64_t any[4] = {-1, -1, -1, -1};
    float *f = NULL;
    if (enc_st_get_f32(st, name, ndim, any, &f) != CR_OK)
        fprintf(stderr, "%s\n", cr_error_message());
    return f;
}

/* Largest per-row relative L2 error; with `center`, of both sides minus their own mean row. */
static double rel_err(const float *got, const float *want, int rows, int dim, int center)
{
    double worst = 0, mg[4096] = {0}, mw[4096] = {0};
    if (center)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < dim; c++) {
                mg[c] += (double)got[r * dim + c] / rows;
                mw[c] += (double)want[r * dim + c] / rows;
            }
    for (int r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (int c = 0; c < dim; c++) {
            double g = (double)got[r * dim + c] - mg[c], w = (double)want[r * dim + c] - mw[c];
            num += (g - w) * (g - w);
            den += w * w;
        }
        double e = sqrt(num / (den > 0 ? den : 1));
        if (e > worst || e != e)
            worst = e;
    }
    return worst;
}

static void test_parity(const char *model_path)
{
    char path[1200];
    enc_st *ex = NULL;
    enc_clip *m = NULL;
    snprintf(path, sizeof path, "%s/expected.safetensors", fixture_dir);
    CR_CHECK_MSG(enc_st_open(&ex, path) == CR_OK, "%s", cr_error_message());
    cr_err rc = enc_clip_open(&m, model_path, NULL);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (!ex || rc)
        goto out;
    CR_CHECK(enc_clip_is_resnet(m));
    CR_CHECK(enc_clip_embed_dim(m) == E && enc_clip_image_size(m) == S);
    CR_CHECK(enc_clip_patch_size(m) == 0);
    CR_CHECK(enc_clip_vision_width(m) == 16 && enc_clip_vision_heads(m) == 8);
    CR_CHECK(enc_clip_vision_layers(m) == 5);
    CR_CHECK(enc_clip_resnet_blocks(m, 0) == 1 && enc_clip_resnet_blocks(m, 1) == 2 &&
             enc_clip_resnet_blocks(m, 2) == 1 && enc_clip_resnet_blocks(m, 3) == 1);
    CR_CHECK(enc_clip_text_width(m) == 128 && enc_clip_text_layers(m) == 2);
    CR_CHECK(enc_clip_image_flops(m) > 1e6);

    float *pixels = get_any(ex, "pixels", 4), *want = get_any(ex, "image_embeds", 2);
    float *toks_f = get_any(ex, "caption_tokens", 2), *cap_want = get_any(ex, "caption_embeds", 2);
    int n = 6, ncap = 15;
    float got[6 * E], one[E], cap[15 * E];
    int32_t toks[15 * 77];
    CR_CHECK(pixels && want && toks_f && cap_want);
    if (!pixels || !want || !toks_f || !cap_want)
        goto free_out;

    CR_CHECK(enc_clip_encode_images(m, pixels, n, got) == CR_OK);
    double e_plain = rel_err(got, want, n, E, 0), e_center = rel_err(got, want, n, E, 1);
    CR_CHECK_MSG(e_plain <= TOL, "image_embeds rel err %g", e_plain);
    CR_CHECK_MSG(e_center <= TOL, "image_embeds minus their mean: rel err %g", e_center);
    printf("RN tiny: image rel L2 err %.2e, after removing the mean %.2e\n", e_plain, e_center);

    /* one image alone gives the same as in the batch */
    CR_CHECK(enc_clip_encode_images(m, pixels + 3 * S * S * 4, 1, one) == CR_OK);
    CR_CHECK(rel_err(one, got + 4 * E, 1, E, 0) < 1e-5);

    /* 40 images: more than one chunk of the forward */
    {
        int big = 40;
        float *px = malloc((size_t)big * 3 * S * S * sizeof *px);
        float *o = malloc((size_t)big * E * sizeof *o);
        CR_CHECK(px && o);
        if (px && o) {
            for (int i = 0; i < big; i++)
                memcpy(px + (size_t)i * 3 * S * S, pixels + (size_t)(i % n) * 3 * S * S,
                       3 * S * S * sizeof *px);
            CR_CHECK(enc_clip_encode_images(m, px, big, o) == CR_OK);
            CR_CHECK(rel_err(o + 37 * E, got + (37 % n) * E, 1, E, 0) < 1e-5);
            CR_CHECK(rel_err(o + 3 * E, got + 3 * E, 1, E, 0) < 1e-5);
        }
        free(px);
        free(o);
    }

    /* the text tower of the same checkpoint */
    for (int i = 0; i < ncap * 77; i++)
        toks[i] = (int32_t)toks_f[i];
    CR_CHECK(enc_clip_encode_tokens(m, toks, ncap, cap) == CR_OK);
    double e_cap = rel_err(cap, cap_want, ncap, E, 0);
    CR_CHECK_MSG(e_cap <= TOL, "caption_embeds rel err %g", e_cap);
    CR_CHECK(enc_clip_encode_images(m, NULL, 1, one) == CR_ERR_INVALID);
free_out:
    free(pixels);
    free(want);
    free(toks_f);
    free(cap_want);
out:
    enc_clip_close(&m);
    enc_st_close(&ex);
}

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *size = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Renames tensor `from` to `to` (same length) in the header of a copy of the fixture, then
 * loads it: the load must fail with CR_ERR_MODEL naming `expect`. */
static void expect_load_error(const uint8_t *file, size_t size, const char *from, const char *to,
                              const char *expect)
{
    uint8_t *copy = malloc(size);
    enc_st *st = NULL;
    enc_clip *m = NULL;
    char quoted[256];
    CR_CHECK(copy && strlen(from) == strlen(to));
    if (!copy)
        return;
    memcpy(copy, file, size);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)copy[i] << (8 * i);
    snprintf(quoted, sizeof quoted, "\"%s\"", from);
    char *hdr = (char *)copy + 8, *hit = NULL;
    for (uint64_t i = 0; i + strlen(quoted) <= hl && !hit; i++)
        if (memcmp(hdr + i, quoted, strlen(quoted)) == 0)
            hit = hdr + i + 1;
    CR_CHECK_MSG(hit != NULL, "tensor %s not in the header", from);
    if (hit)
        memcpy(hit, to, strlen(to));
    CR_CHECK(enc_st_open_memory(&st, copy, size) == CR_OK);
    cr_err rc = st ? enc_clip_load(&m, st, NULL, NULL) : CR_ERR_INVALID;
    CR_CHECK_MSG(rc == CR_ERR_MODEL && m == NULL, "renaming %s: rc %d", from, rc);
    CR_CHECK_MSG(strstr(cr_error_message(), expect) != NULL, "message '%s' lacks '%s'",
                 cr_error_message(), expect);
    enc_clip_close(&m);
    enc_st_close(&st);
    free(copy);
}

static void test_errors(const char *model_path)
{
    size_t size = 0;
    uint8_t *file = slurp(model_path, &size);
    CR_CHECK(file != NULL);
    if (!file)
        return;
    expect_load_error(file, size, "visual.layer2.0.downsample.0.weight",
                      "visual.layer2.0.downsample.X.weight", "visual.layer2.0.downsample.0.weight");
    expect_load_error(file, size, "visual.layer3.0.bn2.running_var",
                      "visual.layer3.0.bn2.running_vaX", "visual.layer3.0.bn2.running_var");
    expect_load_error(file, size, "visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.weighX",
                      "visual.attnpool.c_proj.weight");
    free(file);
}

int main(void)
{
    CR_TEST_BEGIN();
    const char *shared = cr_test_shared_dir();
    struct stat sb;
    char model[1200];
    snprintf(fixture_dir, sizeof fixture_dir, "%s/fixtures/clip-rn-tiny", shared);
    snprintf(model, sizeof model, "%s/clip-rn-openai-names.safetensors", fixture_dir);
    if (stat(model, &sb) != 0) {
        printf("SKIP: %s not found\n", model);
        return 77;
    }
    test_parity(model);
    test_errors(model);
    return CR_TEST_END();
}
