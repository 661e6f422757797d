// faiss_compat.cpp — the subset of the FAISS C API cirrus calls, with the upstream names and
// signatures, implemented over libfaiss.a (Debian ships the C API headers but no libfaiss_c).
// See faiss_c_ext.h for the conventions. Every entry point catches every C++ exception,
// keeps its message for faiss_get_last_error() (per thread) and returns -2 (FaissException),
// -4 (other std::exception) or -1 (anything else), like upstream.
//
// Behaviour added over 1.7.3 so that callers see what newer FAISS does:
//  - IndexIDMap / IndexIDMap2 accept search parameters: the selector is applied to the
//    external ids (upstream's IDSelectorTranslated), the sub-index gets the rest.

#include "faiss_c_ext.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

using fidx_t = faiss::Index::idx_t;

thread_local std::string last_error;
thread_local bool has_error = false;

int set_error(const char *msg, int code)
{
    try {
        last_error = msg ? msg : "unknown error";
        has_error = true;
    } catch (...) {
        has_error = false; // out of memory while recording: at least report the code
    }
    return code;
}

// Runs `fn` and translates exceptions into the upstream return codes.
template <typename F> int guarded(F &&fn)
{
    try {
        fn();
        return 0;
    } catch (faiss::FaissException &e) {
        return set_error(e.what(), -2);
    } catch (std::exception &e) {
        return set_error(e.what(), -4);
    } catch (...) {
        return set_error("Unknown error", -1);
    }
}

faiss::Index *IX(FaissIndex *p) { return reinterpret_cast<faiss::Index *>(p); }
const faiss::Index *IX(const FaissIndex *p) { return reinterpret_cast<const faiss::Index *>(p); }
const faiss::IDSelector *SEL(const FaissIDSelector *p)
{
    return reinterpret_cast<const faiss::IDSelector *>(p);
}
faiss::SearchParameters *SP(FaissSearchParameters *p)
{
    return reinterpret_cast<faiss::SearchParameters *>(p);
}
const faiss::SearchParameters *SP(const FaissSearchParameters *p)
{
    return reinterpret_cast<const faiss::SearchParameters *>(p);
}

// Selectors 1.7.3 does not have (IDSelectorNot is there but owns nothing either way).
struct SelAnd : faiss::IDSelector {
    const faiss::IDSelector *a, *b;
    SelAnd(const faiss::IDSelector *x, const faiss::IDSelector *y) : a(x), b(y) {}
    bool is_member(fidx_t id) const override { return a->is_member(id) && b->is_member(id); }
};
struct SelOr : faiss::IDSelector {
    const faiss::IDSelector *a, *b;
    SelOr(const faiss::IDSelector *x, const faiss::IDSelector *y) : a(x), b(y) {}
    bool is_member(fidx_t id) const override { return a->is_member(id) || b->is_member(id); }
};
// Sub-index position -> external id, then the caller's selector.
struct SelTranslated : faiss::IDSelector {
    const std::vector<fidx_t> *id_map;
    const faiss::IDSelector *sel;
    SelTranslated(const std::vector<fidx_t> *m, const faiss::IDSelector *s) : id_map(m), sel(s) {}
    bool is_member(fidx_t i) const override
    {
        return i >= 0 && (size_t)i < id_map->size() && sel->is_member((*id_map)[i]);
    }
};

void search_params(const faiss::Index *index, fidx_t n, const float *x, fidx_t k, float *dis,
                   fidx_t *lab, const faiss::SearchParameters *params);

