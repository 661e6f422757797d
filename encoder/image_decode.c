/* image_decode.c — bytes -> enc_image (stb_image, libwebp), file I/O, PNG writing.
 *
 * Debian's libstb.so carries the stb_image and stb_image_write implementations, so this
 * file only includes the headers (no STB_IMAGE_IMPLEMENTATION). stb's failure reason is
 * thread-local in the packaged version (>= 2.24), and we never touch stb's global flip /
 * unpremultiply switches, so decoding is thread-safe. */
#include "encoder/image.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <webp/decode.h>

struct enc_image {
    int width;
    int height;
    enc_image_mode mode;
    uint8_t *px; /* width * height * channels bytes */
};

typedef enum fmt { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_GIF, FMT_BMP, FMT_WEBP } fmt;

static const char *fmt_name(fmt f)
{
    switch (f) {
    case FMT_PNG: return "PNG";
    case FMT_JPEG: return "JPEG";
    case FMT_GIF: return "GIF";
    case FMT_BMP: return "BMP";
    case FMT_WEBP: return "WebP";
    default: return "unknown";
    }
}

static fmt detect_format(const uint8_t *b, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0)
        return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return FMT_JPEG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return FMT_GIF;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return FMT_BMP;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return FMT_WEBP;
    return FMT_UNKNOWN;
}

int enc_image_mode_channels(enc_image_mode m)
{
    switch (m) {
    case ENC_IMAGE_L:
    case ENC_IMAGE_1: return 1;
    case ENC_IMAGE_LA: return 2;
    case ENC_IMAGE_RGB:
    case ENC_IMAGE_P: return 3;
    case ENC_IMAGE_RGBA: return 4;
    }
    return 0;
}

static uint32_t rd_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint32_t rd_le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static cr_err check_limit(fmt f, size_t w, size_t h, size_t max_pixels)
{
    if (w == 0 || h == 0)
        return cr_error_set(CR_ERR_INVALID, "corrupt %s image: size %zux%zu", fmt_name(f), w,
                            h);
    if (w > SIZE_MAX / h || w * h > max_pixels)
        return cr_error_set(CR_ERR_INVALID,
                            "%s image is %zux%zu = %zu pixels, over the limit of %zu pixels",
                            fmt_name(f), w, h, w > SIZE_MAX / h ? SIZE_MAX : w * h,
                            max_pixels);
    if (w > INT_MAX / 4 || h > INT_MAX / 4)
        return cr_error_set(CR_ERR_INVALID, "%s image side too large: %zux%zu", fmt_name(f),
                            w, h);
    return CR_OK;
}

static cr_err image_alloc(int w, int h, enc_image_mode mode, enc_image **out)
{
    enc_image *img = calloc(1, sizeof(*img));
    size_t bytes = (size_t)w * (size_t)h * (size_t)enc_image_mode_channels(mode);
    if (!img)
        return cr_error_set(CR_ERR_NOMEM, "image: out of memory");
    img->px = malloc(bytes ? bytes : 1);
    if (!img->px) {
        free(img);
        return cr_error_set(CR_ERR_NOMEM, "image: out of memory for %dx%d pixels", w, h);
    }
    img->width = w;
    img->height = h;
    img->mode = mode;
    *out = img;
    return CR_OK;
}

/* Every chunk up to IEND lies inside the bytes. stb_image grows its IDAT buffer by a chunk's
 * declared length before reading it: a 101-byte file declaring a 1 GiB chunk made it realloc
 * 2 GiB (tests/fuzz/corpus/image/crash-png-chunk-overrun, found by fuzz_image). */
static cr_err png_chunks_fit(const uint8_t *b, size_t n)
{
    size_t at = 8;
    while (at + 8 <= n) { /* a readable chunk header: stb acts on it, so it must fit */
        uint32_t len = rd_be32(b + at);
        if (n - at < 12 || len > n - at - 12)
            return cr_error_set(CR_ERR_INVALID, "corrupt or truncated PNG: chunk %.4s at byte "
                                "%zu declares %u bytes, past the end", (const char *)b + at + 4,
                                at, len);
        if (memcmp(b + at + 4, "IEND", 4) == 0)
            return CR_OK;
        at += 12 + (size_t)len;
    }
    return CR_OK; /* no IEND, or a few trailing bytes: stb and Pillow decide */
}

