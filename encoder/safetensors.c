/* safetensors.c — mmap + strict header validation + fp32 conversion. See safetensors.h. */
#include "encoder/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct enc_st {
    void *map; /* our mapping, NULL for enc_st_open_memory() */
    size_t map_size;
    const uint8_t *base; /* the whole file */
    size_t size;
    const uint8_t *data; /* data area */
    uint64_t data_size;
    enc_st_tensor *tensors; /* sorted by name */
    size_t count;
    char *names; /* one block holding every name */
    char *label; /* path or "<memory>", for messages */
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[ENC_ST_DTYPE_COUNT] = {
    [ENC_ST_BOOL] = {"BOOL", 1},       [ENC_ST_U8] = {"U8", 1},
    [ENC_ST_I8] = {"I8", 1},           [ENC_ST_F8_E4M3] = {"F8_E4M3", 1},
    [ENC_ST_F8_E5M2] = {"F8_E5M2", 1}, [ENC_ST_I16] = {"I16", 2},
    [ENC_ST_U16] = {"U16", 2},         [ENC_ST_F16] = {"F16", 2},
    [ENC_ST_BF16] = {"BF16", 2},       [ENC_ST_I32] = {"I32", 4},
    [ENC_ST_U32] = {"U32", 4},         [ENC_ST_F32] = {"F32", 4},
    [ENC_ST_I64] = {"I64", 8},         [ENC_ST_U64] = {"U64", 8},
    [ENC_ST_F64] = {"F64", 8},
};

const char *enc_st_dtype_name(enc_st_dtype dt)
{
    if ((int)dt < 0 || dt >= ENC_ST_DTYPE_COUNT)
        return "?";
    return dtype_info[dt].name;
}

size_t enc_st_dtype_size(enc_st_dtype dt)
{
    if ((int)dt < 0 || dt >= ENC_ST_DTYPE_COUNT)
        return 0;
    return dtype_info[dt].size;
}

static int dtype_parse(const char *s, enc_st_dtype *dt)
{
    for (int i = 0; i < ENC_ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *dt = (enc_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

const char *enc_st_shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = 0;
    if (!size)
        return buf;
    buf[0] = '\0';
    int n = snprintf(buf, size, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < size; i++) {
        if (shape[i] < 0)
            n = snprintf(buf + used, size - used, "%s*", i ? ", " : "");
        else
            n = snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

/* ---- header parsing ---- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const enc_st_tensor *)a)->name, ((const enc_st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const enc_st_tensor *x = *(const enc_st_tensor *const *)a;
    const enc_st_tensor *y = *(const enc_st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Validates one "name": {...} entry into *t (name set by the caller). */
static cr_err parse_entry(const enc_st *st, const char *key, json_t *val, enc_st_tensor *t)
{
    json_t *jd, *js, *jo;
    if (!json_is_object(val))
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s': entry is not a JSON object", st->label,
                            key);
    jd = json_object_get(val, "dtype");
    js = json_object_get(val, "shape");
    jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return cr_error_set(CR_ERR_MODEL,
                            "%s: tensor '%s': needs string 'dtype', array 'shape' and array "
                            "'data_offsets'",
                            st->label, key);
    if (!dtype_parse(json_string_value(jd), &t->dtype))
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s': unknown dtype '%.32s'", st->label, key,
                            json_string_value(jd));
    size_t nd = json_array_size(js);
    if (nd > ENC_ST_MAX_DIMS)
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s': %zu dimensions (at most %d)", st->label,
                            key, nd, ENC_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return cr_error_set(CR_ERR_MODEL,
                                "%s: tensor '%s': shape entry %zu is not a non-negative integer",
                                st->label, key, i);
        uint64_t v = (uint64_t)json_integer_value(d);
        t->shape[i] = (int64_t)v;
        if (v && numel > UINT64_MAX / v)
            overflow = 1;
        else
            numel *= v;
    }
    size_t esz = dtype_info[t->dtype].size;
    if (overflow || numel > UINT64_MAX / esz)
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s': shape element count overflows",
                            st->label, key);
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)) || json_integer_value(json_array_get(jo, 0)) < 0 ||
        json_integer_value(json_array_get(jo, 1)) < 0)
        return cr_error_set(CR_ERR_MODEL,
                            "%s: tensor '%s': data_offsets must be two non-negative integers",
                            st->label, key);
    uint64_t begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
    uint64_t end = (uint64_t)json_integer_value(json_array_get(jo, 1));
    if (begin > end || end > st->data_size)
        return cr_error_set(CR_ERR_MODEL,
                            "%s: tensor '%s': data_offsets [%llu, %llu] outside the data area "
                            "of %llu bytes (truncated file?)",
                            st->label, key, (unsigned long long)begin, (unsigned long long)end,
                            (unsigned long long)st->data_size);
    if (end - begin != numel * esz) {
        char sh[160];
        return cr_error_set(CR_ERR_MODEL,
                            "%s: tensor '%s': %s %s needs %llu bytes but data_offsets span %llu",
                            st->label, key, enc_st_dtype_name(t->dtype),
                            enc_st_shape_str(sh, sizeof sh, t->ndim, t->shape),
                            (unsigned long long)(numel * esz), (unsigned long long)(end - begin));
    }
    t->numel = numel;
    t->offset = begin;
    t->nbytes = end - begin;
    t->data = st->data + begin;
    return CR_OK;
}

