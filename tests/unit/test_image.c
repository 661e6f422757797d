/* test_image.c — image decoding and CLIP preprocessing.
 *
 * Fixture parity: preprocess the clip-tiny images (clip, S=32) and compare with the
 * reference `pixels` tensor of expected.safetensors (read by a tiny local reader).
 * Synthetic images (PNG variants written by hand with zlib, a hand-made GIF, BMP from
 * stb_image_write, WebP from libwebp's encoder) cover the decoder modes. */
#include "encoder/image.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <stb/stb_image_write.h>
#include <webp/encode.h>
#include <zlib.h>

#include "common/fileio.h"
#include "common/test.h"

static const float mean_[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float std_[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static float norm(int v, int ch) { return ((float)v / 255.0f - mean_[ch]) / std_[ch]; }

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *b = NULL;
    long len;
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        b = malloc((size_t)len + 1);
        if (b && fread(b, 1, (size_t)len, fp) != (size_t)len) {
            free(b);
            b = NULL;
        }
        *n = (size_t)len;
    }
    fclose(fp);
    return b;
}

/* Tiny safetensors reader: the F32 tensor `name` (copied out), its element count. */
static float *st_read_f32(const uint8_t *b, size_t n, const char *name, size_t *count)
{
    uint64_t hl = 0;
    json_t *root, *t, *offs;
    float *out = NULL;
    size_t o0, o1;
    if (n < 8)
        return NULL;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b[i];
    if (hl > n - 8)
        return NULL;
    root = json_loadb((const char *)b + 8, (size_t)hl, 0, NULL);
    if (!root)
        return NULL;
    t = json_object_get(root, name);
    offs = t ? json_object_get(t, "data_offsets") : NULL;
    if (offs && strcmp(json_string_value(json_object_get(t, "dtype")), "F32") == 0) {
        o0 = (size_t)json_integer_value(json_array_get(offs, 0));
        o1 = (size_t)json_integer_value(json_array_get(offs, 1));
        if (o1 >= o0 && 8 + hl + o1 <= n) {
            out = malloc(o1 - o0 + 1);
            if (out) {
                memcpy(out, b + 8 + hl + o0, o1 - o0);
                *count = (o1 - o0) / 4;
            }
        }
    }
    json_decref(root);
    return out;
}

/* ---- a minimal PNG writer for any bit depth / color type (zlib) ---- */
typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put32be(bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void png_chunk(bytes *b, const char *type, const uint8_t *d, size_t n)
{
    uLong crc = crc32(0, (const Bytef *)type, 4);
    put32be(b, (uint32_t)n);
    put(b, type, 4);
    if (n) {
        put(b, d, n);
        crc = crc32(crc, d, (uInt)n);
    }
    put32be(b, (uint32_t)crc);
}

/* raw: rows of packed samples (no filter bytes). */
static bytes make_png(int w, int h, int depth, int ctype, const uint8_t *raw, size_t rowbytes,
                      const uint8_t *plte, size_t plte_n)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bytes b = {0}, filt = {0};
    uint8_t ihdr[13];
    uLongf zn;
    uint8_t *z;
    put(&b, sig, 8);
    ihdr[0] = (uint8_t)(w >> 24), ihdr[1] = (uint8_t)(w >> 16), ihdr[2] = (uint8_t)(w >> 8),
    ihdr[3] = (uint8_t)w;
    ihdr[4] = (uint8_t)(h >> 24), ihdr[5] = (uint8_t)(h >> 16), ihdr[6] = (uint8_t)(h >> 8),
    ihdr[7] = (uint8_t)h;
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)ctype, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    png_chunk(&b, "IHDR", ihdr, 13);
    if (plte)
        png_chunk(&b, "PLTE", plte, plte_n);
    for (int y = 0; y < h; y++) {
        uint8_t zero = 0;
        put(&filt, &zero, 1);
        put(&filt, raw + (size_t)y * rowbytes, rowbytes);
    }
    zn = compressBound((uLong)filt.n);
    z = malloc(zn);
    if (!z || compress(z, &zn, filt.p, (uLong)filt.n) != Z_OK)
        abort();
    png_chunk(&b, "IDAT", z, zn);
    png_chunk(&b, "IEND", NULL, 0);
    free(z);
    free(filt.p);
    return b;
}

/* ---- a minimal GIF: 4 colors, LZW with a clear code before every 2 literals ---- */
static bytes make_gif(int w, int h, const uint8_t pal[12], const uint8_t *idx)
{
    bytes b = {0}, sub = {0};
    uint8_t hdr[13] = {'G', 'I', 'F', '8', '9', 'a', (uint8_t)w, (uint8_t)(w >> 8), (uint8_t)h,
                       (uint8_t)(h >> 8), 0x81, 0, 0};
    uint8_t desc[10] = {0x2c, 0, 0, 0, 0, (uint8_t)w, (uint8_t)(w >> 8), (uint8_t)h,
                        (uint8_t)(h >> 8), 0};
    uint32_t acc = 0;
    int nbits = 0, npx = w * h;
    put(&b, hdr, 13);
    put(&b, pal, 12);
    put(&b, desc, 10);
    {
        uint8_t mcs = 2;
        put(&b, &mcs, 1);
    }
    for (int i = 0; i <= npx; i++) {
        int codes[2], nc = 0;
        if (i == npx) {
            codes[nc++] = 5; /* end */
        } else {
            if (i % 2 == 0)
                codes[nc++] = 4; /* clear */
            codes[nc++] = idx[i];
        }
        for (int c = 0; c < nc; c++) {
            acc |= (uint32_t)codes[c] << nbits;
            nbits += 3;
            while (nbits >= 8) {
                uint8_t byte = (uint8_t)acc;
                put(&sub, &byte, 1);
                acc >>= 8;
                nbits -= 8;
            }
        }
    }
    if (nbits) {
        uint8_t byte = (uint8_t)acc;
        put(&sub, &byte, 1);
    }
    for (size_t o = 0; o < sub.n; o += 255) {
        uint8_t len = (uint8_t)(sub.n - o > 255 ? 255 : sub.n - o);
        put(&b, &len, 1);
        put(&b, sub.p + o, len);
    }
    {
        uint8_t tail[2] = {0, 0x3b};
        put(&b, tail, 2);
    }
    free(sub.p);
    return b;
}

