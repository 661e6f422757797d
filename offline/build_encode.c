/* build_encode.c — a catalog build's encode stage (to come). */
#include "offline/build_impl.h"

cr_err build_encode_open(build_run *b)
{
    (void)b;
    return cr_error_set(CR_ERR_UNSUPPORTED, "catalog builds are not implemented yet");
}

cr_err build_encode_sample(build_run *b, uint64_t want, float *x, uint64_t *got)
{
    (void)b, (void)want, (void)x, (void)got;
    return CR_ERR_UNSUPPORTED;
}

cr_err build_encode_stage(build_run *b)
{
    (void)b;
    return CR_ERR_UNSUPPORTED;
}

void build_encode_close(build_run *b)
{
    (void)b;
}