/* The Pillow mode of a PNG and the stb channel request that yields it, from IHDR. */
static cr_err png_mode(const uint8_t *b, size_t n, enc_image_mode *mode, int *req,
                       int *sixteen_gray)
{
    int depth, ctype;
    if (n < 33 || memcmp(b + 12, "IHDR", 4) != 0 || rd_be32(b + 8) != 13)
        return cr_error_set(CR_ERR_INVALID, "corrupt or truncated PNG: no IHDR chunk");
    if (png_chunks_fit(b, n))
        return CR_ERR_INVALID;
    depth = b[24];
    ctype = b[25];
    *sixteen_gray = 0;
    switch (ctype) {
    case 0:
        *mode = depth == 1 ? ENC_IMAGE_1 : ENC_IMAGE_L;
        *sixteen_gray = depth == 16;
        *req = 1;
        break;
    case 2: *mode = ENC_IMAGE_RGB, *req = 3; break;
    case 3: *mode = ENC_IMAGE_P, *req = 3; break;
    case 4: *mode = ENC_IMAGE_LA, *req = 2; break;
    case 6: *mode = ENC_IMAGE_RGBA, *req = 4; break;
    default:
        return cr_error_set(CR_ERR_INVALID, "corrupt PNG: color type %d", ctype);
    }
    return CR_OK;
}

/* BMP: <= 8 bpp is a palette image; 32 bpp with an alpha bitfield is RGBA (Pillow's BGRA
 * rawmode); everything else RGB. */
static enc_image_mode bmp_mode(const uint8_t *b, size_t n)
{
    uint32_t hdr, compression, alpha_mask;
    int bpp;
    if (n < 34)
        return ENC_IMAGE_RGB;
    hdr = rd_le32(b + 14);
    bpp = b[28] | (b[29] << 8);
    if (hdr >= 40 && bpp <= 8)
        return ENC_IMAGE_P;
    if (hdr == 12 && n >= 26 && (b[24] | (b[25] << 8)) <= 8)
        return ENC_IMAGE_P;
    compression = rd_le32(b + 30);
    if (hdr >= 56 && bpp == 32 && (compression == 3 || compression == 6) && n >= 70) {
        alpha_mask = rd_le32(b + 66);
        if (alpha_mask)
            return ENC_IMAGE_RGBA;
    }
    return ENC_IMAGE_RGB;
}

/* Image size from the fixed header of PNG (IHDR), GIF (logical screen) and BMP; 0 when the
 * format has no fixed-position size (JPEG) or the header is too short. */
static int header_dims(fmt f, const uint8_t *b, size_t n, size_t *w, size_t *h)
{
    if (f == FMT_PNG && n >= 24 && memcmp(b + 12, "IHDR", 4) == 0) {
        *w = rd_be32(b + 16);
        *h = rd_be32(b + 20);
        return 1;
    }
    if (f == FMT_GIF && n >= 10) {
        *w = (size_t)(b[6] | (b[7] << 8));
        *h = (size_t)(b[8] | (b[9] << 8));
        return 1;
    }
    if (f == FMT_BMP && n >= 26 && rd_le32(b + 14) >= 40) {
        int32_t sw = (int32_t)rd_le32(b + 18), sh = (int32_t)rd_le32(b + 22);
        if (sw <= 0 || sh == INT32_MIN)
            return 0;
        *w = (size_t)sw;
        *h = (size_t)(sh < 0 ? -(int64_t)sh : sh);
        return 1;
    }
    return 0;
}

/* The header of a stb format: size (checked against the limit), the mode it opens in and
 * the stb channel request that yields it. Nothing is decoded. */