static void to_bytes(void *ctx, void *data, int size) { put(ctx, data, (size_t)size); }

static void test_fixtures(const char *shared)
{
    char path[1024];
    uint8_t *exp_bytes, *cases_bytes;
    size_t exp_n = 0, cases_n = 0, count = 0;
    float *pixels;
    json_t *cases, *images;
    const int S = 32;
    float out[3 * 32 * 32];

    snprintf(path, sizeof path, "%s/fixtures/clip-tiny/expected.safetensors", shared);
    exp_bytes = read_all(path, &exp_n);
    snprintf(path, sizeof path, "%s/fixtures/clip-tiny/cases.json", shared);
    cases_bytes = read_all(path, &cases_n);
    CR_CHECK(exp_bytes && cases_bytes);
    if (!exp_bytes || !cases_bytes)
        return;
    pixels = st_read_f32(exp_bytes, exp_n, "pixels", &count);
    cases = json_loadb((const char *)cases_bytes, cases_n, 0, NULL);
    images = json_object_get(cases, "images");
    CR_CHECK(pixels && count == 6 * 3 * 32 * 32);
    CR_CHECK(json_array_size(images) == 6);
    for (size_t i = 0; pixels && i < json_array_size(images) && i < 6; i++) {
        const char *name = json_string_value(json_array_get(images, i));
        enc_image *img = NULL;
        double maxe = 0, sume = 0;
        int is_jpeg = strstr(name, ".jpg") != NULL;
        cr_err rc;
        snprintf(path, sizeof path, "%s/fixtures/clip-tiny/images/%s", shared, name);
        rc = enc_image_load_file(path, 0, &img);
        CR_CHECK_MSG(rc == CR_OK, "%s: %s", name, cr_error_message());
        if (rc)
            continue;
        rc = enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, out);
        CR_CHECK(rc == CR_OK);
        {
            enc_image *small = NULL;
            size_t px = (size_t)enc_image_width(img) * (size_t)enc_image_height(img);
            rc = enc_image_load_file(path, px - 1, &small);
            CR_CHECK_MSG(rc == CR_ERR_INVALID && strstr(cr_error_message(), "limit") && !small,
                         "%s: %s", name, cr_error_message());
            CR_CHECK(enc_image_load_file(path, px, &small) == CR_OK);
            enc_image_free(&small);
        }
        for (size_t j = 0; j < (size_t)3 * S * S; j++) {
            double e = fabs((double)out[j] - (double)pixels[i * 3 * S * S + j]);
            maxe = e > maxe ? e : maxe;
            sume += e;
        }
        printf("parity %-22s mode %-4s %3dx%-3d max abs err %.3g  mean abs err %.3g\n", name,
               enc_image_mode_name(enc_image_get_mode(img)), enc_image_width(img),
               enc_image_height(img), maxe, sume / (3.0 * S * S));
        if (is_jpeg) {
            CR_CHECK_MSG(sume / (3.0 * S * S) < 0.03, "%s mean err %g", name,
                         sume / (3.0 * S * S));
        } else {
            CR_CHECK_MSG(maxe < 1e-6, "%s max err %g", name, maxe);
        }

        /* truncation at every length, and a few corruptions: error or decode, no crash */
        {
            size_t n = 0;
            uint8_t *b = read_all(path, &n);
            int decoded = 0, failed = 0;
            for (size_t len = 0; b && len < n; len++) {
                enc_image *t = NULL;
                rc = enc_image_decode(b, len, 0, &t);
                if (rc == CR_OK) {
                    decoded++;
                    CR_CHECK(enc_image_preprocess(t, ENC_PREPROCESS_CLIP, 16, out) == CR_OK);
                } else {
                    failed++;
                    CR_CHECK(rc < 0 && cr_error_message()[0] != '\0' && t == NULL);
                }
                enc_image_free(&t);
            }
            srand(1234);
            for (int k = 0; b && k < 300; k++) {
                uint8_t *c = malloc(n);
                enc_image *t = NULL;
                memcpy(c, b, n);
                for (int f = 0; f < 1 + k % 4; f++)
                    c[8 + (size_t)rand() % (n - 8)] ^= (uint8_t)(1 + rand() % 255);
                rc = enc_image_decode(c, n, 0, &t);
                if (rc == CR_OK)
                    CR_CHECK(enc_image_preprocess(t, ENC_PREPROCESS_SQUAREPAD, 8, out) == CR_OK);
                enc_image_free(&t);
                free(c);
            }
            printf("  truncations of %s: %d decoded, %d rejected\n", name, decoded, failed);
            free(b);
        }
        enc_image_free(&img);
    }
    json_decref(cases);
    free(pixels);
    free(exp_bytes);
    free(cases_bytes);
}

