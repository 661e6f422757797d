/* fuzz_safetensors.c — a model file's header and tensor table (a model from a user's disk or a
 * converter): open from memory, walk every tensor, check each one's extent lies inside the
 * data, and convert the small float ones to fp32. */
#include <stdlib.h>

#include "encoder/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enc_st *st = NULL;
    if (enc_st_open_memory(&st, data, size) != CR_OK)
        return 0;
    for (size_t i = 0; i < enc_st_count(st); i++) {
        const enc_st_tensor *t = enc_st_tensor_at(st, i);
        const uint8_t *p = t->data;
        float *f = NULL;
        FUZZ_ASSERT(t && t->name);
        FUZZ_ASSERT(enc_st_find(st, t->name) != NULL);
        FUZZ_ASSERT(p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes);
        FUZZ_ASSERT(t->nbytes == t->numel * enc_st_dtype_size(t->dtype));
        if (t->numel <= 4096 && enc_st_get_f32(st, t->name, t->ndim, t->shape, &f) == CR_OK)
            free(f);
    }
    enc_st_close(&st);
    return 0;
}
