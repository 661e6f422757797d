/* safetensors.h — read-only access to .safetensors weight files.
 *
 *     enc_st *st = NULL;
 *     float *w = NULL;
 *     int64_t shape[2] = {512, 768};
 *     if (enc_st_open(&st, "model.safetensors") == CR_OK &&
 *         enc_st_get_f32(st, "visual.proj", 2, shape, &w) == CR_OK) { ...; free(w); }
 *     enc_st_close(&st);
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}), then the data area; offsets are relative to the data area.
 *
 * The file is mapped read-only (mmap), never read whole. The header is validated strictly at
 * open: header length against the file size, JSON syntax (duplicate keys rejected, nothing
 * after the object but the spaces the format allows), known dtypes, shapes whose element count
 * times the dtype size equals the offset span, spans inside the data area and not overlapping
 * each other. A file that passes open() can be read without any further bounds check. Failures
 * return CR_ERR_MODEL (CR_ERR_IO when the file cannot be opened or mapped, CR_ERR_NOMEM) with a
 * message naming the file and the problem (see cr_error_message()).
 *
 * Thread rules: an open enc_st is read-only; any number of threads may call the lookup and
 * read functions at once. enc_st_close() must not race with them.
 */
#ifndef ENC_SAFETENSORS_H
#define ENC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Most dimensions a tensor may have; files with more are rejected. */
#define ENC_ST_MAX_DIMS 8
/* Largest header accepted (the reference implementation's limit). */
#define ENC_ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

typedef enum enc_st_dtype {
    ENC_ST_BOOL,
    ENC_ST_U8,
    ENC_ST_I8,
    ENC_ST_F8_E4M3,
    ENC_ST_F8_E5M2,
    ENC_ST_I16,
    ENC_ST_U16,
    ENC_ST_F16,
    ENC_ST_BF16,
    ENC_ST_I32,
    ENC_ST_U32,
    ENC_ST_F32,
    ENC_ST_I64,
    ENC_ST_U64,
    ENC_ST_F64,
    ENC_ST_DTYPE_COUNT
} enc_st_dtype;

/* One tensor of an open file. Every pointer lives until enc_st_close(). `data` is NOT
 * necessarily aligned for its dtype (offsets are arbitrary): copy with memcpy. */
typedef struct enc_st_tensor {
    const char *name;
    enc_st_dtype dtype;
    int ndim;
    int64_t shape[ENC_ST_MAX_DIMS];
    uint64_t numel;   /* product of shape (1 for a scalar, ndim 0) */
    uint64_t offset;  /* begin, relative to the data area */
    uint64_t nbytes;  /* end - begin == numel * dtype size */
    const void *data; /* first byte in the mapping */
} enc_st_tensor;

typedef struct enc_st enc_st;

/* Maps `path` and validates its header. Writes *out only on success. */
cr_err enc_st_open(enc_st **out, const char *path);

/* Same as enc_st_open() over `size` bytes at `data`, which stay borrowed: they must outlive
 * the handle. Used by tests and for weights embedded in memory. */
cr_err enc_st_open_memory(enc_st **out, const void *data, size_t size);

/* Unmaps and frees; NULL-safe; sets *pp to NULL. Tensor pointers die with the handle. */
void enc_st_close(enc_st **pp);

/* Number of tensors (the __metadata__ entry is not one). */
size_t enc_st_count(const enc_st *st);

/* The i-th tensor in name order, i < enc_st_count(); NULL when out of range. */
const enc_st_tensor *enc_st_tensor_at(const enc_st *st, size_t i);

/* The tensor called `name`, or NULL (no error recorded) when absent. */
const enc_st_tensor *enc_st_find(const enc_st *st, const char *name);

/* Canonical dtype name ("F16"), and element size in bytes. */
const char *enc_st_dtype_name(enc_st_dtype dt);
size_t enc_st_dtype_size(enc_st_dtype dt);

/* Formats a shape as "[a, b, c]" into buf (always NUL-terminated); returns buf. A negative
 * entry prints as "*". */
const char *enc_st_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

/* Checks that tensor `name` exists and has shape `dims` (ndim entries; an entry < 0 matches
 * any size). CR_ERR_MODEL naming the tensor (and both shapes) otherwise. `t` (optional)
 * receives the tensor. */
cr_err enc_st_check(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                    const enc_st_tensor **t);

/* Converts tensor `name` (F32, F16, BF16 or F64) to fp32 into `dst`, which holds `dst_count`
 * floats (must equal the tensor's element count). Shape checked as enc_st_check(). When the
 * file is mapped, the pages of the tensor are released from the process afterwards (they are
 * read back from the file on a later access), so that converting a whole model does not keep
 * both copies resident. */
cr_err enc_st_read_f32(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                       float *dst, size_t dst_count);

/* Like enc_st_read_f32() into a fresh malloc'd array: *out (caller frees with free()) is
 * written only on success. */
cr_err enc_st_get_f32(const enc_st *st, const char *name, int ndim, const int64_t *dims,
                      float **out);

/* fp16 / bf16 bit patterns to float (exact: subnormals, infinities and NaN preserved). */
float enc_st_f16_to_f32(uint16_t h);
float enc_st_bf16_to_f32(uint16_t h);

#endif
