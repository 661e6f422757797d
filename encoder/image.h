/* image.h — image decoding and CLIP preprocessing (Pillow/torchvision-exact).
 *
 *     enc_image *img = NULL;
 *     float px[3 * 224 * 224];
 *     if (enc_image_decode(bytes, n, 0, &img) < 0) -> cr_error_message() says why
 *     enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 224, px);   // CHW, normalized
 *     enc_image_free(&img);
 *
 * Decoding (stb_image for JPEG/PNG/BMP/GIF, libwebp for WebP) keeps the image in the mode
 * Pillow would open it in, because the reference preprocessing resizes in that mode:
 *
 *   source                                  mode   stored as
 *   gray PNG 2/4/8-bit, gray JPEG           L      1 byte/px
 *   gray PNG 1-bit                          1      1 byte/px (0/255), resized NEAREST
 *   gray PNG 16-bit (Pillow "I;16")         L      min(v, 255): Pillow's I;16 -> RGB clips
 *   gray+alpha PNG (8/16-bit)               LA     2 bytes/px (16-bit: high byte)
 *   RGB PNG (8/16-bit), JPEG, BMP >8bpp     RGB    3 bytes/px (16-bit: high byte, Pillow's
 *                                                  "RGB;16B" rawmode; tRNS ignored as Pillow)
 *   RGBA PNG (8/16-bit), WebP with alpha,   RGBA   4 bytes/px, resized premultiplied
 *   32-bit BMP with an alpha bitfield
 *   palette PNG/GIF/BMP (<= 8bpp)           P      palette expanded to 3 bytes/px, resized
 *                                                  NEAREST as Pillow does for mode "P"
 *   WebP without alpha                      RGB
 * The format is detected from magic bytes, never from a file name. GIF: first frame.
 * Known gaps versus Pillow (documented, not bugs of the common path): a GIF or BMP whose
 * palette is all grays opens as "L" in Pillow (bicubic) but as P here (nearest); padding a
 * P image uses black where Pillow uses palette entry 0; transparent GIF pixels are black
 * here and the palette colour in Pillow; CMYK JPEGs are converted to RGB by stb before the
 * resize; JPEG decoders differ slightly (stb vs libjpeg-turbo); animated WebP is refused.
 *
 * Thread rules: no global state; any number of threads may decode and preprocess at once.
 * A const enc_image may be shared between threads.
 */
#ifndef ENC_IMAGE_H
#define ENC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct enc_image enc_image;

/* The pixel layout of a decoded image; see the table above. */
typedef enum enc_image_mode {
    ENC_IMAGE_L = 1,    /* gray, 1 byte/px */
    ENC_IMAGE_LA = 2,   /* gray + alpha, 2 bytes/px */
    ENC_IMAGE_RGB = 3,  /* 3 bytes/px */
    ENC_IMAGE_RGBA = 4, /* 4 bytes/px, straight (not premultiplied) alpha */
    ENC_IMAGE_P = 5,    /* palette image expanded to RGB, 3 bytes/px; resized NEAREST */
    ENC_IMAGE_1 = 6     /* bilevel, 1 byte/px (0 or 255); resized NEAREST */
} enc_image_mode;

/* Preprocessing pipelines (DESIGN §6). The same choice must be used for indexing and
 * querying. */
typedef enum enc_preprocess {
    ENC_PREPROCESS_CLIP = 0,  /* Resize(S, bicubic) -> CenterCrop(S) -> RGB -> Normalize */
    ENC_PREPROCESS_TARGETPAD, /* CLIP4Cir/SEARLE TargetPad(1.25), then the clip pipeline */
    ENC_PREPROCESS_SQUAREPAD  /* CLIP4Cir SquarePad, then the clip pipeline */
} enc_preprocess;

/* Pixel limit used when a caller passes max_pixels = 0 (Pillow's MAX_IMAGE_PIXELS). */
#define ENC_IMAGE_DEFAULT_MAX_PIXELS ((size_t)89478485)
/* Largest file enc_image_load_file() reads. */
#define ENC_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)
/* CLIP4Cir's target ratio for ENC_PREPROCESS_TARGETPAD. */
#define ENC_TARGETPAD_RATIO 1.25

/* Decodes `n` bytes (borrowed; not kept) into a new image. The header is read first and
 * width*height above `max_pixels` (0 = ENC_IMAGE_DEFAULT_MAX_PIXELS) fails before any
 * pixel is decoded. Returns CR_OK and sets *out (free with enc_image_free), or
 * CR_ERR_INVALID ("unsupported image format", corrupt/truncated data, over the limit),
 * CR_ERR_UNSUPPORTED (animated WebP) or CR_ERR_NOMEM; *out is untouched on failure. */
cr_err enc_image_decode(const uint8_t *bytes, size_t n, size_t max_pixels, enc_image **out);

