/* faiss_c_ext.h — the FAISS C API as cirrus uses it: include this one header (never the
 * faiss/c_api headers one by one).
 *
 * Debian's libfaiss-dev 1.7.3 ships the C API headers but no libfaiss_c, and those headers
 * predate search parameters, IDSelectorBitmap/Not/And/Or and buffer (de)serialization. This
 * header includes the system headers and declares the newer functions with the upstream
 * names and signatures; shard/faiss_capi/faiss_compat.cpp implements all of them on top of
 * libfaiss.a (DESIGN §3). Code above cannot tell it from a real libfaiss_c.
 *
 * Conventions (as upstream): functions return 0 on success, -2 on a FAISS exception, -4 on
 * another C++ exception, -1 on anything else; the message is read with
 * faiss_get_last_error() on the same thread (NULL when no call has failed yet). Objects are
 * freed with their own faiss_*_free(). A selector or search-parameters object only borrows
 * the selector / bitmap it is given: keep those alive while it is in use.
 *
 * The system headers are C-compatible but not -Wstrict-prototypes clean
 * (faiss_get_last_error()), and they define unprefixed names (`OK`, `idx_t`,
 * `METRIC_L2`): don't define those names in code that includes this header.
 */
#ifndef CIRRUS_FAISS_C_EXT_H
#define CIRRUS_FAISS_C_EXT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__cplusplus)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#endif
#include <faiss/c_api/faiss_c.h>
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#if defined(CIRRUS_SYSTEM_FAISS_C) && defined(__has_include)
#if __has_include(<faiss/c_api/IndexHNSW_c.h>)
#include <faiss/c_api/IndexHNSW_c.h>
#define CIRRUS_FAISS_C_HAS_UPSTREAM_EXT 1
#endif
#endif
#if defined(__GNUC__) && !defined(__cplusplus)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CIRRUS_FAISS_C_HAS_UPSTREAM_EXT

#ifndef FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST
/// Dynamic downcast of search parameters; NULL when `sp` is not of that class.
#define FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST(clazz) \
    Faiss##clazz *faiss_##clazz##_cast(FaissSearchParameters *);
#endif

/* ---- Index_c.h (upstream >= 1.7.4) ---------------------------------------------------- */

/// Parameters for one search call (base class): an optional ID selector.
FAISS_DECLARE_CLASS(SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParameters)

/// New search parameters restricting results to ids accepted by `sel` (may be NULL).
int faiss_SearchParameters_new(FaissSearchParameters **p_sp, FaissIDSelector *sel);

/** Same as faiss_Index_search, with per-call parameters (`params` may be NULL). The concrete
 * class of `params` must match the index (SearchParametersIVF for IVF indexes,
 * SearchParametersHNSW for HNSW, SearchParameters for the others). */
int faiss_Index_search_with_params(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                                   const FaissSearchParameters *params, float *distances,
                                   idx_t *labels);

/* ---- IndexIVF_c.h --------------------------------------------------------------------- */

FAISS_DECLARE_CLASS_INHERITED(SearchParametersIVF, SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParametersIVF)
FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST(SearchParametersIVF)

int faiss_SearchParametersIVF_new(FaissSearchParametersIVF **p_sp);
int faiss_SearchParametersIVF_new_with(FaissSearchParametersIVF **p_sp, FaissIDSelector *sel,
                                       size_t nprobe, size_t max_codes);

FAISS_DECLARE_GETTER(SearchParametersIVF, const FaissIDSelector *, sel)
FAISS_DECLARE_GETTER_SETTER(SearchParametersIVF, size_t, nprobe)
FAISS_DECLARE_GETTER_SETTER(SearchParametersIVF, size_t, max_codes)

/* ---- IndexHNSW_c.h -------------------------------------------------------------------- */

FAISS_DECLARE_CLASS_INHERITED(SearchParametersHNSW, SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParametersHNSW)
FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST(SearchParametersHNSW)

/* FAISS 1.7.3 quirk: the effective efSearch of a search is min(params efSearch, the index's
 * own efSearch field), so raise the field once (ParameterSpace "efSearch") and let the
 * per-call parameter govern. */