static void test_formats_and_limits(void)
{
    enc_image *img = NULL;
    const uint8_t junk[] = "hello, this is not an image";
    const uint8_t tiff[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    uint8_t rgb[40 * 30 * 3];
    bytes png = {0};
    cr_err rc;

    rc = enc_image_decode(junk, sizeof junk, 0, &img);
    CR_CHECK(rc == CR_ERR_INVALID && img == NULL);
    CR_CHECK(strstr(cr_error_message(), "unsupported image format") != NULL);
    rc = enc_image_decode(tiff, sizeof tiff, 0, &img);
    CR_CHECK(rc == CR_ERR_INVALID && strstr(cr_error_message(), "unsupported") != NULL);
    CR_CHECK(enc_image_decode(junk, 0, 0, &img) == CR_ERR_INVALID);
    CR_CHECK(enc_image_load_file("/nonexistent/x.png", 0, &img) == CR_ERR_IO);

    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    stbi_write_png_to_func(to_bytes, &png, 40, 30, 3, rgb, 40 * 3);
    rc = enc_image_decode(png.p, png.n, 1199, &img);
    CR_CHECK(rc == CR_ERR_INVALID && strstr(cr_error_message(), "limit") != NULL);
    rc = enc_image_decode(png.p, png.n, 1200, &img);
    CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_RGB);
    CR_CHECK(img && memcmp(enc_image_pixels(img), rgb, sizeof rgb) == 0);
    enc_image_free(&img);
    CR_CHECK(img == NULL);
    enc_image_free(&img); /* NULL-safe */

    /* a header claiming 100000 x 100000 with no data: refused by the limit, not decoded */
    {
        uint8_t one = 0;
        bytes big = make_png(1, 1, 8, 0, &one, 1, NULL, 0);
        big.p[16] = 0, big.p[17] = 0x01, big.p[18] = 0x86, big.p[19] = 0xa0;
        big.p[20] = 0, big.p[21] = 0x01, big.p[22] = 0x86, big.p[23] = 0xa0;
        rc = enc_image_decode(big.p, big.n, 0, &img);
        CR_CHECK_MSG(rc == CR_ERR_INVALID && strstr(cr_error_message(), "limit") != NULL, "%s",
                     cr_error_message());
        free(big.p);
    }

    /* write_png round trip */
    {
        char path[] = "/tmp/cirrus_test_imageXXXXXX";
        int fd = mkstemp(path);
        CR_CHECK(fd >= 0);
        if (fd >= 0) {
            fclose(fdopen(fd, "w"));
            CR_CHECK(enc_image_write_png(path, 40, 30, rgb) == CR_OK);
            CR_CHECK(enc_image_load_file(path, 0, &img) == CR_OK);
            CR_CHECK(img && enc_image_width(img) == 40 && enc_image_height(img) == 30);
            CR_CHECK(img && memcmp(enc_image_pixels(img), rgb, sizeof rgb) == 0);
            enc_image_free(&img);
            remove(path);
        }
        CR_CHECK(enc_image_write_png("/nonexistent/dir/x.png", 2, 2, rgb) == CR_ERR_IO);
    }
    free(png.p);

    {
        enc_preprocess m;
        CR_CHECK(enc_preprocess_parse("targetpad", &m) == CR_OK && m == ENC_PREPROCESS_TARGETPAD);
        CR_CHECK(enc_preprocess_parse("clip", &m) == CR_OK && m == ENC_PREPROCESS_CLIP);
        CR_CHECK(enc_preprocess_parse("squarepad", &m) == CR_OK && m == ENC_PREPROCESS_SQUAREPAD);
        CR_CHECK(enc_preprocess_parse("bogus", &m) == CR_ERR_INVALID);
        CR_CHECK(strcmp(enc_preprocess_name(ENC_PREPROCESS_SQUAREPAD), "squarepad") == 0);
    }
}

static void test_png_modes(void)
{
    enc_image *img = NULL;
    cr_err rc;
    /* 16-bit RGB: high byte kept (Pillow's RGB;16B) */
    {
        uint8_t raw[2 * 2 * 6];
        for (int i = 0; i < 12; i++)
            raw[2 * i] = (uint8_t)(i * 20), raw[2 * i + 1] = 0xee;
        bytes b = make_png(2, 2, 16, 2, raw, 12, NULL, 0);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_RGB);
        for (int i = 0; img && i < 12; i++)
            CR_CHECK(enc_image_pixels(img)[i] == i * 20);
        enc_image_free(&img);
        free(b.p);
    }
    /* 16-bit gray: Pillow I;16 -> RGB clips at 255 */
    {
        uint8_t raw[4 * 2] = {0, 100, 0x12, 0x34, 0, 255, 0x01, 0x00};
        bytes b = make_png(4, 1, 16, 0, raw, 8, NULL, 0);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_L);
        if (img) {
            const uint8_t *p = enc_image_pixels(img);
            CR_CHECK(p[0] == 100 && p[1] == 255 && p[2] == 255 && p[3] == 255);
        }
        enc_image_free(&img);
        free(b.p);
    }
    /* palette */
    {
        uint8_t plte[9] = {255, 0, 0, 0, 255, 0, 0, 0, 255};
        uint8_t raw[3] = {0, 1, 2};
        bytes b = make_png(3, 1, 8, 3, raw, 3, plte, 9);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_P &&
                 enc_image_channels(img) == 3);
        CR_CHECK(img && memcmp(enc_image_pixels(img), plte, 9) == 0);
        enc_image_free(&img);
        free(b.p);
    }
    /* 1-bit gray -> mode "1", 0/255 */
    {
        uint8_t raw[1] = {0xa0}; /* 1 0 1 0 */
        bytes b = make_png(4, 1, 1, 0, raw, 1, NULL, 0);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_1);
        if (img) {
            const uint8_t *p = enc_image_pixels(img);
            CR_CHECK(p[0] == 255 && p[1] == 0 && p[2] == 255 && p[3] == 0);
        }
        enc_image_free(&img);
        free(b.p);
    }
    /* gray + alpha, 8-bit and 16-bit */
    {
        uint8_t raw8[4] = {10, 20, 30, 40};
        uint8_t raw16[8] = {10, 1, 20, 2, 30, 3, 40, 4};
        bytes b = make_png(2, 1, 8, 4, raw8, 4, NULL, 0);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_LA);
        CR_CHECK(img && memcmp(enc_image_pixels(img), raw8, 4) == 0);
        enc_image_free(&img);
        free(b.p);
        b = make_png(2, 1, 16, 4, raw16, 8, NULL, 0);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK(rc == CR_OK && enc_image_get_mode(img) == ENC_IMAGE_LA);
        CR_CHECK(img && memcmp(enc_image_pixels(img), raw8, 4) == 0);
        enc_image_free(&img);
        free(b.p);
    }
}