static cr_err parse_header(enc_st *st)
{
    cr_err rc = CR_OK;
    json_t *root = NULL;
    json_error_t jerr;
    enc_st_tensor **by_off = NULL;

    if (st->size < 8) {
        rc = cr_error_set(CR_ERR_MODEL,
                          "%s: file of %zu bytes is too short for a safetensors "
                          "header (truncated?)",
                          st->label, st->size);
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | st->base[i];
    if (hlen < 2 || hlen > ENC_ST_MAX_HEADER) {
        rc = cr_error_set(CR_ERR_MODEL,
                          "%s: implausible header length %llu (not a safetensors "
                          "file?)",
                          st->label, (unsigned long long)hlen);
        goto out;
    }
    if (hlen > st->size - 8) {
        rc = cr_error_set(CR_ERR_MODEL,
                          "%s: header length %llu exceeds the file size %zu "
                          "(truncated file?)",
                          st->label, (unsigned long long)hlen, st->size);
        goto out;
    }
    if (st->base[8] != '{') {
        rc = cr_error_set(CR_ERR_MODEL, "%s: header does not start with '{'", st->label);
        goto out;
    }
    st->data = st->base + 8 + hlen;
    st->data_size = st->size - 8 - hlen;

    root = json_loadb((const char *)st->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = cr_error_set(CR_ERR_MODEL, "%s: corrupt header JSON at byte %d: %s", st->label,
                          jerr.position, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = cr_error_set(CR_ERR_MODEL, "%s: header is not a JSON object", st->label);
        goto out;
    }

    size_t n = 0, name_bytes = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = cr_error_set(CR_ERR_MODEL, "%s: __metadata__ is not an object", st->label);
                goto out;
            }
            continue;
        }
        if (!key[0]) {
            rc = cr_error_set(CR_ERR_MODEL, "%s: empty tensor name", st->label);
            goto out;
        }
        n++;
        name_bytes += strlen(key) + 1;
    }
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->names = malloc(name_bytes ? name_bytes : 1);
    by_off = malloc((n ? n : 1) * sizeof *by_off);
    if (!st->tensors || !st->names || !by_off) {
        rc = cr_error_set(CR_ERR_NOMEM, "%s: out of memory for %zu tensor entries", st->label, n);
        goto out;
    }
    size_t i = 0, used = 0;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        enc_st_tensor *t = &st->tensors[i];
        rc = parse_entry(st, key, val, t);
        if (rc)
            goto out;
        size_t kl = strlen(key) + 1;
        memcpy(st->names + used, key, kl);
        t->name = st->names + used;
        used += kl;
        by_off[i] = t;
        i++;
    }
    st->count = n;

    /* Spans must not overlap (empty tensors overlap nothing). */
    qsort(by_off, n, sizeof *by_off, cmp_offset);
    const enc_st_tensor *prev = NULL;
    for (i = 0; i < n; i++) {
        const enc_st_tensor *t = by_off[i];
        if (!t->nbytes)
            continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            rc = cr_error_set(CR_ERR_MODEL, "%s: tensors '%s' and '%s' overlap in the data area",
                              st->label, prev->name, t->name);
            goto out;
        }
        prev = t;
    }
    qsort(st->tensors, n, sizeof *st->tensors, cmp_name);

out:
    free(by_off);
    json_decref(root);
    return rc;
}