// IndexIDMap::search of 1.7.3 refuses parameters: search the sub-index with a copy of the
// parameters whose selector works on sub-index positions, then map labels to ids.
template <typename P>
void search_idmap_as(const faiss::IndexIDMap *m, const P *p, fidx_t n, const float *x, fidx_t k,
                     float *dis, fidx_t *lab)
{
    P copy(*p);
    std::unique_ptr<SelTranslated> tr;
    if (p->sel) {
        tr.reset(new SelTranslated(&m->id_map, p->sel));
        copy.sel = tr.get();
    }
    search_params(m->index, n, x, k, dis, lab, &copy);
    for (fidx_t i = 0; i < n * k; i++) {
        if (lab[i] >= 0)
            lab[i] = m->id_map.at((size_t)lab[i]);
    }
}

void search_params(const faiss::Index *index, fidx_t n, const float *x, fidx_t k, float *dis,
                   fidx_t *lab, const faiss::SearchParameters *params)
{
    const faiss::IndexIDMap *m = dynamic_cast<const faiss::IndexIDMap *>(index);
    if (!params || !m) {
        index->search(n, x, k, dis, lab, params);
        return;
    }
    if (auto *pi = dynamic_cast<const faiss::SearchParametersIVF *>(params))
        search_idmap_as(m, pi, n, x, k, dis, lab);
    else if (auto *ph = dynamic_cast<const faiss::SearchParametersHNSW *>(params))
        search_idmap_as(m, ph, n, x, k, dis, lab);
    else
        search_idmap_as(m, params, n, x, k, dis, lab);
}

// Growing malloc'ed buffer for faiss_write_index_buf (handed to the caller as is).
struct MallocWriter : faiss::IOWriter {
    unsigned char *buf = nullptr;
    size_t size = 0, cap = 0;
    ~MallocWriter() override { std::free(buf); }
    size_t operator()(const void *ptr, size_t sz, size_t nitems) override
    {
        size_t bytes = sz * nitems;
        if (bytes == 0)
            return nitems;
        if (size + bytes > cap) {
            size_t ncap = cap ? cap : 4096;
            while (ncap < size + bytes)
                ncap *= 2;
            void *nb = std::realloc(buf, ncap);
            if (!nb)
                throw std::bad_alloc();
            buf = static_cast<unsigned char *>(nb);
            cap = ncap;
        }
        std::memcpy(buf + size, ptr, bytes);
        size += bytes;
        return nitems;
    }
};

// Reads from a caller's buffer without copying it.
struct SpanReader : faiss::IOReader {
    const unsigned char *buf;
    size_t size, pos = 0;
    SpanReader(const unsigned char *b, size_t n) : buf(b), size(n) {}
    size_t operator()(void *ptr, size_t sz, size_t nitems) override
    {
        if (sz == 0 || pos >= size)
            return 0;
        size_t avail = (size - pos) / sz;
        size_t got = nitems < avail ? nitems : avail;
        if (got)
            std::memcpy(ptr, buf + pos, got * sz);
        pos += got * sz;
        return got;
    }
};

} // namespace

