/* fuzz_image.c — image bytes from a shopper or a catalog (PNG, JPEG, WebP, GIF, BMP, ...):
 * the header probe and the decode must agree, respect the pixel limit, and a decoded image
 * must preprocess for the towers. The limit is small so that the fuzzer explores formats, not
 * huge allocations (which the limit is there to refuse). */
#include <stdlib.h>

#include "encoder/image.h"
#include "fuzz.h"

#define MAX_PIXELS ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enc_image_info info;
    enc_image *img = NULL;
    cr_err probed = enc_image_probe(data, size, MAX_PIXELS, &info);
    if (enc_image_decode(data, size, MAX_PIXELS, &img) != CR_OK)
        return 0;
    FUZZ_ASSERT(probed == CR_OK); /* a decodable image has a readable header */
    FUZZ_ASSERT(enc_image_width(img) == info.width && enc_image_height(img) == info.height);
    FUZZ_ASSERT((size_t)info.width * (size_t)info.height <= MAX_PIXELS);
    enc_image_cost cost;
    if ((size_t)info.width * (size_t)info.height <= 65536 &&
        enc_image_preprocess_cost(info.width, info.height, info.mode, ENC_PREPROCESS_CLIP, 32,
                                  &cost) == CR_OK) {
        float *x = malloc(sizeof *x * 3 * 32 * 32);
        FUZZ_ASSERT(x);
        FUZZ_ASSERT(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 32, x) == CR_OK);
        free(x);
    }
    enc_image_free(&img);
    return 0;
}