int faiss_SearchParametersHNSW_new(FaissSearchParametersHNSW **p_sp);
int faiss_SearchParametersHNSW_new_with(FaissSearchParametersHNSW **p_sp, FaissIDSelector *sel,
                                        int efSearch);

FAISS_DECLARE_GETTER(SearchParametersHNSW, const FaissIDSelector *, sel)
FAISS_DECLARE_GETTER_SETTER(SearchParametersHNSW, int, efSearch)

/* ---- impl/AuxIndexStructures_c.h ------------------------------------------------------ */

/** One bit per id: id i is selected iff i / 8 < n and bit (i % 8) of bitmap[i / 8] is set
 * (n is the size of `bitmap` in BYTES). The bitmap is borrowed, not copied. */
FAISS_DECLARE_CLASS_INHERITED(IDSelectorBitmap, IDSelector)
FAISS_DECLARE_DESTRUCTOR(IDSelectorBitmap)
FAISS_DECLARE_GETTER(IDSelectorBitmap, size_t, n)
FAISS_DECLARE_GETTER(IDSelectorBitmap, const uint8_t *, bitmap)
int faiss_IDSelectorBitmap_new(FaissIDSelectorBitmap **p_sel, size_t n, const uint8_t *bitmap);

/// Selects the ids that `sel` rejects (borrows `sel`).
FAISS_DECLARE_CLASS_INHERITED(IDSelectorNot, IDSelector)
int faiss_IDSelectorNot_new(FaissIDSelectorNot **p_sel, const FaissIDSelector *sel);

/// Selects the ids both `lhs_sel` and `rhs_sel` select (borrows both).
FAISS_DECLARE_CLASS_INHERITED(IDSelectorAnd, IDSelector)
int faiss_IDSelectorAnd_new(FaissIDSelectorAnd **p_sel, const FaissIDSelector *lhs_sel,
                            const FaissIDSelector *rhs_sel);

/// Selects the ids either `lhs_sel` or `rhs_sel` selects (borrows both).
FAISS_DECLARE_CLASS_INHERITED(IDSelectorOr, IDSelector)
int faiss_IDSelectorOr_new(FaissIDSelectorOr **p_sel, const FaissIDSelector *lhs_sel,
                           const FaissIDSelector *rhs_sel);

#endif /* !CIRRUS_FAISS_C_HAS_UPSTREAM_EXT */

#ifndef FAISS_IO_FLAG_MMAP
#define FAISS_IO_FLAG_MMAP 1
#define FAISS_IO_FLAG_READ_ONLY 2
#endif

/* ---- index_io_c_ex.h (as in the blevesearch/faiss C API, which added these) ----------- */

/** Serializes `idx` into a new malloc'ed buffer: on success *buf (free with free()) holds
 * *buf_size bytes. */
int faiss_write_index_buf(const FaissIndex *idx, size_t *buf_size, unsigned char **buf);

/** Deserializes an index from `limit` bytes at `buf` (not retained after the call). */
int faiss_read_index_buf(const unsigned char *buf, size_t limit, int io_flags,
                         FaissIndex **p_out);

/* ---- cirrus extension (no upstream C API has it) ---------------------------------------- */

/** Sets efConstruction of the HNSW inside `idx` (an IndexHNSW, possibly under an IDMap);
 * returns 1 when `idx` holds no HNSW (nothing set), 0 when set. */
int faiss_IndexHNSW_set_efConstruction_ext(FaissIndex *idx, int ef_construction);

/** Turns off polysemous training on the PQ inside `idx` (IndexIVFPQ or IndexPQ, possibly
 * under an IDMap or a pre-transform), which index_factory turns on for every "PQn" without
 * "np". It only relabels each sub-quantizer's centroids so that Hamming distances between
 * codes follow the real ones, for polysemous search, which cirrus never runs; the distances
 * a search computes are the same either way. It cost minutes per 100k training vectors.
 * Returns 1 when `idx` holds no PQ (nothing set), 0 when set. */
int faiss_Index_skip_polysemous_training_ext(FaissIndex *idx);

#ifdef __cplusplus
}
#endif

#endif