extern "C" {

/* ---- errors ----------------------------------------------------------------------------- */

const char *faiss_get_last_error() { return has_error ? last_error.c_str() : nullptr; }

/* ---- Index ------------------------------------------------------------------------------ */

void faiss_Index_free(FaissIndex *obj) { delete IX(obj); }

int faiss_Index_d(const FaissIndex *index) { return (int)IX(index)->d; }

int faiss_Index_is_trained(const FaissIndex *index) { return IX(index)->is_trained ? 1 : 0; }

idx_t faiss_Index_ntotal(const FaissIndex *index) { return IX(index)->ntotal; }

FaissMetricType faiss_Index_metric_type(const FaissIndex *index)
{
    return (FaissMetricType)IX(index)->metric_type;
}

int faiss_Index_verbose(const FaissIndex *index) { return IX(index)->verbose ? 1 : 0; }

void faiss_Index_set_verbose(FaissIndex *index, int verbose) { IX(index)->verbose = verbose != 0; }

int faiss_Index_train(FaissIndex *index, idx_t n, const float *x)
{
    return guarded([&] { IX(index)->train(n, x); });
}

int faiss_Index_add(FaissIndex *index, idx_t n, const float *x)
{
    return guarded([&] { IX(index)->add(n, x); });
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids)
{
    return guarded([&] { IX(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                       float *distances, idx_t *labels)
{
    return guarded([&] { IX(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_search_with_params(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                                   const FaissSearchParameters *params, float *distances,
                                   idx_t *labels)
{
    return guarded([&] { search_params(IX(index), n, x, k, distances, labels, SP(params)); });
}

int faiss_Index_reset(FaissIndex *index)
{
    return guarded([&] { IX(index)->reset(); });
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel, size_t *n_removed)
{
    return guarded([&] {
        size_t r = IX(index)->remove_ids(*SEL(sel));
        if (n_removed)
            *n_removed = r;
    });
}

int faiss_Index_reconstruct(const FaissIndex *index, idx_t key, float *recons)
{
    return guarded([&] { IX(index)->reconstruct(key, recons); });
}

int faiss_Index_reconstruct_n(const FaissIndex *index, idx_t i0, idx_t ni, float *recons)
{
    return guarded([&] { IX(index)->reconstruct_n(i0, ni, recons); });
}

/* ---- SearchParameters ------------------------------------------------------------------- */

void faiss_SearchParameters_free(FaissSearchParameters *obj) { delete SP(obj); }

int faiss_SearchParameters_new(FaissSearchParameters **p_sp, FaissIDSelector *sel)
{
    return guarded([&] {
        auto *sp = new faiss::SearchParameters;
        sp->sel = const_cast<faiss::IDSelector *>(SEL(sel));
        *p_sp = reinterpret_cast<FaissSearchParameters *>(sp);
    });
}

void faiss_SearchParametersIVF_free(FaissSearchParametersIVF *obj) { delete SP(obj); }

FaissSearchParametersIVF *faiss_SearchParametersIVF_cast(FaissSearchParameters *sp)
{
    return reinterpret_cast<FaissSearchParametersIVF *>(
            dynamic_cast<faiss::SearchParametersIVF *>(SP(sp)));
}

int faiss_SearchParametersIVF_new(FaissSearchParametersIVF **p_sp)
{
    return guarded([&] {
        *p_sp = reinterpret_cast<FaissSearchParametersIVF *>(new faiss::SearchParametersIVF);
    });
}

int faiss_SearchParametersIVF_new_with(FaissSearchParametersIVF **p_sp, FaissIDSelector *sel,
                                       size_t nprobe, size_t max_codes)
{
    return guarded([&] {
        auto *sp = new faiss::SearchParametersIVF;
        sp->sel = const_cast<faiss::IDSelector *>(SEL(sel));
        sp->nprobe = nprobe;
        sp->max_codes = max_codes;
        *p_sp = reinterpret_cast<FaissSearchParametersIVF *>(sp);
    });
}

static const faiss::SearchParametersIVF *SPI(const FaissSearchParametersIVF *p)
{
    return static_cast<const faiss::SearchParametersIVF *>(SP(p));
}

const FaissIDSelector *faiss_SearchParametersIVF_sel(const FaissSearchParametersIVF *sp)
{
    return reinterpret_cast<const FaissIDSelector *>(SPI(sp)->sel);
}

size_t faiss_SearchParametersIVF_nprobe(const FaissSearchParametersIVF *sp)
{
    return SPI(sp)->nprobe;
}

void faiss_SearchParametersIVF_set_nprobe(FaissSearchParametersIVF *sp, size_t nprobe)
{
    const_cast<faiss::SearchParametersIVF *>(SPI(sp))->nprobe = nprobe;
}

size_t faiss_SearchParametersIVF_max_codes(const FaissSearchParametersIVF *sp)
{
    return SPI(sp)->max_codes;
}

void faiss_SearchParametersIVF_set_max_codes(FaissSearchParametersIVF *sp, size_t max_codes)
{
    const_cast<faiss::SearchParametersIVF *>(SPI(sp))->max_codes = max_codes;
}

void faiss_SearchParametersHNSW_free(FaissSearchParametersHNSW *obj) { delete SP(obj); }

FaissSearchParametersHNSW *faiss_SearchParametersHNSW_cast(FaissSearchParameters *sp)
{
    return reinterpret_cast<FaissSearchParametersHNSW *>(
            dynamic_cast<faiss::SearchParametersHNSW *>(SP(sp)));
}

int faiss_SearchParametersHNSW_new(FaissSearchParametersHNSW **p_sp)
{
    return guarded([&] {
        *p_sp = reinterpret_cast<FaissSearchParametersHNSW *>(new faiss::SearchParametersHNSW);
    });
}

int faiss_SearchParametersHNSW_new_with(FaissSearchParametersHNSW **p_sp, FaissIDSelector *sel,
                                        int efSearch)
{
    return guarded([&] {
        auto *sp = new faiss::SearchParametersHNSW;
        sp->sel = const_cast<faiss::IDSelector *>(SEL(sel));
        sp->efSearch = efSearch;
        *p_sp = reinterpret_cast<FaissSearchParametersHNSW *>(sp);
    });
}

static const faiss::SearchParametersHNSW *SPH(const FaissSearchParametersHNSW *p)
{
    return static_cast<const faiss::SearchParametersHNSW *>(SP(p));
}

const FaissIDSelector *faiss_SearchParametersHNSW_sel(const FaissSearchParametersHNSW *sp)
{
    return reinterpret_cast<const FaissIDSelector *>(SPH(sp)->sel);
}

int faiss_SearchParametersHNSW_efSearch(const FaissSearchParametersHNSW *sp)
{
    return SPH(sp)->efSearch;
}

void faiss_SearchParametersHNSW_set_efSearch(FaissSearchParametersHNSW *sp, int efSearch)
{
    const_cast<faiss::SearchParametersHNSW *>(SPH(sp))->efSearch = efSearch;
}

/* ---- ID selectors ----------------------------------------------------------------------- */

void faiss_IDSelector_free(FaissIDSelector *obj)
{
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

int faiss_IDSelector_is_member(const FaissIDSelector *sel, idx_t id)
{
    return SEL(sel)->is_member(id) ? 1 : 0;
}

void faiss_IDSelectorRange_free(FaissIDSelectorRange *obj)
{
    delete reinterpret_cast<faiss::IDSelectorRange *>(obj);
}

idx_t faiss_IDSelectorRange_imin(const FaissIDSelectorRange *sel)
{
    return reinterpret_cast<const faiss::IDSelectorRange *>(sel)->imin;
}

idx_t faiss_IDSelectorRange_imax(const FaissIDSelectorRange *sel)
{
    return reinterpret_cast<const faiss::IDSelectorRange *>(sel)->imax;
}

int faiss_IDSelectorRange_new(FaissIDSelectorRange **p_sel, idx_t imin, idx_t imax)
{
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorRange *>(new faiss::IDSelectorRange(imin, imax));
    });
}

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n, const idx_t *indices)
{
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorBatch *>(
                new faiss::IDSelectorBatch(n, indices));
    });
}

int faiss_IDSelectorBatch_nbits(const FaissIDSelectorBatch *sel)
{
    return reinterpret_cast<const faiss::IDSelectorBatch *>(sel)->nbits;
}

idx_t faiss_IDSelectorBatch_mask(const FaissIDSelectorBatch *sel)
{
    return reinterpret_cast<const faiss::IDSelectorBatch *>(sel)->mask;
}

void faiss_IDSelectorBitmap_free(FaissIDSelectorBitmap *obj)
{
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

size_t faiss_IDSelectorBitmap_n(const FaissIDSelectorBitmap *sel)
{
    return reinterpret_cast<const faiss::IDSelectorBitmap *>(SEL(sel))->n;
}

const uint8_t *faiss_IDSelectorBitmap_bitmap(const FaissIDSelectorBitmap *sel)
{
    return reinterpret_cast<const faiss::IDSelectorBitmap *>(SEL(sel))->bitmap;
}

int faiss_IDSelectorBitmap_new(FaissIDSelectorBitmap **p_sel, size_t n, const uint8_t *bitmap)
{
    return guarded([&] {
        faiss::IDSelector *s = new faiss::IDSelectorBitmap(n, bitmap);
        *p_sel = reinterpret_cast<FaissIDSelectorBitmap *>(s);
    });
}

int faiss_IDSelectorNot_new(FaissIDSelectorNot **p_sel, const FaissIDSelector *sel)
{
    return guarded([&] {
        faiss::IDSelector *s = new faiss::IDSelectorNot(SEL(sel));
        *p_sel = reinterpret_cast<FaissIDSelectorNot *>(s);
    });
}

int faiss_IDSelectorAnd_new(FaissIDSelectorAnd **p_sel, const FaissIDSelector *lhs_sel,
                            const FaissIDSelector *rhs_sel)
{
    return guarded([&] {
        faiss::IDSelector *s = new SelAnd(SEL(lhs_sel), SEL(rhs_sel));
        *p_sel = reinterpret_cast<FaissIDSelectorAnd *>(s);
    });
}

int faiss_IDSelectorOr_new(FaissIDSelectorOr **p_sel, const FaissIDSelector *lhs_sel,
                           const FaissIDSelector *rhs_sel)
{
    return guarded([&] {
        faiss::IDSelector *s = new SelOr(SEL(lhs_sel), SEL(rhs_sel));
        *p_sel = reinterpret_cast<FaissIDSelectorOr *>(s);
    });
}

/* ---- factory, downcasts ----------------------------------------------------------------- */

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric)
{
    return guarded([&] {
        faiss::Index *ix = faiss::index_factory(d, description, (faiss::MetricType)metric);
        *p_index = reinterpret_cast<FaissIndex *>(ix);
    });
}

FaissIndexIVF *faiss_IndexIVF_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexIVF *>(dynamic_cast<faiss::IndexIVF *>(IX(index)));
}

size_t faiss_IndexIVF_nlist(const FaissIndexIVF *index)
{
    return reinterpret_cast<const faiss::IndexIVF *>(index)->nlist;
}

size_t faiss_IndexIVF_nprobe(const FaissIndexIVF *index)
{
    return reinterpret_cast<const faiss::IndexIVF *>(index)->nprobe;
}

void faiss_IndexIVF_set_nprobe(FaissIndexIVF *index, size_t nprobe)
{
    reinterpret_cast<faiss::IndexIVF *>(index)->nprobe = nprobe;
}

int faiss_IndexIVF_make_direct_map(FaissIndexIVF *index, int new_maintain_direct_map)
{
    return guarded([&] {
        reinterpret_cast<faiss::IndexIVF *>(index)->make_direct_map(new_maintain_direct_map != 0);
    });
}

FaissIndexPreTransform *faiss_IndexPreTransform_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexPreTransform *>(
            dynamic_cast<faiss::IndexPreTransform *>(IX(index)));
}

FaissIndex *faiss_IndexPreTransform_index(const FaissIndexPreTransform *index)
{
    return reinterpret_cast<FaissIndex *>(
            reinterpret_cast<const faiss::IndexPreTransform *>(index)->index);
}

FaissIndexIDMap *faiss_IndexIDMap_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexIDMap *>(dynamic_cast<faiss::IndexIDMap *>(IX(index)));
}

int faiss_IndexIDMap_new(FaissIndexIDMap **p_index, FaissIndex *index)
{
    return guarded([&] {
        *p_index = reinterpret_cast<FaissIndexIDMap *>(new faiss::IndexIDMap(IX(index)));
    });
}

int faiss_IndexIDMap_own_fields(const FaissIndexIDMap *index)
{
    return reinterpret_cast<const faiss::IndexIDMap *>(index)->own_fields ? 1 : 0;
}

void faiss_IndexIDMap_set_own_fields(FaissIndexIDMap *index, int own)
{
    reinterpret_cast<faiss::IndexIDMap *>(index)->own_fields = own != 0;
}

void faiss_IndexIDMap_id_map(FaissIndexIDMap *index, idx_t **p_id_map, size_t *p_size)
{
    auto *m = reinterpret_cast<faiss::IndexIDMap *>(index);
    *p_id_map = m->id_map.data();
    *p_size = m->id_map.size();
}

FaissIndex *faiss_IndexIDMap_sub_index(FaissIndexIDMap *index)
{
    return reinterpret_cast<FaissIndex *>(reinterpret_cast<faiss::IndexIDMap *>(index)->index);
}

/* ---- I/O -------------------------------------------------------------------------------- */

int faiss_write_index(const FaissIndex *idx, FILE *f)
{
    return guarded([&] { faiss::write_index(IX(idx), f); });
}

int faiss_write_index_fname(const FaissIndex *idx, const char *fname)
{
    return guarded([&] { faiss::write_index(IX(idx), fname); });
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
    return guarded([&] {
        *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(f, io_flags));
    });
}

