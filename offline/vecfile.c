#include "offline/vecfile.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
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
    int owned; /* map is a malloc'ed copy (HDF5), not a mapping */
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

/* "FILE.hdf5" or "FILE.hdf5:DATASET" (also .h5): the file name and the dataset ("train" by
 * default); 0 when `path` names no HDF5 file. */
static int hdf5_split(const char *path, char *file, size_t cap, const char **dataset)
{
    static const char *exts[] = {".hdf5", ".h5"};
    for (size_t e = 0; e < 2; e++) {
        const char *at = strstr(path, exts[e]);
        size_t n;
        if (!at)
            continue;
        n = (size_t)(at - path) + strlen(exts[e]);
        if ((path[n] != '\0' && path[n] != ':') || n >= cap)
            continue;
        memcpy(file, path, n);
        file[n] = '\0';
        *dataset = path[n] == ':' && path[n + 1] ? path + n + 1 : "train";
        return 1;
    }
    return 0;
}

/* Reads a 2-D float or integer dataset of an ann-benchmarks file (train, test, neighbors,
 * distances) into memory as float32 or int32 rows. */
static cr_err open_hdf5(cr_vecfile *f, const char *file, const char *dataset)
{
    hid_t fid = -1, did = -1, sid = -1, tid = -1;
    hsize_t dims[2] = {0, 0};
    cr_err rc = CR_OK;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become our messages, not stderr */
    fid = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: cannot open as HDF5", file);
        goto out;
    }
    did = H5Dopen2(fid, dataset, H5P_DEFAULT);
    if (did < 0) {
        rc = cr_error_set(CR_ERR_INVALID, "%s: no dataset '%s'", file, dataset);
        goto out;
    }
    sid = H5Dget_space(did);
    tid = H5Dget_type(did);
    if (sid < 0 || tid < 0 || H5Sget_simple_extent_ndims(sid) != 2 ||
        H5Sget_simple_extent_dims(sid, dims, NULL) != 2 || dims[0] == 0 || dims[1] == 0 ||
        dims[1] > 1 << 20) {
        rc = cr_error_set(CR_ERR_INVALID, "%s:%s: not a non-empty 2-D dataset", file, dataset);
        goto out;
    }
    f->is_int = H5Tget_class(tid) == H5T_INTEGER;
    if (!f->is_int && H5Tget_class(tid) != H5T_FLOAT) {
        rc = cr_error_set(CR_ERR_INVALID, "%s:%s: neither float nor integer", file, dataset);
        goto out;
    }
    f->rows = (size_t)dims[0];
    f->dim = (size_t)dims[1];
    f->row_bytes = 4 * f->dim;
    f->map_len = f->rows * f->row_bytes;
    f->map = malloc(f->map_len);
    f->owned = 1;
    if (!f->map) {
        rc = cr_error_set(CR_ERR_NOMEM, "%s:%s: %zu bytes", file, dataset, f->map_len);
        goto out;
    }
    if (H5Dread(did, f->is_int ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                H5P_DEFAULT, (void *)f->map) < 0)
        rc = cr_error_set(CR_ERR_IO, "%s:%s: read failed", file, dataset);
out:
    if (tid >= 0)
        H5Tclose(tid);
    if (sid >= 0)
        H5Sclose(sid);
    if (did >= 0)
        H5Dclose(did);
    if (fid >= 0)
        H5Fclose(fid);
    return rc;
}

cr_err cr_vecfile_open(cr_vecfile **out, const char *path)
{
    char h5file[4096];
    const char *dataset = NULL;
    cr_vecfile *f = calloc(1, sizeof *f);
    struct stat st;
    cr_err rc = CR_OK;
    int fd = -1;

    if (!f)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (hdf5_split(path, h5file, sizeof h5file, &dataset)) {
        rc = open_hdf5(f, h5file, dataset);
        goto done;
    }
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
        rc = cr_error_set(CR_ERR_INVALID, "%s: unknown vector file type (.fvecs, .ivecs, .npy, "
                                          ".hdf5[:dataset])",
                          path);
    }
done:
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
    if (f->map && f->owned)
        free((void *)f->map);
    else if (f->map)
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
