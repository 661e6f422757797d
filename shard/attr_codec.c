/* attr_codec.c — the store's attribute format on disk (described byte by byte in store.h):
 * the version-2 encoder and decoder, the reader of version-1 blobs (packed protobuf Items,
 * written before the store owned its format), and the one-block layout that decoded
 * attributes, items and hits share. Decoding never trusts a length: every count is checked
 * against the bytes left before anything is allocated. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cirrus.pb-c.h"
#include "common/validate.h"
#include "shard/store.h"

#define NAME_MAX_BYTES 128

void shard_item_free(shard_item **pp)
{
    if (pp) {
        free(*pp);
        *pp = NULL;
    }
}

void shard_hit_free(shard_hit **pp)
{
    if (pp) {
        free(*pp);
        *pp = NULL;
    }
}

void shard_scan_page_clear(shard_scan_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    free(p->deleted);
    memset(p, 0, sizeof *p);
}

static cr_err check_str(const char *s, const char *attr)
{
    if (!s || !cr_utf8_valid(s, strlen(s)))
        return cr_error_set(CR_ERR_INVALID, "attribute '%s': string value is not valid UTF-8",
                            attr);
    return CR_OK;
}

cr_err shard_attr_check(const shard_attr *a)
{
    size_t len;
    if (!a || !a->name || !a->name[0])
        return cr_error_set(CR_ERR_INVALID, "attribute without a name");
    len = strlen(a->name);
    if (len > NAME_MAX_BYTES || !cr_utf8_valid(a->name, len))
        return cr_error_set(CR_ERR_INVALID, "attribute name is too long or not UTF-8");
    switch (a->value.type) {
    case SHARD_VALUE_STRING: return check_str(a->value.u.s, a->name);
    case SHARD_VALUE_INT: return CR_OK;
    case SHARD_VALUE_BOOL:
        if (a->value.u.b != 0 && a->value.u.b != 1)
            return cr_error_set(CR_ERR_INVALID, "attribute '%s': bool is not 0 or 1", a->name);
        return CR_OK;
    case SHARD_VALUE_DOUBLE:
        if (!isfinite(a->value.u.d))
            return cr_error_set(CR_ERR_INVALID, "attribute '%s' is not a finite number",
                                a->name);
        return CR_OK;
    case SHARD_VALUE_STRINGS:
        if (a->value.u.strings.n && !a->value.u.strings.v)
            return cr_error_set(CR_ERR_INVALID, "attribute '%s' has no strings", a->name);
        for (size_t i = 0; i < a->value.u.strings.n; i++)
            if (check_str(a->value.u.strings.v[i], a->name))
                return CR_ERR_INVALID;
        return CR_OK;
    default:
        return cr_error_set(CR_ERR_INVALID, "attribute '%s' has no value", a->name);
    }
}

/* ---- the one-block layout: [shard_attr x n][char * x list strings][chars] ---------------- */

typedef struct layout {
    size_t n_attrs, n_ptrs, n_chars;
} layout;

static size_t layout_bytes(const layout *l)
{
    return l->n_attrs * sizeof(shard_attr) + l->n_ptrs * sizeof(char *) + l->n_chars;
}

static void layout_count(const shard_attr *a, size_t n, layout *l)
{
    memset(l, 0, sizeof *l);
    l->n_attrs = n;
    for (size_t k = 0; k < n; k++) {
        const shard_value *v = &a[k].value;
        l->n_chars += strlen(a[k].name) + 1;
        if (v->type == SHARD_VALUE_STRING)
            l->n_chars += strlen(v->u.s) + 1;
        if (v->type == SHARD_VALUE_STRINGS) {
            l->n_ptrs += v->u.strings.n;
            for (size_t i = 0; i < v->u.strings.n; i++)
                l->n_chars += strlen(v->u.strings.v[i]) + 1;
        }
    }
}

size_t shard_attrs_block_size(const shard_attr *a, size_t n)
{
    layout l;
    layout_count(a, n, &l);
    return layout_bytes(&l);
}

static char *put_str(char **chars, const char *s, size_t len)
{
    char *d = *chars;
    memcpy(d, s, len);
    d[len] = '\0';
    *chars += len + 1;
    return d;
}