int faiss_read_index_fname(const char *fname, int io_flags, FaissIndex **p_out)
{
    return guarded([&] {
        *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(fname, io_flags));
    });
}

int faiss_write_index_buf(const FaissIndex *idx, size_t *buf_size, unsigned char **buf)
{
    return guarded([&] {
        MallocWriter w;
        faiss::write_index(IX(idx), &w);
        *buf_size = w.size;
        *buf = w.buf;
        w.buf = nullptr;
    });
}

int faiss_read_index_buf(const unsigned char *buf, size_t limit, int io_flags,
                         FaissIndex **p_out)
{
    return guarded([&] {
        SpanReader r(buf, limit);
        *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(&r, io_flags));
    });
}

/* ---- ParameterSpace --------------------------------------------------------------------- */

void faiss_ParameterSpace_free(FaissParameterSpace *obj)
{
    delete reinterpret_cast<faiss::ParameterSpace *>(obj);
}

int faiss_ParameterSpace_new(FaissParameterSpace **space)
{
    return guarded([&] {
        *space = reinterpret_cast<FaissParameterSpace *>(new faiss::ParameterSpace);
    });
}

int faiss_ParameterSpace_set_index_parameters(const FaissParameterSpace *space,
                                              FaissIndex *index, const char *params)
{
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameters(IX(index),
                                                                                   params);
    });
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space,
                                             FaissIndex *index, const char *name, double value)
{
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameter(
                IX(index), name, value);
    });
}

int faiss_IndexHNSW_set_efConstruction_ext(FaissIndex *idx, int ef_construction)
{
    faiss::Index *ix = IX(idx);
    if (auto *m = dynamic_cast<faiss::IndexIDMap *>(ix))
        ix = m->index;
    auto *h = dynamic_cast<faiss::IndexHNSW *>(ix);
    if (!h)
        return 1;
    h->hnsw.efConstruction = ef_construction;
    return 0;
}

int faiss_Index_skip_polysemous_training_ext(FaissIndex *idx)
{
    faiss::Index *ix = IX(idx);
    if (auto *m = dynamic_cast<faiss::IndexIDMap *>(ix))
        ix = m->index;
    if (auto *t = dynamic_cast<faiss::IndexPreTransform *>(ix))
        ix = t->index;
    if (auto *ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(ix)) {
        ivfpq->do_polysemous_training = false;
        return 0;
    }
    if (auto *pq = dynamic_cast<faiss::IndexPQ *>(ix)) {
        pq->do_polysemous_training = false;
        return 0;
    }
    return 1;
}

} // extern "C"