static void test_gif_bmp_webp(void)
{
    enc_image *img = NULL;
    cr_err rc;
    float out[3 * 8 * 8];
    /* GIF 4x2, palette black/red/green/blue */
    {
        const uint8_t pal[12] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255};
        const uint8_t idx[8] = {0, 1, 2, 3, 3, 2, 1, 0};
        bytes b = make_gif(4, 2, pal, idx);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK_MSG(rc == CR_OK, "gif: %s", cr_error_message());
        CR_CHECK(img && enc_image_get_mode(img) == ENC_IMAGE_P && enc_image_width(img) == 4 &&
                 enc_image_height(img) == 2);
        for (int i = 0; img && i < 8; i++)
            CR_CHECK(memcmp(enc_image_pixels(img) + 3 * i, pal + 3 * idx[i], 3) == 0);
        /* P mode resizes NEAREST: every output value is one of the palette colours */
        if (img) {
            CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 8, out) == CR_OK);
            for (int i = 0; i < 64; i++) {
                int r = out[i] > 0 ? 255 : 0, g = out[64 + i] > 0 ? 255 : 0;
                CR_CHECK_NEAR(out[i], norm(r, 0), 1e-6);
                CR_CHECK_NEAR(out[64 + i], norm(g, 1), 1e-6);
            }
        }
        enc_image_free(&img);
        for (size_t len = 0; len < b.n; len++) {
            if (enc_image_decode(b.p, len, 0, &img) == CR_OK)
                enc_image_free(&img);
        }
        free(b.p);
    }
    /* BMP 24-bit via stb_image_write */
    {
        uint8_t rgb[5 * 3 * 3];
        bytes b = {0};
        for (size_t i = 0; i < sizeof rgb; i++)
            rgb[i] = (uint8_t)(i * 5 + 3);
        stbi_write_bmp_to_func(to_bytes, &b, 5, 3, 3, rgb);
        rc = enc_image_decode(b.p, b.n, 0, &img);
        CR_CHECK_MSG(rc == CR_OK, "bmp: %s", cr_error_message());
        CR_CHECK(img && enc_image_get_mode(img) == ENC_IMAGE_RGB &&
                 memcmp(enc_image_pixels(img), rgb, sizeof rgb) == 0);
        enc_image_free(&img);
        for (size_t len = 0; len < b.n; len++) {
            if (enc_image_decode(b.p, len, 0, &img) == CR_OK)
                enc_image_free(&img);
        }
        free(b.p);
    }
    /* WebP lossless, RGB and RGBA, via libwebp's encoder */
    {
        uint8_t rgba[6 * 4 * 4];
        uint8_t rgb[6 * 4 * 3];
        uint8_t *enc = NULL;
        size_t n;
        for (int i = 0; i < 24; i++) {
            rgba[4 * i] = rgb[3 * i] = (uint8_t)(i * 10);
            rgba[4 * i + 1] = rgb[3 * i + 1] = (uint8_t)(255 - i * 10);
            rgba[4 * i + 2] = rgb[3 * i + 2] = (uint8_t)(i * 3);
            rgba[4 * i + 3] = (uint8_t)(i * 11 + 1);
        }
        n = WebPEncodeLosslessRGB(rgb, 6, 4, 6 * 3, &enc);
        CR_CHECK(n > 0);
        rc = enc_image_decode(enc, n, 0, &img);
        CR_CHECK_MSG(rc == CR_OK, "webp: %s", cr_error_message());
        CR_CHECK(img && enc_image_get_mode(img) == ENC_IMAGE_RGB &&
                 memcmp(enc_image_pixels(img), rgb, sizeof rgb) == 0);
        enc_image_free(&img);
        CR_CHECK(enc_image_decode(enc, n, 23, &img) == CR_ERR_INVALID);
        for (size_t len = 0; len < n; len++) {
            if (enc_image_decode(enc, len, 0, &img) == CR_OK)
                enc_image_free(&img);
        }
        WebPFree(enc);
        n = WebPEncodeLosslessRGBA(rgba, 6, 4, 6 * 4, &enc);
        CR_CHECK(n > 0);
        rc = enc_image_decode(enc, n, 0, &img);
        CR_CHECK(rc == CR_OK && img && enc_image_get_mode(img) == ENC_IMAGE_RGBA &&
                 memcmp(enc_image_pixels(img), rgba, sizeof rgba) == 0);
        enc_image_free(&img);
        WebPFree(enc);
    }
}

