#include "offline/vecfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct cr_vecfile {
    const unsigned char *map;
    size_t map_len;
    size_t rows, dim;
    size_t data_off;  /* first row */
    size_t row_bytes; /* stride */
    size_t skip;      /* bytes before each row's values (4 for the *vecs dim header) */
    int is_int;
};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static cr_err parse_vecs(cr_vecfile *f, const char *path)
{
    int32_t d;
    if (f->map_len < 4)
        return cr_error_set(CR_ERR_INVALID, "%s: empty or truncated file", path);
    memcpy(&d, f->map, 4);
    if (d <= 0 || d > 1 << 20)
        return cr_error_set(CR_ERR_INVALID, "%s: bad dimension %d in the first row", path, d);
    f->dim = (size_t)d;
    f->skip = 4;
    f->row_bytes = 4 + 4 * f->dim;
    if (f->map_len % f->row_bytes)
        return cr_error_set(CR_ERR_INVALID, "%s: size %zu is not a multiple of the row size %zu",
                            path, f->map_len, f->row_bytes);
    f->rows = f->map_len / f->row_bytes;
    for (size_t i = 0; i < f->rows; i++) {
        memcpy(&d, f->map + i * f->row_bytes, 4);
        if ((size_t)d != f->dim)
            return cr_error_set(CR_ERR_INVALID, "%s: row %zu has dimension %d, expected %zu",
                                path, i, d, f->dim);
    }
    return CR_OK;
}

/* NumPy header: magic, version, header length, then a Python dict literal. */
static cr_err parse_npy(cr_vecfile *f, const char *path)
{
    size_t hlen, hoff;
    char header[4096];
    const char *p;
    unsigned long r = 0, c = 0;

    if (f->map_len < 10 || memcmp(f->map, "\x93NUMPY", 6) != 0)
        return cr_error_set(CR_ERR_INVALID, "%s: not a .npy file", path);
    if (f->map[6] == 1) {
        hlen = (size_t)f->map[8] | (size_t)f->map[9] << 8;
        hoff = 10;
    } else {
        if (f->map_len < 12)
            return cr_error_set(CR_ERR_INVALID, "%s: truncated header", path);
        hlen = (size_t)f->map[8] | (size_t)f->map[9] << 8 | (size_t)f->map[10] << 16 |
               (size_t)f->map[11] << 24;
        hoff = 12;
    }
    if (hlen >= sizeof header || hoff + hlen > f->map_len)
        return cr_error_set(CR_ERR_INVALID, "%s: bad header length", path);
    memcpy(header, f->map + hoff, hlen);
    header[hlen] = '\0';
    if (strstr(header, "'<f4'"))
        f->is_int = 0;
    else if (strstr(header, "'<i4'"))
        f->is_int = 1;
    else
        return cr_error_set(CR_ERR_INVALID, "%s: only '<f4' and '<i4' arrays are supported",
                            path);
    if (strstr(header, "'fortran_order': True"))
        return cr_error_set(CR_ERR_INVALID, "%s: Fortran-order arrays are not supported", path);
    p = strstr(header, "'shape':");
    if (!p || sscanf(p, "'shape': (%lu, %lu)", &r, &c) != 2 || c == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: expected a 2-D shape", path);
    f->rows = r;
    f->dim = c;
    f->data_off = hoff + hlen;
    f->row_bytes = 4 * f->dim;
    f->skip = 0;
    if (f->rows > (f->map_len - f->data_off) / f->row_bytes)
        return cr_error_set(CR_ERR_INVALID, "%s: file is shorter than its shape says", path);
    return CR_OK;
}

cr_err cr_vecfile_open(cr_vecfile **out, const char *path)
{
    cr_vecfile *f = calloc(1, sizeof *f);
    struct stat st;
    cr_err rc = CR_OK;
    int fd = -1;

    if (!f)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    f->map_len = (size_t)st.st_size;
    if (f->map_len) {
        void *m = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = cr_error_set(CR_ERR_IO, "%s: mmap: %s", path, strerror(errno));
            goto out;
        }
        f->map = m;
    }
    if (ends_with(path, ".fvecs") || ends_with(path, ".ivecs")) {
        f->is_int = ends_with(path, ".ivecs");
        rc = parse_vecs(f, path);
    } else if (ends_with(path, ".npy")) {
        rc = parse_npy(f, path);
    } else {
        rc = cr_error_set(CR_ERR_INVALID, "%s: unknown vector file type (.fvecs, .ivecs, .npy)",
                          path);
    }
    if (!rc) {
        *out = f;
        f = NULL;
    }
out:
    if (fd >= 0)
        close(fd);
    cr_vecfile_close(&f);
    return rc;
}

void cr_vecfile_close(cr_vecfile **pp)
{
    cr_vecfile *f = pp ? *pp : NULL;
    if (!f)
        return;
    if (f->map)
        munmap((void *)f->map, f->map_len);
    free(f);
    *pp = NULL;
}

size_t cr_vecfile_rows(const cr_vecfile *f)
{
    return f->rows;
}

size_t cr_vecfile_dim(const cr_vecfile *f)
{
    return f->dim;
}

int cr_vecfile_is_int(const cr_vecfile *f)
{
    return f->is_int;
}

void cr_vecfile_row_f32(const cr_vecfile *f, size_t i, float *out)
{
    const unsigned char *row = f->map + f->data_off + i * f->row_bytes + f->skip;
    if (!f->is_int) {
        memcpy(out, row, f->dim * 4);
        return;
    }
    for (size_t j = 0; j < f->dim; j++) {
        int32_t v;
        memcpy(&v, row + 4 * j, 4);
        out[j] = (float)v;
    }
}

void cr_vecfile_row_i32(const cr_vecfile *f, size_t i, int32_t *out)
{
    const unsigned char *row = f->map + f->data_off + i * f->row_bytes + f->skip;
    if (f->is_int) {
        memcpy(out, row, f->dim * 4);
        return;
    }
    for (size_t j = 0; j < f->dim; j++) {
        float v;
        memcpy(&v, row + 4 * j, 4);
        out[j] = (int32_t)v;
    }
}

static cr_err vecs_write(const char *path, const void *data, size_t rows, size_t dim)
{
    FILE *fp = fopen(path, "wb");
    int32_t d = (int32_t)dim;
    cr_err rc = CR_OK;
    if (!fp)
        return cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
    for (size_t i = 0; i < rows && !rc; i++)
        if (fwrite(&d, 4, 1, fp) != 1 ||
            fwrite((const unsigned char *)data + i * dim * 4, 4, dim, fp) != dim)
            rc = cr_error_set(CR_ERR_IO, "%s: write failed", path);
    if (fclose(fp) != 0 && !rc)
        rc = cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
    return rc;
}

cr_err cr_fvecs_write(const char *path, const float *data, size_t rows, size_t dim)
{
    return vecs_write(path, data, rows, dim);
}

cr_err cr_ivecs_write(const char *path, const int32_t *data, size_t rows, size_t dim)
{
    return vecs_write(path, data, rows, dim);
}
