#include "offline/train.h"

#include <math.h>

#include "shard/index.h"

static shard_index_opts opts_for(int dim, int metric_l2, const char *factory, int64_t train)
{
    shard_index_opts o = shard_index_default_opts();
    o.dim = dim;
    o.metric = metric_l2 ? SHARD_INDEX_METRIC_L2 : SHARD_INDEX_METRIC_IP;
    o.factory = factory;
    o.train_size = train;
    return o;
}

cr_err offline_train_plan(int dim, int metric_l2, const char *factory, int64_t train_size,
                          uint64_t records, bool *needs, uint64_t *sample)
{
    shard_index_opts o = opts_for(dim, metric_l2, factory, train_size);
    int64_t n = 0;
    cr_err rc = shard_index_training_info(&o, needs, &n);
    if (rc)
        return rc;
    *sample = (uint64_t)n < records ? (uint64_t)n : records;
    return CR_OK;
}

uint64_t offline_train_pick(uint64_t i, uint64_t records, uint64_t sample)
{
    /* 128-bit product: records * i overflows 64 bits past 4 billion squared. */
    return (uint64_t)((unsigned __int128)i * records / sample);
}

cr_err offline_train_write(int dim, int metric_l2, const char *factory, uint64_t n, float *x,
                           int threads, const char *path)
{
    shard_index_opts o = opts_for(dim, metric_l2, factory, 0);
    if (!metric_l2)
        for (uint64_t r = 0; r < n; r++) {
            float *v = x + r * (uint64_t)dim;
            double s = 0;
            for (int d = 0; d < dim; d++)
                s += (double)v[d] * v[d];
            if (s > 0)
                for (int d = 0; d < dim; d++)
                    v[d] = (float)(v[d] / sqrt(s));
        }
    return shard_index_template_write(&o, (int64_t)n, x, threads, path);
}