static void test_pad_modes(void)
{
    enum { S = 32 };
    static float a[3 * S * S], b[3 * S * S];
    static uint8_t px[64 * 16 * 3];
    enc_image *img = NULL;
    memset(px, 255, sizeof px); /* 64 x 16 white */
    CR_CHECK(enc_image_from_pixels(64, 16, ENC_IMAGE_RGB, px, &img) == CR_OK);

    /* clip: all white */
    CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, a) == CR_OK);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < S * S; i += 37)
            CR_CHECK_NEAR(a[ch * S * S + i], norm(255, ch), 1e-6);

    /* squarepad: 64x64 with the white band in rows 24..39 -> output rows 12..19 */
    CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_SQUAREPAD, S, a) == CR_OK);
    for (int ch = 0; ch < 3; ch++) {
        CR_CHECK_NEAR(a[ch * S * S + 0 * S + 5], norm(0, ch), 1e-6);
        CR_CHECK_NEAR(a[ch * S * S + 9 * S + 20], norm(0, ch), 1e-6);
        CR_CHECK_NEAR(a[ch * S * S + 16 * S + 16], norm(255, ch), 1e-6);
        CR_CHECK_NEAR(a[ch * S * S + 31 * S + 31], norm(0, ch), 1e-6);
    }
    /* squarepad is symmetric top/bottom */
    for (int y = 0; y < S; y++)
        CR_CHECK_NEAR(a[y * S + 3], a[(S - 1 - y) * S + 3], 1e-6);

    /* targetpad: ratio 4 >= 1.25 -> vp = int((51.2 - 16) / 2) = 17 -> 64x50 -> resized 40x32,
     * crop left 4: rows 0..9 black, 16 white */
    CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_TARGETPAD, S, b) == CR_OK);
    for (int ch = 0; ch < 3; ch++) {
        CR_CHECK_NEAR(b[ch * S * S + 0 * S + 10], norm(0, ch), 1e-6);
        CR_CHECK_NEAR(b[ch * S * S + 8 * S + 10], norm(0, ch), 1e-6);
        CR_CHECK_NEAR(b[ch * S * S + 16 * S + 10], norm(255, ch), 1e-6);
        CR_CHECK_NEAR(b[ch * S * S + 31 * S + 10], norm(0, ch), 1e-6);
    }
    /* targetpad leaves less padding than squarepad: white reaches further out */
    CR_CHECK(b[11 * S + 10] > a[11 * S + 10]);
    enc_image_free(&img);

    /* ratio below 1.25: targetpad == clip exactly */
    {
        static uint8_t q[40 * 36 * 3];
        for (size_t i = 0; i < sizeof q; i++)
            q[i] = (uint8_t)((i * 31) ^ (i >> 3));
        CR_CHECK(enc_image_from_pixels(40, 36, ENC_IMAGE_RGB, q, &img) == CR_OK);
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, a) == CR_OK);
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_TARGETPAD, S, b) == CR_OK);
        CR_CHECK(memcmp(a, b, sizeof a) == 0);
        enc_image_free(&img);
    }

    /* RGBA resize is premultiplied: a transparent blue half does not bleed into the opaque
     * green half, and its own colour goes to black */
    {
        static uint8_t q[64 * 64 * 4];
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                uint8_t *p = q + (y * 64 + x) * 4;
                if (x < 32)
                    p[0] = 0, p[1] = 0, p[2] = 255, p[3] = 0;
                else
                    p[0] = 0, p[1] = 255, p[2] = 0, p[3] = 255;
            }
        CR_CHECK(enc_image_from_pixels(64, 64, ENC_IMAGE_RGBA, q, &img) == CR_OK);
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, a) == CR_OK);
        CR_CHECK_NEAR(a[2 * S * S + 10 * S + 2], norm(0, 2), 1e-6);  /* blue gone */
        CR_CHECK_NEAR(a[2 * S * S + 10 * S + 16], norm(0, 2), 1e-6); /* no blue at the edge */
        CR_CHECK_NEAR(a[1 * S * S + 10 * S + 16], norm(255, 1), 1e-6);
        CR_CHECK_NEAR(a[1 * S * S + 10 * S + 30], norm(255, 1), 1e-6);
        enc_image_free(&img);
    }

    /* extreme aspect ratio stays cheap (only the crop is computed) */
    {
        static uint8_t q[1 * 20000];
        memset(q, 128, sizeof q);
        CR_CHECK(enc_image_from_pixels(1, 20000, ENC_IMAGE_L, q, &img) == CR_OK);
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 224, NULL) == CR_ERR_INVALID);
        {
            float *o = malloc(sizeof(float) * 3 * 224 * 224);
            CR_CHECK(o && enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 224, o) == CR_OK);
            CR_CHECK(o && fabsf(o[0] - norm(128, 0)) < 1e-6f);
            free(o);
        }
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 0, a) == CR_ERR_INVALID);
        enc_image_free(&img);
    }
}

/* ---- padding is never materialized: parity with an explicitly padded image, and crafted
 * images whose padded canvas would be gigabytes ---- */

/* CLIP4Cir's padding amounts, written out here independently of the implementation. */
static void ref_pad(int w, int h, enc_preprocess pp, int *hp, int *vp)
{
    int mx = w > h ? w : h, mn = w < h ? w : h;
    *hp = *vp = 0;
    if (pp == ENC_PREPROCESS_SQUAREPAD) {
        *hp = (mx - w) / 2;
        *vp = (mx - h) / 2;
    } else if (pp == ENC_PREPROCESS_TARGETPAD && (double)mx / mn >= 1.25) {
        double scaled = (double)mx / 1.25;
        *hp = (int)((scaled - w) / 2);
        *vp = (int)((scaled - h) / 2);
        *hp = *hp < 0 ? 0 : *hp;
        *vp = *vp < 0 ? 0 : *vp;
    }
}

