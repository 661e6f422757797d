/* test_safetensors.c — header validation, dtype conversion, error messages, and a fuzz-style
 * loop of random mutations and truncations of a valid file that must never crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/test.h"
#include "encoder/safetensors.h"

/* A file image: 8-byte length, header, data. Caller frees. */
static uint8_t *build(const char *header, const void *data, size_t data_len, size_t *size)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len)
        memcpy(buf + 8 + hl, data, data_len);
    *size = 8 + hl + data_len;
    return buf;
}

/* The valid reference file: a F32 [2,3], b F16 [4], c BF16 [2,2], d I64 [1], e F32 [] */
static uint8_t *valid_file(size_t *size)
{
    static const char hdr[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                              "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                              "\"c\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
                              "\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[40,48]},"
                              "\"e\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[48,52]}}  ";
    uint8_t data[52];
    float a[6] = {1.f, -2.f, 3.5f, 0.f, 1e-3f, -7.25f};
    uint16_t b[4] = {0x3c00 /* 1 */, 0xc000 /* -2 */, 0x0001 /* 2^-24 */, 0x7c00 /* inf */};
    uint16_t c[4] = {0x3f80 /* 1 */, 0xbfc0 /* -1.5 */, 0x4049 /* 3.140625 */, 0x0000};
    int64_t d = 42;
    float e = 9.f;
    memcpy(data, a, 24);
    memcpy(data + 24, b, 8);
    memcpy(data + 32, c, 8);
    memcpy(data + 40, &d, 8);
    memcpy(data + 48, &e, 4);
    return build(hdr, data, sizeof data, size);
}

static void test_valid(void)
{
    size_t size;
    uint8_t *buf = valid_file(&size);
    enc_st *st = NULL;
    CR_CHECK(enc_st_open_memory(&st, buf, size) == CR_OK);
    if (!st) {
        fprintf(stderr, "%s\n", cr_error_message());
        free(buf);
        return;
    }
    CR_CHECK(enc_st_count(st) == 5);
    CR_CHECK(strcmp(enc_st_tensor_at(st, 0)->name, "a") == 0);
    CR_CHECK(enc_st_tensor_at(st, 5) == NULL);
    CR_CHECK(enc_st_find(st, "__metadata__") == NULL);
    CR_CHECK(enc_st_find(st, "zz") == NULL);
    const enc_st_tensor *t = enc_st_find(st, "c");
    CR_CHECK(t && t->dtype == ENC_ST_BF16 && t->ndim == 2 && t->numel == 4 && t->nbytes == 8);

    float *f = NULL;
    int64_t a_shape[2] = {2, 3};
    CR_CHECK(enc_st_get_f32(st, "a", 2, a_shape, &f) == CR_OK);
    CR_CHECK(f && f[0] == 1.f && f[2] == 3.5f && f[5] == -7.25f);
    free(f);
    f = NULL;
    int64_t wild[2] = {-1, 3};
    CR_CHECK(enc_st_get_f32(st, "a", 2, wild, &f) == CR_OK);
    free(f);
    f = NULL;
    int64_t b_shape[1] = {4};
    CR_CHECK(enc_st_get_f32(st, "b", 1, b_shape, &f) == CR_OK);
    CR_CHECK(f && f[0] == 1.f && f[1] == -2.f && f[2] == 5.9604644775390625e-08f && f[3] > 1e38f);
    free(f);
    f = NULL;
    int64_t c_shape[2] = {2, 2};
    CR_CHECK(enc_st_get_f32(st, "c", 2, c_shape, &f) == CR_OK);
    CR_CHECK(f && f[0] == 1.f && f[1] == -1.5f && f[2] == 3.140625f && f[3] == 0.f);
    free(f);
    f = NULL;
    CR_CHECK(enc_st_get_f32(st, "e", 0, NULL, &f) == CR_OK);
    CR_CHECK(f && f[0] == 9.f);
    free(f);
    f = NULL;

    /* errors: wrong shape names the tensor and both shapes; missing names the tensor */
    int64_t bad[2] = {3, 2};
    CR_CHECK(enc_st_get_f32(st, "a", 2, bad, &f) == CR_ERR_MODEL && f == NULL);
    CR_CHECK_MSG(strstr(cr_error_message(), "'a'") && strstr(cr_error_message(), "[2, 3]") &&
                     strstr(cr_error_message(), "[3, 2]"),
                 "%s", cr_error_message());
    CR_CHECK(enc_st_get_f32(st, "missing.weight", 2, bad, &f) == CR_ERR_MODEL);
    CR_CHECK_MSG(strstr(cr_error_message(), "missing.weight") != NULL, "%s", cr_error_message());
    int64_t d_shape[1] = {1};
    CR_CHECK(enc_st_get_f32(st, "d", 1, d_shape, &f) == CR_ERR_MODEL);
    CR_CHECK_MSG(strstr(cr_error_message(), "I64") != NULL, "%s", cr_error_message());
    float small[2];
    CR_CHECK(enc_st_read_f32(st, "a", 2, a_shape, small, 2) < 0);

    enc_st_close(&st);
    CR_CHECK(st == NULL);
    enc_st_close(&st); /* NULL-safe */
    free(buf);
}

static void test_conversions(void)
{
    CR_CHECK(enc_st_f16_to_f32(0x0000) == 0.f);
    CR_CHECK(enc_st_f16_to_f32(0x8000) == 0.f);
    CR_CHECK(enc_st_f16_to_f32(0x3555) == 0.333251953125f);
    CR_CHECK(enc_st_f16_to_f32(0x7bff) == 65504.f);
    CR_CHECK(enc_st_f16_to_f32(0x03ff) == 6.097555160522461e-05f); /* largest subnormal */
    CR_CHECK(enc_st_f16_to_f32(0x8001) == -5.9604644775390625e-08f);
    CR_CHECK(enc_st_f16_to_f32(0xfc00) < -1e38f);
    float nan16 = enc_st_f16_to_f32(0x7e00);
    CR_CHECK(nan16 != nan16);
    CR_CHECK(enc_st_bf16_to_f32(0xc2f7) == -123.5f);
}

typedef struct corrupt_case {
    const char *what;
    const char *header;
    size_t data_len;
} corrupt_case;

static void test_corrupt_headers(void)
{
    static const corrupt_case cases[] = {
        {"not json", "{\"a\":", 8},
        {"trailing garbage", "{} x", 0},
        {"array top level", "[1, 2]", 0},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8},
        {"float dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8},
        {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8},
        {"begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8},
        {"end past data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8},
        {"span mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         16},
        {"duplicate name",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8},
        {"metadata not object", "{\"__metadata__\":3}", 0},
        {"entry not object", "{\"a\":[1,2]}", 0},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
        {"nine dims",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1},
        {"overflowing shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0},
        {"huge offset",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,0]}}", 0},
        {"empty name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1},
    };
    uint8_t zeros[64] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t size;
        uint8_t *buf = build(cases[i].header, zeros, cases[i].data_len, &size);
        enc_st *st = NULL;
        cr_err rc = enc_st_open_memory(&st, buf, size);
        CR_CHECK_MSG(rc == CR_ERR_MODEL && st == NULL, "case '%s' rc %d", cases[i].what, rc);
        CR_CHECK_MSG(cr_error_message()[0] != '\0', "case '%s' has no message", cases[i].what);
        enc_st_close(&st);
        free(buf);
    }

    /* raw framing problems */
    enc_st *st = NULL;
    uint8_t tiny[5] = {1, 0, 0, 0, 0};
    CR_CHECK(enc_st_open_memory(&st, tiny, sizeof tiny) == CR_ERR_MODEL);
    CR_CHECK(strstr(cr_error_message(), "too short") != NULL);
    uint8_t hl[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CR_CHECK(enc_st_open_memory(&st, hl, sizeof hl) == CR_ERR_MODEL);
    uint8_t past[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    CR_CHECK(enc_st_open_memory(&st, past, sizeof past) == CR_ERR_MODEL);
    CR_CHECK_MSG(strstr(cr_error_message(), "truncated") != NULL, "%s", cr_error_message());
    uint8_t empty_ok[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CR_CHECK(enc_st_open_memory(&st, empty_ok, sizeof empty_ok) == CR_OK);
    CR_CHECK(st && enc_st_count(st) == 0);
    enc_st_close(&st);
}

static void test_files(void)
{
    size_t size;
    uint8_t *buf = valid_file(&size);
    char path[] = "/tmp/cirrus_st_XXXXXX";
    int fd = mkstemp(path);
    CR_CHECK(fd >= 0);
    if (fd < 0) {
        free(buf);
        return;
    }
    CR_CHECK(write(fd, buf, size) == (ssize_t)size);
    enc_st *st = NULL;
    CR_CHECK(enc_st_open(&st, path) == CR_OK);
    float *f = NULL;
    int64_t a_shape[2] = {2, 3};
    CR_CHECK(st && enc_st_get_f32(st, "a", 2, a_shape, &f) == CR_OK && f[5] == -7.25f);
    /* reading again after the pages were released gives the same values */
    free(f);
    f = NULL;
    CR_CHECK(st && enc_st_get_f32(st, "a", 2, a_shape, &f) == CR_OK && f[1] == -2.f);
    free(f);
    enc_st_close(&st);

    /* truncated: cut the data area short */
    CR_CHECK(ftruncate(fd, (off_t)size - 10) == 0);
    CR_CHECK(enc_st_open(&st, path) == CR_ERR_MODEL && st == NULL);
    CR_CHECK_MSG(strstr(cr_error_message(), "truncated") != NULL &&
                     strstr(cr_error_message(), path) != NULL,
                 "%s", cr_error_message());
    /* truncated inside the header */
    CR_CHECK(ftruncate(fd, 40) == 0);
    CR_CHECK(enc_st_open(&st, path) == CR_ERR_MODEL);
    CR_CHECK_MSG(strstr(cr_error_message(), "truncated") != NULL, "%s", cr_error_message());
    CR_CHECK(ftruncate(fd, 0) == 0);
    CR_CHECK(enc_st_open(&st, path) == CR_ERR_MODEL);
    close(fd);
    unlink(path);
    CR_CHECK(enc_st_open(&st, path) == CR_ERR_IO);
    CR_CHECK(enc_st_open(&st, "/tmp") == CR_ERR_IO);
    free(buf);
}

/* xorshift64* */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_fuzz(void)
{
    size_t size;
    uint8_t *ref = valid_file(&size);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int opened = 0, iters = 20000;
    static const char tokens[] = "{}[]\",:0123456789-eE. FBIU";
    for (int it = 0; it < iters; it++) {
        size_t n = size;
        uint8_t *buf = malloc(size); /* exact size: ASan sees any overread */
        memcpy(buf, ref, size);
        int muts = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < muts; k++) {
            uint64_t r = rng_next(&seed);
            size_t pos = (size_t)(r >> 8) % n;
            switch (r % 6) {
            case 0: /* flip a bit anywhere */
                buf[pos] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 1: /* a JSON-ish character into the header */
                buf[8 + pos % (n > 8 ? n - 8 : 1)] =
                    (uint8_t)tokens[(r >> 40) % (sizeof tokens - 1)];
                break;
            case 2: /* truncate */
                n = pos;
                break;
            case 3: /* header length byte */
                buf[(r >> 40) % 8] = (uint8_t)(r >> 48);
                break;
            case 4: /* digit run */
                for (size_t j = 0; j < 3 && 8 + pos + j < n; j++)
                    buf[8 + pos + j] = (uint8_t)('0' + (r >> (40 + 4 * j)) % 10);
                break;
            default: /* random byte */
                buf[pos] = (uint8_t)(r >> 32);
                break;
            }
            if (n == 0)
                break;
        }
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        free(buf);
        enc_st *st = NULL;
        if (enc_st_open_memory(&st, exact, n) == CR_OK) {
            opened++;
            for (size_t i = 0; i < enc_st_count(st); i++) {
                const enc_st_tensor *t = enc_st_tensor_at(st, i);
                CR_CHECK((const uint8_t *)t->data + t->nbytes <= exact + n);
                float *f = NULL;
                if (enc_st_get_f32(st, t->name, t->ndim, t->shape, &f) == CR_OK)
                    free(f);
            }
            enc_st_close(&st);
        } else {
            CR_CHECK(st == NULL && cr_error_message()[0]);
        }
        free(exact);
    }
    printf("fuzz: %d iterations, %d mutated files still valid\n", iters, opened);
    free(ref);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_valid();
    test_conversions();
    test_corrupt_headers();
    test_files();
    test_fuzz();
    return CR_TEST_END();
}