static cr_err probe_stb(fmt f, const uint8_t *b, size_t n, size_t max_pixels,
                        enc_image_info *info, int *req, int *sixteen_gray)
{
    enc_image_mode mode = ENC_IMAGE_RGB;
    int w = 0, h = 0, comp = 0;
    size_t hw = 0, hh = 0;
    cr_err rc;

    *req = 3;
    *sixteen_gray = 0;
    if (n > INT_MAX)
        return cr_error_set(CR_ERR_INVALID, "%s image of %zu bytes is too large", fmt_name(f),
                            n);
    /* Our own header read first: stb refuses very large images with a vague reason, and
     * the caller's pixel limit must be reported as such. */
    if (header_dims(f, b, n, &hw, &hh)) {
        rc = check_limit(f, hw, hh, max_pixels);
        if (rc)
            return rc;
    }
    if (!stbi_info_from_memory(b, (int)n, &w, &h, &comp))
        return cr_error_set(CR_ERR_INVALID, "corrupt or truncated %s image: %s", fmt_name(f),
                            stbi_failure_reason() ? stbi_failure_reason() : "bad header");
    rc = check_limit(f, (size_t)w, (size_t)h, max_pixels);
    if (rc)
        return rc;

    switch (f) {
    case FMT_PNG:
        rc = png_mode(b, n, &mode, req, sixteen_gray);
        if (rc)
            return rc;
        break;
    case FMT_JPEG:
        mode = comp == 1 ? ENC_IMAGE_L : ENC_IMAGE_RGB;
        *req = comp == 1 ? 1 : 3;
        break;
    case FMT_GIF: mode = ENC_IMAGE_P, *req = 3; break;
    case FMT_BMP:
        mode = bmp_mode(b, n);
        *req = enc_image_mode_channels(mode);
        break;
    default: return cr_error_set(CR_ERR_INTERNAL, "probe_stb: format %d", (int)f);
    }
    info->width = w;
    info->height = h;
    info->mode = mode;
    return CR_OK;
}

static cr_err decode_stb(fmt f, const uint8_t *b, size_t n, size_t max_pixels,
                         enc_image **out)
{
    enc_image *img = NULL;
    enc_image_info info;
    enc_image_mode mode;
    void *data = NULL;
    int w, h, req = 3, sixteen_gray = 0;
    cr_err rc = probe_stb(f, b, n, max_pixels, &info, &req, &sixteen_gray);

    if (rc)
        return rc;
    w = info.width;
    h = info.height;
    mode = info.mode;

    {
        int dw = 0, dh = 0, dc = 0;
        if (sixteen_gray)
            data = stbi_load_16_from_memory(b, (int)n, &dw, &dh, &dc, 1);
        else
            data = stbi_load_from_memory(b, (int)n, &dw, &dh, &dc, req);
        if (!data) {
            const char *why = stbi_failure_reason();
            if (why && strcmp(why, "outofmem") == 0)
                return cr_error_set(CR_ERR_NOMEM, "%s image: out of memory", fmt_name(f));
            return cr_error_set(CR_ERR_INVALID, "corrupt or truncated %s image: %s",
                                fmt_name(f), why ? why : "decode failed");
        }
        if (dw != w || dh != h) {
            rc = cr_error_set(CR_ERR_INVALID, "corrupt %s image: header says %dx%d, data %dx%d",
                              fmt_name(f), w, h, dw, dh);
            goto out;
        }
    }

    rc = image_alloc(w, h, mode, &img);
    if (rc)
        goto out;
    if (sixteen_gray) {
        /* Pillow opens 16-bit gray as "I;16" and its I;16 -> RGB/L conversion clips at
         * 255 (Convert.c I16_RGB), it does not scale. We keep that for embedding parity. */
        const uint16_t *s = data;
        size_t i, cnt = (size_t)w * (size_t)h;
        for (i = 0; i < cnt; i++)
            img->px[i] = s[i] > 255 ? 255 : (uint8_t)s[i];
    } else {
        memcpy(img->px, data, (size_t)w * (size_t)h * (size_t)enc_image_mode_channels(mode));
    }
    *out = img;
out:
    stbi_image_free(data);
    return rc;
}