shard_attr *shard_attrs_place(const shard_attr *a, size_t n, void *mem)
{
    layout l;
    shard_attr *out = mem;
    const char **ptrs;
    char *chars;
    layout_count(a, n, &l);
    ptrs = (const char **)(out + n);
    chars = (char *)(ptrs + l.n_ptrs);
    for (size_t k = 0; k < n; k++) {
        const shard_value *v = &a[k].value;
        out[k] = a[k];
        out[k].name = put_str(&chars, a[k].name, strlen(a[k].name));
        if (v->type == SHARD_VALUE_STRING)
            out[k].value.u.s = put_str(&chars, v->u.s, strlen(v->u.s));
        if (v->type == SHARD_VALUE_STRINGS) {
            out[k].value.u.strings.v = ptrs;
            for (size_t i = 0; i < v->u.strings.n; i++)
                *ptrs++ = put_str(&chars, v->u.strings.v[i], strlen(v->u.strings.v[i]));
        }
    }
    return out;
}

/* ---- version 2: encoder ------------------------------------------------------------------ */

static uint8_t *put_u16(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)x;
    p[1] = (uint8_t)(x >> 8);
    return p + 2;
}

static uint8_t *put_u32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(x >> (8 * i));
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
    return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    p = put_u32(p, (uint32_t)len);
    memcpy(p, s, len);
    return p + len;
}

/* Bytes of the encoding, or 0 when a length does not fit its field (CR_ERR_INVALID set). */
static size_t encoded_size(const shard_attr *a, size_t n)
{
    uint64_t total = 5;
    for (size_t k = 0; k < n; k++) {
        const shard_value *v = &a[k].value;
        total += 3 + strlen(a[k].name);
        switch (v->type) {
        case SHARD_VALUE_STRING: total += 4 + (uint64_t)strlen(v->u.s); break;
        case SHARD_VALUE_INT:
        case SHARD_VALUE_DOUBLE: total += 8; break;
        case SHARD_VALUE_BOOL: total += 1; break;
        default:
            total += 4;
            for (size_t i = 0; i < v->u.strings.n; i++)
                total += 4 + (uint64_t)strlen(v->u.strings.v[i]);
            break;
        }
        if (total > UINT32_MAX)
            break;
    }
    if (total > UINT32_MAX || n > UINT32_MAX) {
        cr_error_set(CR_ERR_INVALID, "attributes: %zu attributes do not fit 4 GiB", n);
        return 0;
    }
    return (size_t)total;
}

cr_err shard_store_attrs_encode(const shard_attr *a, size_t n, uint8_t **blob, size_t *len)
{
    size_t size;
    uint8_t *p;
    *blob = NULL;
    *len = 0;
    if (n == 0)
        return CR_OK; /* no attributes: the empty blob, in every version */
    if (!a)
        return cr_error_set(CR_ERR_INVALID, "attributes: NULL array");
    for (size_t k = 0; k < n; k++) {
        cr_err rc = shard_attr_check(&a[k]);
        if (rc)
            return rc;
    }
    size = encoded_size(a, n);
    if (!size)
        return CR_ERR_INVALID;
    p = *blob = malloc(size);
    if (!p)
        return cr_error_set(CR_ERR_NOMEM, "attributes: out of memory (%zu bytes)", size);
    *p++ = SHARD_STORE_ATTRS_V2;
    p = put_u32(p, (uint32_t)n);
    for (size_t k = 0; k < n; k++) {
        const shard_value *v = &a[k].value;
        size_t nl = strlen(a[k].name);
        uint64_t bits;
        *p++ = (uint8_t)v->type;
        p = put_u16(p, (uint32_t)nl);
        memcpy(p, a[k].name, nl);
        p += nl;
        switch (v->type) {
        case SHARD_VALUE_STRING: p = put_bytes(p, v->u.s); break;
        case SHARD_VALUE_INT: p = put_u64(p, (uint64_t)v->u.i); break;
        case SHARD_VALUE_DOUBLE:
            memcpy(&bits, &v->u.d, 8);
            p = put_u64(p, bits);
            break;
        case SHARD_VALUE_BOOL: *p++ = (uint8_t)(v->u.b ? 1 : 0); break;
        default:
            p = put_u32(p, (uint32_t)v->u.strings.n);
            for (size_t i = 0; i < v->u.strings.n; i++)
                p = put_bytes(p, v->u.strings.v[i]);
            break;
        }
    }
    *len = size;
    return CR_OK;
}