/* Pads `img` with zeros (black, alpha 0) the way the reference pipeline does. */
static enc_image *ref_padded(const enc_image *img, enc_preprocess pp)
{
    int w = enc_image_width(img), h = enc_image_height(img), c = enc_image_channels(img);
    int hp, vp, pw, ph;
    uint8_t *px;
    enc_image *out = NULL;
    ref_pad(w, h, pp, &hp, &vp);
    pw = w + 2 * hp;
    ph = h + 2 * vp;
    px = calloc((size_t)pw * (size_t)ph, (size_t)c);
    if (!px)
        return NULL;
    for (int y = 0; y < h; y++)
        memcpy(px + ((size_t)(y + vp) * (size_t)pw + (size_t)hp) * (size_t)c,
               enc_image_pixels(img) + (size_t)y * (size_t)w * (size_t)c, (size_t)w * (size_t)c);
    if (enc_image_from_pixels(pw, ph, enc_image_get_mode(img), px, &out) != CR_OK)
        out = NULL;
    free(px);
    return out;
}

static void test_pad_parity(void)
{
    static const int sizes[][3] = {
        {64, 16, 32}, {16, 64, 32}, {5, 3, 16},   {3, 5, 16},    {40, 33, 32},  {33, 40, 8},
        {37, 29, 32}, {300, 4, 32}, {4, 300, 16}, {50, 40, 32},  {49, 40, 32},  {61, 7, 8},
        {1, 9, 8},    {9, 1, 8},    {32, 8, 32},  {300, 200, 224}, {100, 230, 224},
        {240, 230, 224}, {1000, 3, 224}};
    static const enc_image_mode modes[] = {ENC_IMAGE_RGB, ENC_IMAGE_RGBA, ENC_IMAGE_L,
                                           ENC_IMAGE_LA,  ENC_IMAGE_P,    ENC_IMAGE_1};
    static const enc_preprocess pps[] = {ENC_PREPROCESS_SQUAREPAD, ENC_PREPROCESS_TARGETPAD};
    int cases = 0, same = 0;
    srand(42);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int w = sizes[si][0], h = sizes[si][1], S = sizes[si][2];
        float *a = malloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
        float *b = malloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
        for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
            enc_image *img = NULL;
            int c = modes[mi] == ENC_IMAGE_RGBA ? 4 : modes[mi] == ENC_IMAGE_LA ? 2
                    : modes[mi] == ENC_IMAGE_L || modes[mi] == ENC_IMAGE_1 ? 1 : 3;
            uint8_t *px = malloc((size_t)w * (size_t)h * (size_t)c);
            for (size_t i = 0; i < (size_t)w * (size_t)h * (size_t)c; i++)
                px[i] = (uint8_t)(modes[mi] == ENC_IMAGE_1 ? (rand() & 1) * 255 : rand());
            if (c == 4 || c == 2) /* some fully transparent and opaque pixels too */
                for (size_t i = 0; i < (size_t)w * (size_t)h; i += 3)
                    px[i * (size_t)c + (size_t)c - 1] = i % 2 ? 0 : 255;
            CR_CHECK(enc_image_from_pixels(w, h, modes[mi], px, &img) == CR_OK);
            for (size_t pi = 0; img && a && b && pi < 2; pi++) {
                enc_image *ref = ref_padded(img, pps[pi]);
                cr_err ra, rb;
                CR_CHECK(ref != NULL);
                if (!ref)
                    continue;
                ra = enc_image_preprocess(img, pps[pi], S, a);
                rb = enc_image_preprocess(ref, ENC_PREPROCESS_CLIP, S, b);
                CR_CHECK_MSG(ra == CR_OK && rb == CR_OK, "%s", cr_error_message());
                cases++;
                if (ra == CR_OK && rb == CR_OK &&
                    memcmp(a, b, sizeof(float) * 3 * (size_t)S * (size_t)S) == 0)
                    same++;
                else
                    fprintf(stderr, "pad parity: %s %dx%d mode %s S=%d differs\n",
                            enc_preprocess_name(pps[pi]), w, h,
                            enc_image_mode_name(modes[mi]), S);
                enc_image_free(&ref);
            }
            enc_image_free(&img);
            free(px);
        }
        free(a);
        free(b);
    }
    printf("pad parity: %d of %d cases bit-identical to an explicitly padded image\n", same,
           cases);
    CR_CHECK(cases > 0 && same == cases);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Bounds the address space to what the process maps now plus `extra` bytes (restored by
 * as_restore); skipped under sanitizers, which reserve terabytes of shadow memory. */
static int as_limit(size_t extra, struct rlimit *saved)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    (void)extra;
    (void)saved;
    return 0;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    struct rlimit r;
    if (!f)
        return 0;
    if (fscanf(f, "%lu", &pages) != 1)
        pages = 0;
    fclose(f);
    if (!pages || getrlimit(RLIMIT_AS, saved) != 0)
        return 0;
    r = *saved;
    r.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + extra;
    if (saved->rlim_max != RLIM_INFINITY && r.rlim_cur > saved->rlim_max)
        return 0;
    return setrlimit(RLIMIT_AS, &r) == 0;
#endif
}

static void as_restore(int on, const struct rlimit *saved)
{
    if (on)
        setrlimit(RLIMIT_AS, saved);
}

/* A 24-bit BMP header claiming w x h, cut at `total` bytes: stb reads the missing pixel
 * data as zeros, so the image decodes as black. */