static cr_err probe_webp(const uint8_t *b, size_t n, size_t max_pixels, enc_image_info *info)
{
    WebPBitstreamFeatures feat;
    VP8StatusCode st = WebPGetFeatures(b, n, &feat);
    cr_err rc;
    if (st != VP8_STATUS_OK)
        return cr_error_set(CR_ERR_INVALID, "corrupt or truncated WebP image (libwebp status %d)",
                            (int)st);
    if (feat.has_animation)
        return cr_error_set(CR_ERR_UNSUPPORTED, "animated WebP images are not supported");
    rc = check_limit(FMT_WEBP, (size_t)feat.width, (size_t)feat.height, max_pixels);
    if (rc)
        return rc;
    info->width = feat.width;
    info->height = feat.height;
    info->mode = feat.has_alpha ? ENC_IMAGE_RGBA : ENC_IMAGE_RGB;
    return CR_OK;
}

static cr_err decode_webp(const uint8_t *b, size_t n, size_t max_pixels, enc_image **out)
{
    enc_image_info info;
    enc_image *img = NULL;
    size_t stride, size;
    uint8_t *ok;
    cr_err rc = probe_webp(b, n, max_pixels, &info);

    if (rc)
        return rc;
    rc = image_alloc(info.width, info.height, info.mode, &img);
    if (rc)
        return rc;
    stride = (size_t)info.width * (size_t)enc_image_mode_channels(img->mode);
    size = stride * (size_t)info.height;
    if (info.mode == ENC_IMAGE_RGBA)
        ok = WebPDecodeRGBAInto(b, n, img->px, size, (int)stride);
    else
        ok = WebPDecodeRGBInto(b, n, img->px, size, (int)stride);
    if (!ok) {
        enc_image_free(&img);
        return cr_error_set(CR_ERR_INVALID, "corrupt or truncated WebP image");
    }
    *out = img;
    return CR_OK;
}

/* The checks every entry point makes on its arguments; 0 max_pixels = the default. */
static cr_err check_input(const uint8_t *bytes, size_t n, const void *out, const char *fn,
                          size_t *max_pixels)
{
    if (!out || (!bytes && n))
        return cr_error_set(CR_ERR_INVALID, "%s: NULL argument", fn);
    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "empty image data");
    if (*max_pixels == 0)
        *max_pixels = ENC_IMAGE_DEFAULT_MAX_PIXELS;
    return CR_OK;
}

cr_err enc_image_probe(const uint8_t *bytes, size_t n, size_t max_pixels, enc_image_info *out)
{
    enc_image_info info;
    int req, sixteen_gray;
    cr_err rc;
    fmt f;
    rc = check_input(bytes, n, out, "enc_image_probe", &max_pixels);
    if (rc)
        return rc;
    f = detect_format(bytes, n);
    switch (f) {
    case FMT_WEBP: rc = probe_webp(bytes, n, max_pixels, &info); break;
    case FMT_PNG:
    case FMT_JPEG:
    case FMT_GIF:
    case FMT_BMP: rc = probe_stb(f, bytes, n, max_pixels, &info, &req, &sixteen_gray); break;
    default:
        return cr_error_set(CR_ERR_INVALID,
                            "unsupported image format (expected JPEG, PNG, WebP, GIF or BMP)");
    }
    if (rc == CR_OK)
        *out = info;
    return rc;
}

cr_err enc_image_decode(const uint8_t *bytes, size_t n, size_t max_pixels, enc_image **out)
{
    fmt f;
    cr_err rc = check_input(bytes, n, out, "enc_image_decode", &max_pixels);
    if (rc)
        return rc;
    f = detect_format(bytes, n);
    switch (f) {
    case FMT_WEBP: return decode_webp(bytes, n, max_pixels, out);
    case FMT_PNG:
    case FMT_JPEG:
    case FMT_GIF:
    case FMT_BMP: return decode_stb(f, bytes, n, max_pixels, out);
    default: break;
    }
    return cr_error_set(CR_ERR_INVALID,
                        "unsupported image format (expected JPEG, PNG, WebP, GIF or BMP)");
}