/* ---- version 2: decoder ------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p, *end, *start;
} reader;

static cr_err corrupt(const reader *r, const char *what)
{
    return cr_error_set(CR_ERR_STORE, "attributes: corrupt blob (%s at byte %zu)", what,
                        (size_t)(r->p - r->start));
}

static int get_u(reader *r, int bytes, uint64_t *x)
{
    if (r->end - r->p < bytes)
        return -1;
    *x = 0;
    for (int i = 0; i < bytes; i++)
        *x |= (uint64_t)r->p[i] << (8 * i);
    r->p += bytes;
    return 0;
}

/* A string field: its length, then bytes that are UTF-8 with no NUL. */
static cr_err get_str(reader *r, int len_bytes, const uint8_t **s, size_t *len)
{
    uint64_t n;
    if (get_u(r, len_bytes, &n))
        return corrupt(r, "truncated length");
    if ((uint64_t)(r->end - r->p) < n)
        return corrupt(r, "string past the end");
    *s = r->p;
    *len = (size_t)n;
    if (memchr(*s, 0, *len) || !cr_utf8_valid((const char *)*s, *len))
        return corrupt(r, "string not UTF-8");
    r->p += n;
    return CR_OK;
}

/* One pass over the blob. Without `out` it checks everything and counts the layout; with
 * `out` (a block of that layout) it fills it. */
static cr_err v2_pass(const uint8_t *blob, size_t len, layout *l, shard_attr *out)
{
    reader r = {blob + 1, blob + len, blob};
    const char **ptrs = NULL;
    char *chars = NULL;
    uint64_t n, x;
    const uint8_t *s;
    size_t sl;
    cr_err rc;
    if (get_u(&r, 4, &n))
        return corrupt(&r, "truncated count");
    if (n > (len - 5) / 4) /* every attribute takes at least 4 bytes */
        return corrupt(&r, "count larger than the blob");
    if (out) {
        ptrs = (const char **)(out + n);
        chars = (char *)(ptrs + l->n_ptrs);
    } else {
        memset(l, 0, sizeof *l);
        l->n_attrs = (size_t)n;
    }
    for (uint64_t k = 0; k < n; k++) {
        shard_attr a = {0};
        if (get_u(&r, 1, &x))
            return corrupt(&r, "truncated type");
        a.value.type = (shard_value_type)x;
        if ((rc = get_str(&r, 2, &s, &sl)))
            return rc;
        if (sl == 0 || sl > NAME_MAX_BYTES)
            return corrupt(&r, "bad name length");
        if (out)
            a.name = put_str(&chars, (const char *)s, sl);
        else
            l->n_chars += sl + 1;
        switch (a.value.type) {
        case SHARD_VALUE_STRING:
            if ((rc = get_str(&r, 4, &s, &sl)))
                return rc;
            if (out)
                a.value.u.s = put_str(&chars, (const char *)s, sl);
            else
                l->n_chars += sl + 1;
            break;
        case SHARD_VALUE_INT:
            if (get_u(&r, 8, &x))
                return corrupt(&r, "truncated int");
            a.value.u.i = (int64_t)x;
            break;
        case SHARD_VALUE_DOUBLE:
            if (get_u(&r, 8, &x))
                return corrupt(&r, "truncated double");
            memcpy(&a.value.u.d, &x, 8);
            if (!isfinite(a.value.u.d))
                return corrupt(&r, "double not finite");
            break;
        case SHARD_VALUE_BOOL:
            if (get_u(&r, 1, &x) || x > 1)
                return corrupt(&r, "bad bool");
            a.value.u.b = (int)x;
            break;
        case SHARD_VALUE_STRINGS: {
            uint64_t c;
            if (get_u(&r, 4, &c) || c > (uint64_t)(r.end - r.p) / 4)
                return corrupt(&r, "bad list count");
            if (out) {
                a.value.u.strings.v = ptrs;
                a.value.u.strings.n = (size_t)c;
            } else {
                l->n_ptrs += (size_t)c;
            }
            for (uint64_t i = 0; i < c; i++) {
                if ((rc = get_str(&r, 4, &s, &sl)))
                    return rc;
                if (out)
                    *ptrs++ = put_str(&chars, (const char *)s, sl);
                else
                    l->n_chars += sl + 1;
            }
            break;
        }
        default: return corrupt(&r, "unknown type");
        }
        if (out)
            out[k] = a;
    }
    if (r.p != r.end)
        return corrupt(&r, "trailing bytes");
    return CR_OK;
}

