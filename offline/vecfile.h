/* vecfile.h — readers and writers for the standard vector file formats:
 *   .fvecs / .ivecs (per row: int32 dim, then dim float32 / int32 values, little-endian),
 *   .npy (NumPy v1/v2/v3 header, '<f4' or '<i4', C order, 2-D),
 *   .hdf5 / .h5 as ann-benchmarks writes them: "FILE.hdf5:DATASET" picks a 2-D float or int
 *   dataset (train, test, neighbors, distances), "FILE.hdf5" alone means train; read into
 *   memory (libhdf5 is used here only).
 * Files are mapped read-only; rows are read in place. */
#ifndef CR_VECFILE_H
#define CR_VECFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct cr_vecfile cr_vecfile;

/* Opens `path` by extension (.fvecs, .ivecs, .npy, .hdf5[:dataset]). Validates that every row has the same
 * dimension and that the file size matches; CR_ERR_INVALID with a message otherwise. */
cr_err cr_vecfile_open(cr_vecfile **out, const char *path);
void cr_vecfile_close(cr_vecfile **pp);

size_t cr_vecfile_rows(const cr_vecfile *f);
size_t cr_vecfile_dim(const cr_vecfile *f);
int cr_vecfile_is_int(const cr_vecfile *f); /* 1 for .ivecs or '<i4' */

/* Copies row i (dim values) into out. */
void cr_vecfile_row_f32(const cr_vecfile *f, size_t i, float *out);
void cr_vecfile_row_i32(const cr_vecfile *f, size_t i, int32_t *out);

/* Writes `rows` rows of `dim` values to an .fvecs / .ivecs file. */
cr_err cr_fvecs_write(const char *path, const float *data, size_t rows, size_t dim);
cr_err cr_ivecs_write(const char *path, const int32_t *data, size_t rows, size_t dim);

#endif
