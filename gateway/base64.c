/* base64.c — base64 (standard and URL-safe alphabets, padding optional) to bytes. */
#include "gateway/base64.h"

#include <stdlib.h>
#include <string.h>

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

cr_err gw_base64_decode(const char *s, const char *field, ProtobufCBinaryData *out)
{
    size_t n = strlen(s), o = 0;
    uint32_t acc = 0;
    int bits = 0;
    out->data = malloc(n * 3 / 4 + 3);
    if (!out->data)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int v;
        if (s[i] == '=' || s[i] == '\n' || s[i] == '\r')
            continue;
        if ((v = b64val((unsigned char)s[i])) < 0) {
            free(out->data);
            out->data = NULL;
            return cr_error_set(CR_ERR_INVALID, "%s: not base64", field);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = o;
    return CR_OK;
}