cr_err enc_image_load_file(const char *path, size_t max_pixels, enc_image **out)
{
    FILE *fp = NULL;
    uint8_t *buf = NULL;
    long len;
    cr_err rc = CR_OK;

    if (!path || !out)
        return cr_error_set(CR_ERR_INVALID, "enc_image_load_file: NULL argument");
    fp = fopen(path, "rb");
    if (!fp)
        return cr_error_set(CR_ERR_IO, "open %s: %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        rc = cr_error_set(CR_ERR_IO, "seek %s: %s", path, strerror(errno));
        goto out;
    }
    if ((size_t)len > ENC_IMAGE_MAX_FILE_BYTES) {
        rc = cr_error_set(CR_ERR_IO, "%s: %ld bytes, over the %zu byte limit", path, len,
                          ENC_IMAGE_MAX_FILE_BYTES);
        goto out;
    }
    buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        rc = cr_error_set(CR_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (len && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        rc = cr_error_set(CR_ERR_IO, "read %s: %s", path, ferror(fp) ? strerror(errno) : "short read");
        goto out;
    }
    rc = enc_image_decode(buf, (size_t)len, max_pixels, out);
    if (rc < 0)
        cr_error_wrap(rc, "%s", path);
out:
    free(buf);
    if (fp)
        fclose(fp);
    return rc;
}

cr_err enc_image_from_pixels(int width, int height, enc_image_mode mode,
                             const uint8_t *pixels, enc_image **out)
{
    enc_image *img = NULL;
    cr_err rc;
    if (!pixels || !out)
        return cr_error_set(CR_ERR_INVALID, "enc_image_from_pixels: NULL argument");
    if (enc_image_mode_channels(mode) == 0)
        return cr_error_set(CR_ERR_INVALID, "enc_image_from_pixels: bad mode %d", (int)mode);
    if (width <= 0 || height <= 0 || width > INT_MAX / 4 || height > INT_MAX / 4 ||
        (size_t)width > SIZE_MAX / 4 / (size_t)height)
        return cr_error_set(CR_ERR_INVALID, "enc_image_from_pixels: bad size %dx%d", width,
                            height);
    rc = image_alloc(width, height, mode, &img);
    if (rc)
        return rc;
    memcpy(img->px, pixels, (size_t)width * (size_t)height * (size_t)enc_image_mode_channels(mode));
    *out = img;
    return CR_OK;
}

void enc_image_free(enc_image **img)
{
    if (!img || !*img)
        return;
    free((*img)->px);
    free(*img);
    *img = NULL;
}

int enc_image_width(const enc_image *img) { return img ? img->width : 0; }
int enc_image_height(const enc_image *img) { return img ? img->height : 0; }
int enc_image_channels(const enc_image *img) { return img ? enc_image_mode_channels(img->mode) : 0; }
enc_image_mode enc_image_get_mode(const enc_image *img) { return img ? img->mode : ENC_IMAGE_RGB; }
const uint8_t *enc_image_pixels(const enc_image *img) { return img ? img->px : NULL; }

const char *enc_image_mode_name(enc_image_mode mode)
{
    switch (mode) {
    case ENC_IMAGE_L: return "L";
    case ENC_IMAGE_LA: return "LA";
    case ENC_IMAGE_RGB: return "RGB";
    case ENC_IMAGE_RGBA: return "RGBA";
    case ENC_IMAGE_P: return "P";
    case ENC_IMAGE_1: return "1";
    }
    return "unknown";
}

cr_err enc_image_write_png(const char *path, int width, int height, const uint8_t *rgb)
{
    if (!path || !rgb)
        return cr_error_set(CR_ERR_INVALID, "enc_image_write_png: NULL argument");
    if (width <= 0 || height <= 0 || width > INT_MAX / 3 / height)
        return cr_error_set(CR_ERR_INVALID, "enc_image_write_png: bad size %dx%d", width,
                            height);
    errno = 0;
    if (!stbi_write_png(path, width, height, 3, rgb, width * 3))
        return cr_error_set(CR_ERR_IO, "write PNG %s: %s", path,
                            errno ? strerror(errno) : "failed");
    return CR_OK;
}