static cr_err st_new(enc_st **out, const char *label)
{
    enc_st *st = calloc(1, sizeof *st);
    if (!st)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    st->label = strdup(label);
    if (!st->label) {
        free(st);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    *out = st;
    return CR_OK;
}

cr_err enc_st_open(enc_st **out, const char *path)
{
    cr_err rc;
    enc_st *st = NULL;
    int fd = -1;
    struct stat sb;

    if (!out || !path)
        return cr_error_set(CR_ERR_INVALID, "enc_st_open: NULL argument");
    rc = st_new(&st, path);
    if (rc)
        goto out;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = cr_error_set(CR_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if (sb.st_size < 8) {
        rc = cr_error_set(CR_ERR_MODEL,
                          "%s: file of %lld bytes is too short for a safetensors "
                          "header (truncated?)",
                          path, (long long)sb.st_size);
        goto out;
    }
    st->map_size = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        rc = cr_error_set(CR_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    st->base = st->map;
    st->size = st->map_size;
    rc = parse_header(st);
    if (rc)
        goto out;
    *out = st;
    st = NULL;
out:
    if (fd >= 0)
        close(fd);
    enc_st_close(&st);
    return rc;
}

cr_err enc_st_open_memory(enc_st **out, const void *data, size_t size)
{
    cr_err rc;
    enc_st *st = NULL;
    if (!out || (!data && size))
        return cr_error_set(CR_ERR_INVALID, "enc_st_open_memory: NULL argument");
    rc = st_new(&st, "<memory>");
    if (rc)
        return rc;
    st->base = data;
    st->size = size;
    rc = parse_header(st);
    if (rc) {
        enc_st_close(&st);
        return rc;
    }
    *out = st;
    return CR_OK;
}

void enc_st_close(enc_st **pp)
{
    if (!pp || !*pp)
        return;
    enc_st *st = *pp;
    if (st->map)
        munmap(st->map, st->map_size);
    free(st->tensors);
    free(st->names);
    free(st->label);
    free(st);
    *pp = NULL;
}

size_t enc_st_count(const enc_st *st) { return st ? st->count : 0; }

const enc_st_tensor *enc_st_tensor_at(const enc_st *st, size_t i)
{
    if (!st || i >= st->count)
        return NULL;
    return &st->tensors[i];
}

const enc_st_tensor *enc_st_find(const enc_st *st, const char *name)
{
    if (!st || !name)
        return NULL;
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[mid].name);
        if (!c)
            return &st->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

cr_err enc_st_check(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                    const enc_st_tensor **tp)
{
    const enc_st_tensor *t = enc_st_find(st, name);
    if (!t)
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s' is missing", st ? st->label : "?",
                            name ? name : "(null)");
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = dims[i] < 0 || dims[i] == t->shape[i];
    if (!ok) {
        char want[160], have[160];
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s' has shape %s, expected %s", st->label,
                            name, enc_st_shape_str(have, sizeof have, t->ndim, t->shape),
                            enc_st_shape_str(want, sizeof want, ndim, dims));
    }
    if (tp)
        *tp = t;
    return CR_OK;
}

/* ---- conversion ---- */

float enc_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in fp32 */
        f = (float)m * 5.9604644775390625e-08f;
        return sign ? -f : f;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e + 112u) << 23) | (m << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

float enc_st_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Every fp16 value as a float (256 KB), built once: conversion is then one load. */
static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void)
{
    for (uint32_t h = 0; h < 65536; h++)
        f16_table[h] = enc_st_f16_to_f32((uint16_t)h);
}

/* Drops the whole pages of [p, p+n) from the process (the mapping is private and read-only,
 * so a later access reads the file again). */
static void release_pages(const enc_st *st, const void *p, size_t n)
{
    if (!st->map || !n)
        return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t a = (uintptr_t)p, b = a + n;
    uintptr_t lo = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t hi = b & ~((uintptr_t)pg - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

cr_err enc_st_read_f32(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                       float *dst, size_t dst_count)
{
    const enc_st_tensor *t = NULL;
    cr_err rc = enc_st_check(st, name, ndim, dims, &t);
    if (rc)
        return rc;
    if (t->numel != dst_count)
        return cr_error_set(CR_ERR_INVALID, "%s: tensor '%s' has %llu elements, buffer holds %zu",
                            st->label, name, (unsigned long long)t->numel, dst_count);
    const uint8_t *src = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ENC_ST_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case ENC_ST_F16:
        pthread_once(&f16_once, f16_table_init);
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = f16_table[h];
        }
        break;
    case ENC_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = enc_st_bf16_to_f32(h);
        }
        break;
    case ENC_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        return cr_error_set(CR_ERR_MODEL, "%s: tensor '%s' has dtype %s, not a float type",
                            st->label, name, enc_st_dtype_name(t->dtype));
    }
    release_pages(st, t->data, (size_t)t->nbytes);
    return CR_OK;
}

cr_err enc_st_get_f32(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                      float **out)
{
    const enc_st_tensor *t = NULL;
    cr_err rc = enc_st_check(st, name, ndim, dims, &t);
    if (rc)
        return rc;
    if (t->numel > SIZE_MAX / sizeof(float))
        return cr_error_set(CR_ERR_NOMEM, "tensor '%s' too large", name);
    float *buf = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1);
    if (!buf)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for tensor '%s' (%llu floats)", name,
                            (unsigned long long)t->numel);
    rc = enc_st_read_f32(st, name, ndim, dims, buf, (size_t)t->numel);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return CR_OK;
}