/* What an image's header says, read without decoding a pixel. */
typedef struct enc_image_info {
    int width, height;
    enc_image_mode mode; /* the mode enc_image_decode() would give it */
} enc_image_info;

/* Reads only the header of `n` bytes (no pixel is decoded, nothing is allocated): size and
 * mode, with the same checks and errors as enc_image_decode() for the format, a bad header
 * and the pixel limit. A probe that succeeds may still be followed by a failing decode
 * (corrupt pixel data). */
cr_err enc_image_probe(const uint8_t *bytes, size_t n, size_t max_pixels, enc_image_info *out);

/* Reads the file at `path` and decodes it as enc_image_decode() does. CR_ERR_IO when the
 * file cannot be read or exceeds ENC_IMAGE_MAX_FILE_BYTES. */
cr_err enc_image_load_file(const char *path, size_t max_pixels, enc_image **out);

/* Wraps a copy of caller pixels (row-major, tightly packed, bytes per pixel as the mode
 * says) as an image. CR_ERR_INVALID on a bad size or mode. */
cr_err enc_image_from_pixels(int width, int height, enc_image_mode mode,
                             const uint8_t *pixels, enc_image **out);

/* NULL-safe; sets *img to NULL. */
void enc_image_free(enc_image **img);

int enc_image_width(const enc_image *img);
int enc_image_height(const enc_image *img);
/* Bytes per pixel of the stored data: 1 (L, 1), 2 (LA), 3 (RGB, P), 4 (RGBA). */
int enc_image_channels(const enc_image *img);
/* The same for a mode; 0 for a value that is not a mode. */
int enc_image_mode_channels(enc_image_mode mode);
enc_image_mode enc_image_get_mode(const enc_image *img);
/* Pillow's name of the mode: "L", "LA", "RGB", "RGBA", "P", "1". Static string. */
const char *enc_image_mode_name(enc_image_mode mode);
/* The pixels, row-major, width*height*channels bytes; valid until enc_image_free(). */
const uint8_t *enc_image_pixels(const enc_image *img);

/* Runs pipeline `mode` at model image size `size` (1..4096) and writes the normalized
 * float tensor [3, size, size] (CHW, RGB) to `out`, which must hold 3*size*size floats.
 * The result equals torchvision + Pillow 8-bit resampling bit for bit on PNG input. The
 * padding of targetpad / squarepad is never materialized; the cost is the one
 * enc_image_preprocess_cost() gives. CR_ERR_INVALID on bad arguments and when the Resize(S)
 * size has a side over INT_MAX (e.g. clip of 1 x 10,000,000 at 224: 224 x 2.24e9), checked
 * before anything is allocated; CR_ERR_NOMEM. Thread-safe; allocates scratch. */
cr_err enc_image_preprocess(const enc_image *img, enc_preprocess mode, int size, float *out);

/* What enc_image_preprocess() on a width x height image of `mode` costs, from the size
 * alone (so from enc_image_probe(), before decoding). Units of `work`: pixel samples — the
 * decoded pixels, plus every pixel read, filter tap and kernel evaluation of the resize;
 * it grows linearly with the image, not with its padded canvas. */
typedef struct enc_image_cost {
    uint64_t decoded_px;  /* width * height */
    uint64_t padded_px;   /* the padded canvas (never allocated) */
    uint64_t work;        /* decoded_px + the resize's samples */
    size_t scratch_bytes; /* scratch that grows with the image: filter weights, row buffer
                             (besides the fixed ~5 * 4 * size^2 bytes of crop buffers) */
} enc_image_cost;

/* Fills *out; CR_ERR_INVALID for bad arguments or an unrepresentable resize, exactly when
 * enc_image_preprocess() would fail with it. Cheap: O(size). Thread-safe. */
cr_err enc_image_preprocess_cost(int width, int height, enc_image_mode mode, enc_preprocess pp,
                                 int size, enc_image_cost *out);

/* "clip" | "targetpad" | "squarepad" -> *out; CR_ERR_INVALID (message lists the choices)
 * for anything else. */
cr_err enc_preprocess_parse(const char *name, enc_preprocess *out);
/* A comma-separated list of pipeline names ("clip,targetpad") -> *mask with bit
 * (1u << mode) set for each; CR_ERR_INVALID naming a bad entry. "" gives 0. */
cr_err enc_preprocess_parse_list(const char *names, unsigned *mask);
/* Static name of a pipeline ("clip", ...); "unknown" for values out of range. */
const char *enc_preprocess_name(enc_preprocess mode);

/* Writes a tightly packed RGB buffer (width*height*3 bytes) as an 8-bit PNG file
 * (stb_image_write from Debian's libstb). CR_ERR_INVALID on bad sizes, CR_ERR_IO when the
 * file cannot be written. */
cr_err enc_image_write_png(const char *path, int width, int height, const uint8_t *rgb);

#endif