static bytes make_short_bmp(int w, int h, size_t total)
{
    bytes b = {0};
    uint8_t hdr[54] = {'B', 'M'};
    uint32_t v[] = {(uint32_t)total, 0, 54, 40, (uint32_t)w, (uint32_t)h};
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++)
            hdr[2 + 4 * i + k] = (uint8_t)(v[i] >> (8 * k));
    hdr[26] = 1;  /* planes */
    hdr[28] = 24; /* bits per pixel */
    put(&b, hdr, sizeof hdr);
    while (b.n < total) {
        uint8_t zero = 0;
        put(&b, &zero, 1);
    }
    return b;
}

static void bomb_case(const char *name, const bytes *img_bytes, enc_preprocess pp)
{
    enum { S = 224 };
    float *out = malloc(sizeof(float) * 3 * S * S);
    enc_image *img = NULL;
    struct rlimit saved;
    double cpu0 = cpu_seconds(), cpu;
    long rss0 = maxrss_kb(), drss;
    int on = as_limit((size_t)256 << 20, &saved);
    cr_err rc = enc_image_decode(img_bytes->p, img_bytes->n, 0, &img);
    if (rc == CR_OK && out)
        rc = enc_image_preprocess(img, pp, S, out);
    as_restore(on, &saved);
    cpu = cpu_seconds() - cpu0;
    drss = maxrss_kb() - rss0;
    printf("%s (%zu bytes) %s at %d: rc %d, %.3f s CPU, max RSS +%ld KB%s\n", name,
           img_bytes->n, enc_preprocess_name(pp), S, (int)rc, cpu, drss,
           on ? ", address space bounded to +256 MB" : "");
    CR_CHECK_MSG(rc == CR_OK, "%s %s: %s", name, enc_preprocess_name(pp), cr_error_message());
    CR_CHECK_MSG(cpu < 1.0, "%s %s: %.2f s CPU", name, enc_preprocess_name(pp), cpu);
    CR_CHECK_MSG(drss < 64 * 1024, "%s %s: max RSS grew by %ld KB", name,
                 enc_preprocess_name(pp), drss);
    /* a black image padded with black is black */
    for (int i = 0; rc == CR_OK && i < 3 * S * S; i += 97)
        CR_CHECK_NEAR(out[i], norm(0, i / (S * S)), 1e-6);
    enc_image_free(&img);
    free(out);
}

static void test_pad_bombs(void)
{
    bytes bmp = make_short_bmp(32272, 16, 150);
    uint8_t *raw = calloc(2, 60000 * 3);
    bytes png = make_png(60000, 2, 8, 2, raw, 60000 * 3, NULL, 0);
    printf("crafted: %zu-byte BMP of 32272 x 16, %zu-byte PNG of 60000 x 2\n", bmp.n, png.n);
    bomb_case("BMP 32272x16", &bmp, ENC_PREPROCESS_SQUAREPAD);
    bomb_case("BMP 32272x16", &bmp, ENC_PREPROCESS_TARGETPAD);
    bomb_case("PNG 60000x2", &png, ENC_PREPROCESS_SQUAREPAD);
    bomb_case("PNG 60000x2", &png, ENC_PREPROCESS_TARGETPAD);
    /* their cost is known from the header alone, and is small */
    {
        enc_image_info info;
        enc_image_cost cost;
        CR_CHECK(enc_image_probe(bmp.p, bmp.n, 0, &info) == CR_OK && info.width == 32272 &&
                 info.height == 16 && info.mode == ENC_IMAGE_RGB);
        CR_CHECK(enc_image_preprocess_cost(info.width, info.height, info.mode,
                                           ENC_PREPROCESS_SQUAREPAD, 224, &cost) == CR_OK);
        printf("cost of the BMP, squarepad at 224: %llu decoded px, %llu padded px (not "
               "allocated), work %llu, scratch %zu bytes\n",
               (unsigned long long)cost.decoded_px, (unsigned long long)cost.padded_px,
               (unsigned long long)cost.work, cost.scratch_bytes);
        CR_CHECK(cost.decoded_px == 32272u * 16u && cost.padded_px == 32272ull * 32272ull);
        CR_CHECK(cost.work < 20000000 && cost.scratch_bytes < (8u << 20));
        CR_CHECK(enc_image_probe(png.p, png.n, 0, &info) == CR_OK && info.width == 60000 &&
                 info.height == 2);
        CR_CHECK(enc_image_probe(png.p, png.n, 119999, &info) == CR_ERR_INVALID &&
                 strstr(cr_error_message(), "limit"));
        CR_CHECK(enc_image_probe(png.p, 20, 0, &info) == CR_ERR_INVALID);
        CR_CHECK(enc_image_probe((const uint8_t *)"GIF", 3, 0, &info) == CR_ERR_INVALID);
        /* an ordinary photo: work is a few times its pixels */
        CR_CHECK(enc_image_preprocess_cost(4000, 3000, ENC_IMAGE_RGB, ENC_PREPROCESS_CLIP, 224,
                                           &cost) == CR_OK);
        printf("cost of a 4000x3000 RGB photo, clip at 224: work %llu, scratch %zu bytes\n",
               (unsigned long long)cost.work, cost.scratch_bytes);
        CR_CHECK(cost.work > 12000000 && cost.work < 100000000);
    }
    {
        unsigned m = 0;
        CR_CHECK(enc_preprocess_parse_list("clip,squarepad", &m) == CR_OK &&
                 m == ((1u << ENC_PREPROCESS_CLIP) | (1u << ENC_PREPROCESS_SQUAREPAD)));
        CR_CHECK(enc_preprocess_parse_list("", &m) == CR_OK && m == 0);
        CR_CHECK(enc_preprocess_parse_list("clip,bogus", &m) == CR_ERR_INVALID);
        CR_CHECK(enc_preprocess_parse_list("clip,", &m) == CR_ERR_INVALID);
        CR_CHECK(enc_preprocess_parse_list(",clip", &m) == CR_ERR_INVALID);
    }
    free(raw);
    free(bmp.p);
    free(png.p);
}