static cr_err decode_v2(const uint8_t *blob, size_t len, shard_attr **out, size_t *n)
{
    layout l;
    shard_attr *block;
    cr_err rc = v2_pass(blob, len, &l, NULL);
    if (rc)
        return rc;
    block = malloc(layout_bytes(&l) ? layout_bytes(&l) : 1);
    if (!block)
        return cr_error_set(CR_ERR_NOMEM, "attributes: out of memory");
    rc = v2_pass(blob, len, &l, block);
    if (rc) { /* cannot happen: the first pass checked the same bytes */
        free(block);
        return rc;
    }
    *out = block;
    *n = l.n_attrs;
    return CR_OK;
}

/* ---- version 1: a packed protobuf Item holding only the attributes ---------------------- */

static cr_err legacy_value(const Cirrus__V1__AttrValue *v, shard_value *out)
{
    if (!v)
        return CR_ERR_STORE;
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S: out->type = SHARD_VALUE_STRING, out->u.s = v->s; break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I: out->type = SHARD_VALUE_INT, out->u.i = v->i; break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D: out->type = SHARD_VALUE_DOUBLE, out->u.d = v->d; break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: out->type = SHARD_VALUE_BOOL, out->u.b = !!v->b; break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        if (!v->strings)
            return CR_ERR_STORE;
        out->type = SHARD_VALUE_STRINGS;
        out->u.strings.v = (const char *const *)v->strings->values;
        out->u.strings.n = v->strings->n_values;
        break;
    default: return CR_ERR_STORE;
    }
    return CR_OK;
}

static cr_err decode_v1(const uint8_t *blob, size_t len, shard_attr **out, size_t *n)
{
    Cirrus__V1__Item *it = cirrus__v1__item__unpack(NULL, len, blob);
    shard_attr *view = NULL;
    cr_err rc = CR_OK;
    if (!it)
        return cr_error_set(CR_ERR_STORE, "attributes: corrupt version-1 blob (%zu bytes)", len);
    view = calloc(it->n_attributes ? it->n_attributes : 1, sizeof *view);
    if (!view) {
        rc = cr_error_set(CR_ERR_NOMEM, "attributes: out of memory");
        goto out;
    }
    for (size_t k = 0; k < it->n_attributes; k++) {
        view[k].name = it->attributes[k]->name;
        if (legacy_value(it->attributes[k]->value, &view[k].value) || !view[k].name ||
            !view[k].name[0]) {
            rc = cr_error_set(CR_ERR_STORE, "attributes: version-1 attribute %zu has no value",
                              k);
            goto out;
        }
    }
    *out = malloc(shard_attrs_block_size(view, it->n_attributes) + 1);
    if (!*out) {
        rc = cr_error_set(CR_ERR_NOMEM, "attributes: out of memory");
        goto out;
    }
    shard_attrs_place(view, it->n_attributes, *out);
    *n = it->n_attributes;
out:
    free(view);
    cirrus__v1__item__free_unpacked(it, NULL);
    return rc;
}

cr_err shard_store_attrs_decode(const void *blob, size_t len, shard_attr **out, size_t *n)
{
    const uint8_t *b = blob;
    *out = NULL;
    *n = 0;
    if (len == 0)
        return CR_OK;
    if (!blob)
        return cr_error_set(CR_ERR_INVALID, "attributes: NULL blob");
    if (b[0] == SHARD_STORE_ATTRS_V2)
        return decode_v2(b, len, out, n);
    if (b[0] == SHARD_STORE_ATTRS_V1_TAG)
        return decode_v1(b, len, out, n);
    return cr_error_set(CR_ERR_STORE, "attributes: unknown format 0x%02x (%zu bytes)", b[0],
                        len);
}
