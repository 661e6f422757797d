#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(double *samples, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0;
    qsort(samples, n, sizeof *samples, cmp_double);
    i = (size_t)(p * (double)(n - 1) + 0.5);
    return samples[i < n ? i : n - 1];
}

double bench_recall(const int64_t *got, const int32_t *truth, size_t nq, size_t k,
                    size_t truth_k)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < k; i++) {
            int64_t g = got[q * k + i];
            if (g < 0)
                continue;
            for (size_t j = 0; j < k && j < truth_k; j++)
                if (truth[q * truth_k + j] == g) {
                    hit++;
                    break;
                }
        }
    return nq && k ? (double)hit / (double)(nq * k) : 0;
}

double bench_ndcg(const int64_t *got, const int32_t *truth, size_t nq, size_t k, size_t truth_k)
{
    double sum = 0, ideal = 0;
    for (size_t i = 0; i < k && i < truth_k; i++)
        ideal += 1.0 / log2((double)i + 2.0);
    if (!nq || ideal == 0)
        return 0;
    for (size_t q = 0; q < nq; q++) {
        double dcg = 0;
        for (size_t i = 0; i < k; i++) {
            int64_t g = got[q * k + i];
            for (size_t j = 0; g >= 0 && j < k && j < truth_k; j++)
                if (truth[q * truth_k + j] == g) {
                    dcg += 1.0 / log2((double)i + 2.0);
                    break;
                }
        }
        sum += dcg / ideal;
    }
    return sum / (double)nq;
}

double bench_peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            mb = strtod(line + 6, NULL) / 1024.0;
            break;
        }
    fclose(f);
    return mb;
}