/* clip on 1 x 10,000,000: Resize(224) would be 224 x 2,240,000,000, past int. */
static void test_clip_extreme(void)
{
    const int n = 10000000;
    uint8_t *raw = calloc((size_t)n, 1);
    bytes png = {0};
    enc_image *img = NULL;
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    cr_err rc;
    if (!raw || !out) {
        CR_CHECK(!"out of memory");
        free(raw);
        free(out);
        return;
    }
    png = make_png(1, n, 8, 0, raw, 1, NULL, 0);
    rc = enc_image_decode(png.p, png.n, 0, &img);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (img) {
        rc = enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 224, out);
        printf("clip of 1 x %d (%zu-byte PNG): rc %d: %s\n", n, png.n, (int)rc,
               rc ? cr_error_message() : "ok");
        CR_CHECK_MSG(rc == CR_ERR_INVALID && strstr(cr_error_message(), "1x10000000"), "%d %s",
                     (int)rc, cr_error_message());
        {
            enc_image_cost cost;
            CR_CHECK(enc_image_preprocess_cost(1, n, ENC_IMAGE_L, ENC_PREPROCESS_CLIP, 224,
                                               &cost) == CR_ERR_INVALID);
            CR_CHECK(enc_image_preprocess_cost(n, 1, ENC_IMAGE_RGB, ENC_PREPROCESS_CLIP, 224,
                                               &cost) == CR_ERR_INVALID);
            CR_CHECK(enc_image_preprocess_cost(1, n, ENC_IMAGE_L, ENC_PREPROCESS_CLIP, 200,
                                               &cost) == CR_OK);
        }
        /* the same image at a size whose resize fits is computed */
        CR_CHECK_MSG(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 200, out) == CR_OK, "%s",
                     cr_error_message());
        enc_image_free(&img);
    }
    free(png.p);
    free(raw);
    free(out);
}

/* Two threads decoding and preprocessing the same bytes concurrently agree with a
 * single-threaded run (no global state; stb's failure reason is thread-local). */
typedef struct thr_arg {
    const uint8_t *b;
    size_t n;
    float out[3 * 24 * 24];
    int ok;
} thr_arg;

static void *thr_run(void *p)
{
    thr_arg *a = p;
    a->ok = 1;
    for (int k = 0; k < 50; k++) {
        enc_image *img = NULL;
        if (enc_image_decode(a->b, a->n, 0, &img) != CR_OK ||
            enc_image_preprocess(img, ENC_PREPROCESS_TARGETPAD, 24, a->out) != CR_OK)
            a->ok = 0;
        enc_image_free(&img);
        if (enc_image_decode(a->b, a->n / 2, 0, &img) == CR_OK)
            enc_image_free(&img);
    }
    return NULL;
}

static void test_threads(const char *shared)
{
    char path[1024];
    size_t n = 0;
    uint8_t *b;
    static thr_arg a[3];
    pthread_t t[2];
    snprintf(path, sizeof path, "%s/fixtures/clip-tiny/images/img3_80x64_rgba.png", shared);
    b = read_all(path, &n);
    CR_CHECK(b != NULL);
    if (!b)
        return;
    for (int i = 0; i < 3; i++)
        a[i].b = b, a[i].n = n;
    thr_run(&a[2]);
    for (int i = 0; i < 2; i++)
        CR_CHECK(pthread_create(&t[i], NULL, thr_run, &a[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        CR_CHECK(a[i].ok);
    CR_CHECK(memcmp(a[0].out, a[2].out, sizeof a[0].out) == 0);
    CR_CHECK(memcmp(a[1].out, a[2].out, sizeof a[1].out) == 0);
    free(b);
}

/* fuzz_image's finds: ~100-byte PNGs whose chunk declares ~1-2 GiB made stb_image realloc
 * 2 GiB before reading it. They must be refused before stb sees them, by probe and decode. */
static void png_refused(const char *name)
{
    const char *src = getenv("CIRRUS_SOURCE_DIR");
    char path[1024];
    uint8_t *b = NULL;
    size_t n = 0;
    enc_image *img = NULL;
    enc_image_info info;
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/image/%s", src ? src : ".", name);
    CR_CHECK_MSG(cr_file_read(path, &b, &n) == CR_OK, "read %s", path);
    if (!b)
        return;
    CR_CHECK(enc_image_probe(b, n, 0, &info) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "past the end") != NULL);
    CR_CHECK(enc_image_decode(b, n, 0, &img) == CR_ERR_INVALID && img == NULL);
    free(b);
}

/* The second: a chunk whose 8-byte header is there but whose data and CRC are not. */
static void test_png_chunk_overrun(void)
{
    png_refused("crash-png-chunk-overrun");
    png_refused("crash-png-partial-chunk-header");
}

int main(void)
{
    const char *shared;
    CR_TEST_BEGIN();
    test_formats_and_limits();
    test_png_chunk_overrun();
    test_png_modes();
    test_gif_bmp_webp();
    test_pad_modes();
    test_pad_parity();
    test_pad_bombs();
    test_clip_extreme();
    shared = cr_test_shared_dir();
    test_fixtures(shared);
    test_threads(shared);
    return CR_TEST_END();
}
