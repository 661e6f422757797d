/* validate.h — checks for fields received from the network or users. Each returns CR_OK or
 * CR_ERR_INVALID with a message naming the field and what was wrong. */
#ifndef CR_VALIDATE_H
#define CR_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

#define CR_MAX_ID_BYTES 256
#define CR_MAX_K 1000

/* 1 when `s[0..len)` is well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF). */
int cr_utf8_valid(const char *s, size_t len);

/* External item id: 1..256 bytes of UTF-8. */
cr_err cr_validate_id(const char *id);

/* Vector of exactly `dim` finite floats. `what` names it in the message. */
cr_err cr_validate_vector(const Cirrus__V1__Vector *v, uint32_t dim, const char *what);

/* All `n` floats finite. */
cr_err cr_validate_finite(const float *x, size_t n, const char *what);

/* k in 1..max_k. */
cr_err cr_validate_k(uint32_t k, uint32_t max_k);

/* Attribute: non-empty name (≤ 128 bytes, UTF-8), a value set, strings UTF-8. */
cr_err cr_validate_attribute(const Cirrus__V1__Attribute *a);

/* The media type of encoded image bytes by their signature, for the formats the encoder
 * decodes: "image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"; NULL otherwise. */
const char *cr_image_type(const void *bytes, size_t n);

#endif
