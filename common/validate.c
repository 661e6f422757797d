#include "validate.h"

#include <math.h>
#include <string.h>

int cr_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

cr_err cr_validate_id(const char *id)
{
    size_t len;
    if (!id || !id[0])
        return cr_error_set(CR_ERR_INVALID, "item id is empty");
    len = strlen(id);
    if (len > CR_MAX_ID_BYTES)
        return cr_error_set(CR_ERR_INVALID, "item id of %zu bytes exceeds %d bytes", len,
                            CR_MAX_ID_BYTES);
    if (!cr_utf8_valid(id, len))
        return cr_error_set(CR_ERR_INVALID, "item id is not valid UTF-8");
    return CR_OK;
}

cr_err cr_validate_finite(const float *x, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return cr_error_set(CR_ERR_INVALID, "%s: element %zu is %s", what, i,
                                isnan(x[i]) ? "NaN" : "infinite");
    return CR_OK;
}

cr_err cr_validate_vector(const Cirrus__V1__Vector *v, uint32_t dim, const char *what)
{
    if (!v || v->n_values == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: vector is missing", what);
    if (v->n_values != dim)
        return cr_error_set(CR_ERR_INVALID, "%s: vector has %zu dimensions, expected %u", what,
                            v->n_values, dim);
    return cr_validate_finite(v->values, v->n_values, what);
}

cr_err cr_validate_k(uint32_t k, uint32_t max_k)
{
    if (k == 0 || k > max_k)
        return cr_error_set(CR_ERR_INVALID, "k = %u is out of range 1..%u", k, max_k);
    return CR_OK;
}

static cr_err validate_str(const char *s, const char *attr)
{
    if (!s || !cr_utf8_valid(s, strlen(s)))
        return cr_error_set(CR_ERR_INVALID, "attribute '%s': string value is not valid UTF-8",
                            attr);
    return CR_OK;
}

cr_err cr_validate_attribute(const Cirrus__V1__Attribute *a)
{
    const Cirrus__V1__AttrValue *v;
    size_t len;
    if (!a || !a->name || !a->name[0])
        return cr_error_set(CR_ERR_INVALID, "attribute without a name");
    len = strlen(a->name);
    if (len > 128 || !cr_utf8_valid(a->name, len))
        return cr_error_set(CR_ERR_INVALID, "attribute name is too long or not UTF-8");
    v = a->value;
    if (!v)
        return cr_error_set(CR_ERR_INVALID, "attribute '%s' has no value", a->name);
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S:
        return validate_str(v->s, a->name);
    case CIRRUS__V1__ATTR_VALUE__VALUE_I:
    case CIRRUS__V1__ATTR_VALUE__VALUE_B:
        return CR_OK;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D:
        if (!isfinite(v->d))
            return cr_error_set(CR_ERR_INVALID, "attribute '%s' is not a finite number",
                                a->name);
        return CR_OK;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        if (!v->strings)
            return cr_error_set(CR_ERR_INVALID, "attribute '%s' has no strings", a->name);
        for (size_t i = 0; i < v->strings->n_values; i++)
            if (validate_str(v->strings->values[i], a->name))
                return CR_ERR_INVALID;
        return CR_OK;
    default:
        return cr_error_set(CR_ERR_INVALID, "attribute '%s' has an unknown value type",
                            a->name);
    }
}

const char *cr_image_type(const void *bytes, size_t n)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char *b = bytes;
    if (!b)
        return NULL;
    if (n >= 8 && memcmp(b, png, 8) == 0)
        return "image/png";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "image/jpeg";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "image/gif";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return "image/bmp";
    return NULL;
}
