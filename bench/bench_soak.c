/* cirrus-bench soak — hours of mixed load against a running endpoint (cirrus serve, or a
 * coordinator), with the servers' resources sampled beside it, so that leaks, creeping
 * latency and errors that only show after the first minutes are seen and judged.
 *
 * Clients (--clients) loop over: vector searches, and with the percentages given upserts,
 * deletes and composed searches (a catalog item changed by a caption; needs an encoder).
 * One more thread takes a snapshot every --snapshot-s. Every --sample-s the main thread
 * prints and writes (--csv) one row: QPS, p50/p99 of that window, errors, and for each
 * --pid its RSS (and its anonymous and file-backed parts), open fds and threads from /proc.
 * With --job-s, one more thread submits a try-on job every S s and waits for it. At the end
 * it judges the run: no errors; after --warmup-s, RssAnon growth < 5 % (the lows and the
 * highs of the last window against those of the first after warm-up: see anon_windows) and
 * fds and threads back to their count by the end; p50 and p99 of the last
 * --compare-s within 10 % of the first --compare-s after warm-up. Exit 0 only when all hold.
 * --plot FILE.png draws the series with gnuplot. */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/cirrus.h"
#include "common/clock.h"
#include "common/fileio.h"

#define SOAK_MAX_PIDS 8
#define SOAK_CAPTION_DEFAULT "the same but in red"

typedef struct soak_cfg {
    const char *endpoint, *csv, *plot, *caption, *prefix, *job_person, *job_garment;
    double minutes, warmup_s, compare_s;
    long clients, dim, items, sample_s, snapshot_s, timeout_ms, job_s, job_steps;
    double write_pct, delete_pct, composed_pct;
    int pids[SOAK_MAX_PIDS], n_pids;
} soak_cfg;

typedef struct sample {
    double t_s, qps, p50, p99;
    uint64_t errors;
    double rss_mb[SOAK_MAX_PIDS], anon_mb[SOAK_MAX_PIDS], file_mb[SOAK_MAX_PIDS];
    long fds[SOAK_MAX_PIDS], threads[SOAK_MAX_PIDS];
} sample;

typedef struct lat {
    float t_s, ms;
} lat;

typedef struct soak {
    const soak_cfg *cfg;
    uint64_t start_us, end_us;
    pthread_mutex_t mu;
    lat *all;            /* every completed operation, in completion order */
    size_t n_all, cap_all;
    size_t window_from;  /* first entry of the current sample window */
    atomic_uint_fast64_t errors, snapshots, jobs_ok, job_errors;
    char last_error[256];
} soak;

/* ---- operations ------------------------------------------------------------------------ */

/* A failed request is counted, kept as the last error and logged (the first SOAK_LOG_ERRORS,
 * with the op, when it was sent and how long it took) so that a failed run says which
 * requests failed and when. */
#define SOAK_LOG_ERRORS 50

static void record(soak *s, const char *op, uint64_t t0, cirrus_err rc, const cirrus *c)
{
    uint64_t now = cr_clock_mono_us();
    if (rc != CIRRUS_OK) {
        uint64_t nth = atomic_fetch_add(&s->errors, 1);
        pthread_mutex_lock(&s->mu);
        snprintf(s->last_error, sizeof s->last_error, "%s: %s: %s", op, cirrus_strerror(rc),
                 cirrus_errmsg(c));
        if (nth < SOAK_LOG_ERRORS)
            fprintf(stderr, "soak: error at t=%.1f s after %.1f ms: %s\n",
                    (double)(t0 - s->start_us) / 1e6, (double)(now - t0) / 1e3, s->last_error);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->n_all == s->cap_all) {
        size_t cap = s->cap_all ? 2 * s->cap_all : 1 << 16;
        lat *g = realloc(s->all, cap * sizeof *g);
        if (g) {
            s->all = g;
            s->cap_all = cap;
        }
    }
    if (s->n_all < s->cap_all)
        s->all[s->n_all++] = (lat){(float)((double)(now - s->start_us) / 1e6),
                                   (float)((double)(now - t0) / 1e3)};
    pthread_mutex_unlock(&s->mu);
}

static void random_vector(float *v, long dim, unsigned *seed)
{
    for (long i = 0; i < dim; i++)
        v[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
}

static void item_id(const soak_cfg *cfg, char *buf, size_t len, unsigned *seed)
{
    snprintf(buf, len, "%s%ld", cfg->prefix, (long)(rand_r(seed) % cfg->items));
}

static cirrus_err do_upsert(cirrus *c, const soak_cfg *cfg, float *v, unsigned *seed)
{
    char id[64];
    cirrus_attr a[2];
    cirrus_item it = {0};
    item_id(cfg, id, sizeof id, seed);
    random_vector(v, cfg->dim, seed);
    a[0] = cirrus_attr_int("n", rand_r(seed) % 1000);
    a[1] = cirrus_attr_string("color", rand_r(seed) % 2 ? "red" : "blue");
    it.id = id;
    it.vector = v;
    it.dim = (size_t)cfg->dim;
    it.attrs = a;
    it.n_attrs = 2;
    return cirrus_upsert(c, &it, 1, NULL);
}

static cirrus_err do_delete(cirrus *c, const soak_cfg *cfg, unsigned *seed)
{
    char id[64];
    const char *ids[1] = {id};
    item_id(cfg, id, sizeof id, seed);
    return cirrus_delete(c, ids, 1);
}

static cirrus_err do_search(cirrus *c, const soak_cfg *cfg, float *v, unsigned *seed,
                            int composed)
{
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;
    char id[64];
    cirrus_err rc;
    if (composed) {
        item_id(cfg, id, sizeof id, seed);
        q.ref_item_id = id;
        q.caption = cfg->caption;
    } else {
        random_vector(v, cfg->dim, seed);
        q.vector = v;
        q.dim = (size_t)cfg->dim;
    }
    q.k = 10;
    rc = cirrus_search(c, &q, &r);
    /* A composed query whose reference was just deleted is the workload, not a fault. */
    if (composed && rc == CIRRUS_ERR_INVALID && strstr(cirrus_errmsg(c), "not found"))
        rc = CIRRUS_OK;
    cirrus_result_free(&r);
    return rc;
}

typedef struct client_arg {
    soak *s;
    unsigned seed;
} client_arg;

static void *client_main(void *arg)
{
    client_arg *ca = arg;
    soak *s = ca->s;
    const soak_cfg *cfg = s->cfg;
    cirrus_options o = cirrus_default_options();
    cirrus *c = NULL;
    float *v = malloc(sizeof *v * (size_t)cfg->dim);
    o.timeout_ms = (uint32_t)cfg->timeout_ms;
    if (!v || cirrus_open(&c, cfg->endpoint, &o) != CIRRUS_OK) {
        atomic_fetch_add(&s->errors, 1);
        free(v);
        return NULL;
    }
    while (cr_clock_mono_us() < s->end_us) {
        double pick = 100.0 * rand_r(&ca->seed) / ((double)RAND_MAX + 1);
        uint64_t t0 = cr_clock_mono_us();
        cirrus_err rc;
        const char *op;
        if (pick < cfg->write_pct) {
            op = "upsert";
            rc = do_upsert(c, cfg, v, &ca->seed);
        } else if (pick < cfg->write_pct + cfg->delete_pct) {
            op = "delete";
            rc = do_delete(c, cfg, &ca->seed);
        } else {
            int composed = pick < cfg->write_pct + cfg->delete_pct + cfg->composed_pct;
            op = composed ? "composed search" : "search";
            rc = do_search(c, cfg, v, &ca->seed, composed);
        }
        record(s, op, t0, rc, c);
    }
    cirrus_close(&c);
    free(v);
    return NULL;
}

static void *snapshot_main(void *arg)
{
    soak *s = arg;
    cirrus_options o = cirrus_default_options();
    cirrus *c = NULL;
    uint64_t next = s->start_us + (uint64_t)s->cfg->snapshot_s * 1000000u;
    o.timeout_ms = 120000; /* a snapshot of a large index takes a while */
    if (cirrus_open(&c, s->cfg->endpoint, &o) != CIRRUS_OK)
        return NULL;
    while (cr_clock_mono_us() + 200000 < s->end_us) {
        if (cr_clock_mono_us() >= next) {
            Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
            Cirrus__V1__SnapshotRequest sr = CIRRUS__V1__SNAPSHOT_REQUEST__INIT;
            Cirrus__V1__Response *resp = NULL;
            req.op_case = CIRRUS__V1__REQUEST__OP_SNAPSHOT;
            req.snapshot = &sr;
            cirrus_err rc = cirrus_call(c, &req, &resp);
            if (rc == CIRRUS_OK && resp && resp->status && resp->status->code < 0)
                rc = (cirrus_err)resp->status->code;
            if (rc != CIRRUS_OK) {
                atomic_fetch_add(&s->errors, 1);
                pthread_mutex_lock(&s->mu);
                snprintf(s->last_error, sizeof s->last_error, "snapshot: %s: %s",
                         cirrus_strerror(rc),
                         resp && resp->status && resp->status->message ? resp->status->message
                                                                       : cirrus_errmsg(c));
                fprintf(stderr, "soak: error at t=%.1f s: %s\n",
                        (double)(cr_clock_mono_us() - s->start_us) / 1e6, s->last_error);
                pthread_mutex_unlock(&s->mu);
            } else {
                atomic_fetch_add(&s->snapshots, 1);
            }
            cirrus_response_free(resp);
            next += (uint64_t)s->cfg->snapshot_s * 1000000u;
        }
        usleep(200000);
    }
    cirrus_close(&c);
    return NULL;
}

/* ---- generation jobs ----------------------------------------------------------------------- */

/* One try-on: submitted, then waited for; anything but SUCCEEDED with an image is an error.
 * The wait's bound is the broker's default deadline plus the queue: a job that hangs fails. */
static cirrus_err run_job(cirrus *c, const cirrus_generate_params *p, char *why, size_t why_len)
{
    cirrus_job *j = NULL;
    char id[CIRRUS_JOB_ID_MAX + 1];
    cirrus_err rc = cirrus_generate(c, p, &j);
    if (rc != CIRRUS_OK) {
        snprintf(why, why_len, "job submit: %s: %s", cirrus_strerror(rc), cirrus_errmsg(c));
        return rc;
    }
    snprintf(id, sizeof id, "%s", cirrus_job_id(j));
    cirrus_job_free(&j);
    rc = cirrus_job_wait(c, id, 120000, 1, NULL, NULL, &j);
    if (rc == CIRRUS_OK && (cirrus_job_get_state(j) != CIRRUS_JOB_SUCCEEDED ||
                            !cirrus_job_image(j, NULL))) {
        snprintf(why, why_len, "job %.64s: %s: %s", id, cirrus_job_state_name(cirrus_job_get_state(j)),
                 cirrus_job_error(j));
        rc = CIRRUS_ERR_INTERNAL;
    } else if (rc != CIRRUS_OK) {
        snprintf(why, why_len, "job %.64s wait: %s: %s", id, cirrus_strerror(rc), cirrus_errmsg(c));
    }
    cirrus_job_free(&j);
    return rc;
}

static void *jobs_main(void *arg)
{
    soak *s = arg;
    const soak_cfg *cfg = s->cfg;
    cirrus_options o = cirrus_default_options();
    cirrus_generate_params p = cirrus_generate_default();
    cirrus *c = NULL;
    uint8_t *person = NULL, *garment = NULL;
    size_t np = 0, ng = 0;
    uint64_t next = s->start_us;
    char why[sizeof ((soak *)0)->last_error];
    if (cr_file_read(cfg->job_person, &person, &np) != CR_OK ||
        cr_file_read(cfg->job_garment, &garment, &ng) != CR_OK ||
        cirrus_open(&c, cfg->endpoint, &o) != CIRRUS_OK) {
        fprintf(stderr, "soak: jobs: cannot read %s / %s or connect\n", cfg->job_person,
                cfg->job_garment);
        atomic_fetch_add(&s->errors, 1);
        atomic_fetch_add(&s->job_errors, 1);
        goto out;
    }
    p.person_image = person;
    p.person_image_len = np;
    p.garment_image = garment;
    p.garment_image_len = ng;
    p.category = "upper_body";
    p.steps = (uint32_t)cfg->job_steps;
    while (cr_clock_mono_us() + 200000 < s->end_us) {
        if (cr_clock_mono_us() < next) {
            usleep(200000);
            continue;
        }
        p.seed++;
        if (run_job(c, &p, why, sizeof why) == CIRRUS_OK) {
            atomic_fetch_add(&s->jobs_ok, 1);
        } else {
            atomic_fetch_add(&s->errors, 1);
            atomic_fetch_add(&s->job_errors, 1);
            fprintf(stderr, "soak: error at t=%.1f s: %s\n",
                    (double)(cr_clock_mono_us() - s->start_us) / 1e6, why);
            pthread_mutex_lock(&s->mu);
            snprintf(s->last_error, sizeof s->last_error, "%s", why);
            pthread_mutex_unlock(&s->mu);
        }
        next += (uint64_t)cfg->job_s * 1000000u;
    }
out:
    cirrus_close(&c);
    free(person);
    free(garment);
    return NULL;
}

/* ---- /proc --------------------------------------------------------------------------- */

/* RssAnon is the heap and stacks, what a leak or the allocator's retention grows; RssFile is
 * mapped files (LMDB's map, the model's safetensors), pages the kernel may drop at will. */
static void proc_sample(int pid, double *rss_mb, double *anon_mb, double *file_mb,
                        long *threads, long *fds)
{
    char path[64], line[256];
    FILE *f;
    DIR *d;
    struct dirent *e;
    *rss_mb = *anon_mb = *file_mb = -1;
    *threads = *fds = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if ((f = fopen(path, "r"))) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "VmRSS:", 6) == 0)
                *rss_mb = strtod(line + 6, NULL) / 1024.0;
            if (strncmp(line, "RssAnon:", 8) == 0)
                *anon_mb = strtod(line + 8, NULL) / 1024.0;
            if (strncmp(line, "RssFile:", 8) == 0)
                *file_mb = strtod(line + 8, NULL) / 1024.0;
            if (strncmp(line, "Threads:", 8) == 0)
                *threads = strtol(line + 8, NULL, 10);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    if ((d = opendir(path))) {
        *fds = 0;
        while ((e = readdir(d)))
            *fds += e->d_name[0] != '.';
        closedir(d);
    }
}

/* ---- samples, the verdict, the plot ------------------------------------------------------ */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* p-th percentile of the latencies completed in [from_s, to_s). */
static double pct_between(const soak *s, double from_s, double to_s, double p, size_t *n_out)
{
    float *ms = malloc(sizeof *ms * (s->n_all ? s->n_all : 1));
    size_t n = 0;
    double v = 0;
    if (!ms)
        return NAN;
    for (size_t i = 0; i < s->n_all; i++)
        if (s->all[i].t_s >= from_s && s->all[i].t_s < to_s)
            ms[n++] = s->all[i].ms;
    if (n) {
        qsort(ms, n, sizeof *ms, cmp_float);
        v = ms[(size_t)(p * (double)(n - 1) + 0.5)];
    }
    free(ms);
    if (n_out)
        *n_out = n;
    return n ? v : NAN;
}

/* The window's latencies are copied under the lock and sorted outside it, so the clients
 * are held up for a copy, not a sort. */
static void take_sample(soak *s, sample *out, double t_s, double prev_t_s, uint64_t *prev_err)
{
    float *ms;
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = s->n_all - s->window_from;
    ms = malloc(sizeof *ms * (n ? n : 1));
    for (size_t i = 0; ms && i < n; i++)
        ms[i] = s->all[s->window_from + i].ms;
    s->window_from = s->n_all;
    pthread_mutex_unlock(&s->mu);
    out->t_s = t_s;
    out->qps = t_s > prev_t_s ? (double)n / (t_s - prev_t_s) : 0;
    out->p50 = out->p99 = NAN;
    if (ms && n) {
        qsort(ms, n, sizeof *ms, cmp_float);
        out->p50 = ms[(size_t)(0.50 * (double)(n - 1) + 0.5)];
        out->p99 = ms[(size_t)(0.99 * (double)(n - 1) + 0.5)];
    }
    free(ms);
    out->errors = atomic_load(&s->errors) - *prev_err;
    *prev_err += out->errors;
    for (int i = 0; i < s->cfg->n_pids; i++)
        proc_sample(s->cfg->pids[i], &out->rss_mb[i], &out->anon_mb[i], &out->file_mb[i],
                    &out->threads[i], &out->fds[i]);
}

static void print_sample(const soak_cfg *cfg, const sample *x, FILE *csv)
{
    printf("%8.0f %9.0f %8.3f %8.3f %6llu", x->t_s, x->qps, x->p50, x->p99,
           (unsigned long long)x->errors);
    for (int i = 0; i < cfg->n_pids; i++)
        printf("  %8.1f %7.1f %6.1f %5ld %4ld", x->rss_mb[i], x->anon_mb[i], x->file_mb[i],
               x->fds[i], x->threads[i]);
    printf("\n");
    fflush(stdout);
    if (!csv)
        return;
    fprintf(csv, "%.1f,%.1f,%.4f,%.4f,%llu", x->t_s, x->qps, x->p50, x->p99,
            (unsigned long long)x->errors);
    for (int i = 0; i < cfg->n_pids; i++)
        fprintf(csv, ",%.2f,%ld,%ld,%.2f,%.2f", x->rss_mb[i], x->fds[i], x->threads[i],
                x->anon_mb[i], x->file_mb[i]);
    fprintf(csv, "\n");
    fflush(csv);
}

/* RssAnon's low and high in the first window after warm-up ([w, w + c)) and in the last
 * ([end - c, end]); a run too short for two such windows splits what follows warm-up in
 * thirds. Growth is judged on both: a leak or retained fragmentation raises the floor (and
 * the peaks), while the server's periodic peaks, which end (a background index rebuild holds
 * the old index and the new one for the ~minute it builds, +10 MiB in the soak, freed and
 * trimmed at the swap), are in both windows alike. One sample at warm-up's end against the
 * largest later one instead judged where in that cycle each happened to fall. */
static void anon_windows(const sample *xs, size_t n, size_t base, int pid, double w, double c,
                         double lo[2], double hi[2], double span[2])
{
    double end = xs[n - 1].t_s;
    if (end - w < 2 * c)
        c = (end - w) / 3;
    span[0] = w;
    span[1] = end - c;
    for (int k = 0; k < 2; k++) {
        lo[k] = INFINITY;
        hi[k] = 0;
    }
    for (size_t k = base; k < n; k++) {
        double a = xs[k].anon_mb[pid];
        int which = xs[k].t_s < w + c ? 0 : xs[k].t_s >= end - c ? 1 : -1;
        if (which < 0 || a < 0)
            continue;
        lo[which] = fmin(lo[which], a);
        hi[which] = fmax(hi[which], a);
    }
}

/* Judges the run; prints each criterion. Returns the number failed. */
static int verdict(const soak *s, const sample *xs, size_t n)
{
    const soak_cfg *cfg = s->cfg;
    double dur = xs[n - 1].t_s, w = cfg->warmup_s, c = cfg->compare_s;
    size_t base = 0;
    int bad = 0;
    uint64_t errs = atomic_load(&s->errors);
    while (base + 1 < n && xs[base].t_s < w)
        base++;
    printf("\nverdict: warm-up = the first %.0f s of mixed load, counted from the end of the "
           "preload; the baseline is the first sample at or after it (t = %.0f s); RSS growth = "
           "the low and the high of the last window over those of the first after warm-up; "
           "latency windows of %.0f s compared\n", w, xs[base].t_s, c);
    printf("  errors: %llu %s\n", (unsigned long long)errs, errs ? "FAIL" : "ok");
    if (errs)
        printf("    last: %s\n", s->last_error);
    bad += errs != 0;
    if (cfg->job_s > 0)
        printf("  generation jobs: %llu succeeded, %llu failed %s\n",
               (unsigned long long)atomic_load(&s->jobs_ok),
               (unsigned long long)atomic_load(&s->job_errors),
               atomic_load(&s->job_errors) || !atomic_load(&s->jobs_ok) ? "FAIL" : "ok");
    bad += cfg->job_s > 0 && (atomic_load(&s->job_errors) || !atomic_load(&s->jobs_ok));
    for (int i = 0; i < cfg->n_pids; i++) {
        /* RSS judged by its anonymous part (heap, stacks): file-backed pages (the LMDB map,
         * the model file) are the page cache's, the kernel drops them at will. fds and
         * threads: a helper thread (a background rebuild) or a connection may come and go,
         * a leak does not go: the least of the last third must not exceed the count after
         * warm-up. */
        size_t third = base + 2 * (n - base) / 3;
        double r0 = xs[base].rss_mb[i], r1 = 0, a0 = xs[base].anon_mb[i], a1 = 0;
        double fl0 = xs[base].file_mb[i], fl1 = 0;
        long f0 = xs[base].fds[i], t0 = xs[base].threads[i], f1 = LONG_MAX, t1 = LONG_MAX;
        long fd_max = 0, tmax = 0;
        for (size_t k = base; k < n; k++) {
            r1 = fmax(r1, xs[k].rss_mb[i]);
            a1 = fmax(a1, xs[k].anon_mb[i]);
            fl1 = fmax(fl1, xs[k].file_mb[i]);
            fd_max = xs[k].fds[i] > fd_max ? xs[k].fds[i] : fd_max;
            tmax = xs[k].threads[i] > tmax ? xs[k].threads[i] : tmax;
            if (k >= third) {
                f1 = xs[k].fds[i] < f1 ? xs[k].fds[i] : f1;
                t1 = xs[k].threads[i] < t1 ? xs[k].threads[i] : t1;
            }
        }
        double lo[2], hi[2], span[2];
        anon_windows(xs, n, base, i, w, c, lo, hi, span);
        int anon_ok = lo[0] > 0 && isfinite(lo[1]) && lo[1] <= lo[0] * 1.05 &&
                      hi[1] <= hi[0] * 1.05;
        int fds_ok = f1 <= f0, thr_ok = t1 <= t0;
        printf("  pid %d: RssAnon low/high %.1f/%.1f MiB from %.0f s -> %.1f/%.1f from %.0f s "
               "(low %+.1f %%, high %+.1f %%) %s\n", cfg->pids[i], lo[0], hi[0], span[0], lo[1],
               hi[1], span[1], lo[0] > 0 ? 100.0 * (lo[1] / lo[0] - 1) : 0,
               hi[0] > 0 ? 100.0 * (hi[1] / hi[0] - 1) : 0, anon_ok ? "ok" : "FAIL");
        printf("    RssAnon at the baseline %.1f -> largest later sample %.1f MiB (%+.1f %%), at "
               "the end %.1f (not judged: see anon_windows)\n", a0, a1,
               a0 > 0 ? 100.0 * (a1 / a0 - 1) : 0, xs[n - 1].anon_mb[i]);
        printf("    VmRSS %.1f -> max %.1f MiB (%+.1f %%), at the end %.1f; RssFile %.1f -> "
               "max %.1f, at the end %.1f (not judged)\n", r0, r1,
               r0 > 0 ? 100.0 * (r1 / r0 - 1) : 0, xs[n - 1].rss_mb[i], fl0, fl1,
               xs[n - 1].file_mb[i]);
        printf("    fds %ld -> %ld in the last third (max %ld) %s; threads %ld -> %ld in the "
               "last third (max %ld) %s\n", f0, f1, fd_max, fds_ok ? "ok" : "FAIL", t0, t1,
               tmax, thr_ok ? "ok" : "FAIL");
        bad += !anon_ok + !fds_ok + !thr_ok;
    }
    if (dur - w >= 2 * c) {
        size_t n0, n1;
        double a50 = pct_between(s, w, w + c, 0.5, &n0), b50 = pct_between(s, dur - c, dur, 0.5, &n1);
        double a99 = pct_between(s, w, w + c, 0.99, NULL), b99 = pct_between(s, dur - c, dur, 0.99, NULL);
        int ok50 = b50 <= a50 * 1.10, ok99 = b99 <= a99 * 1.10;
        printf("  p50 first %.3f ms (%zu ops) -> last %.3f ms (%zu ops) %+.1f %% %s\n", a50, n0,
               b50, n1, 100.0 * (b50 / a50 - 1), ok50 ? "ok" : "FAIL");
        printf("  p99 first %.3f ms -> last %.3f ms %+.1f %% %s\n", a99, b99,
               100.0 * (b99 / a99 - 1), ok99 ? "ok" : "FAIL");
        bad += !ok50 + !ok99;
    } else {
        printf("  latency: run shorter than warm-up + 2 x %.0f s: not compared\n", c);
    }
    printf("  snapshots taken: %llu\n", (unsigned long long)atomic_load(&s->snapshots));
    return bad;
}

static void plot(const soak_cfg *cfg)
{
    FILE *g;
    char cmd[1200];
    if (!cfg->plot || !cfg->csv)
        return;
    snprintf(cmd, sizeof cmd, "gnuplot > /dev/null 2>&1");
    if (!(g = popen(cmd, "w"))) {
        fprintf(stderr, "soak: no gnuplot: no plot\n");
        return;
    }
    fprintf(g, "set terminal pngcairo size 1100,600\nset output '%s'\n"
               "set datafile separator ','\nset multiplot layout 2,1\n"
               "set xlabel 'minutes'\nset ylabel 'ms'\nset grid\nset key top left\n"
               "set y2tics\nset y2label 'kQPS'\nset yrange [0:*]\nset y2range [0:*]\n"
               "plot '%s' using ($1/60):3 with lines title 'p50', '' using ($1/60):4 with lines "
               "title 'p99', '' using ($1/60):($2/1000) axes x1y2 with lines title 'kQPS (right)'\n"
               "set ylabel 'MiB'\nset y2label 'threads'\nset yrange [0:*]\nplot ",
            cfg->plot, cfg->csv);
    for (int i = 0; i < cfg->n_pids; i++)
        fprintf(g, "%s'%s' using ($1/60):%d with lines title 'RSS pid %d', '' using ($1/60):%d "
                   "with lines title 'RssAnon pid %d', '' using ($1/60):%d axes x1y2 with lines "
                   "title 'threads pid %d (right)', '' using ($1/60):%d axes x1y2 with lines "
                   "title 'fds pid %d (right)'", i ? ", " : "", cfg->csv, 6 + 5 * i,
                cfg->pids[i], 9 + 5 * i, cfg->pids[i], 8 + 5 * i, cfg->pids[i], 7 + 5 * i,
                cfg->pids[i]);
    fprintf(g, "\nunset multiplot\n");
    if (pclose(g) != 0)
        fprintf(stderr, "soak: gnuplot failed: no plot\n");
    else
        printf("plot: %s\n", cfg->plot);
}

/* ---- setup ------------------------------------------------------------------------------- */

static int preload(const soak_cfg *cfg)
{
    cirrus *c = NULL;
    cirrus_options o = cirrus_default_options();
    enum { BATCH = 256 };
    cirrus_item it[BATCH];
    char ids[BATCH][48];
    float *v = malloc(sizeof *v * BATCH * (size_t)cfg->dim);
    unsigned seed = 1;
    int rc = 1;
    o.timeout_ms = 60000;
    if (!v || cirrus_open(&c, cfg->endpoint, &o) != CIRRUS_OK)
        goto out;
    for (long done = 0; done < cfg->items;) {
        size_t n = (size_t)(cfg->items - done < BATCH ? cfg->items - done : BATCH);
        for (size_t i = 0; i < n; i++) {
            snprintf(ids[i], sizeof ids[i], "%s%ld", cfg->prefix, done + (long)i);
            random_vector(v + i * (size_t)cfg->dim, cfg->dim, &seed);
            it[i] = (cirrus_item){.id = ids[i], .vector = v + i * (size_t)cfg->dim,
                                  .dim = (size_t)cfg->dim};
        }
        if (cirrus_upsert(c, it, n, NULL) != CIRRUS_OK) {
            fprintf(stderr, "soak: preload: %s\n", cirrus_errmsg(c));
            goto out;
        }
        done += (long)n;
    }
    rc = 0;
out:
    cirrus_close(&c);
    free(v);
    return rc;
}

static void usage(void)
{
    printf("Usage: cirrus-bench soak --endpoint EP [--minutes M] [--clients N] [--dim D]\n"
           "         [--items N] [--write-pct P] [--delete-pct P] [--composed-pct P]\n"
           "         [--caption TEXT] [--snapshot-s S] [--sample-s S] [--warmup-s S]\n"
           "         [--compare-s S] [--pid PID]... [--csv FILE] [--plot FILE.png]\n"
           "         [--job-s S --job-person PNG --job-garment PNG [--job-steps N]]\n"
           "Mixed load for --minutes (default 60) with the servers (--pid, up to %d) sampled\n"
           "every --sample-s (10); exit 0 when no errors, RSS growth < 5 %% and fds/threads\n"
           "flat after --warmup-s (300), and p50/p99 of the last --compare-s (300) within\n"
           "10 %% of the first after warm-up. Defaults: 4 clients, dim 64, 20000 items,\n"
           "5 %% writes, 1 %% deletes, 0 %% composed, a snapshot every 300 s. --job-s: one\n"
           "try-on job every S s (needs a broker and a worker), each waited for; a job that\n"
           "does not succeed is an error. RSS is judged by RssAnon (file pages reported).\n",
           SOAK_MAX_PIDS);
}

static int parse(int argc, char **argv, soak_cfg *cfg)
{
    static const struct option opts[] = {
        {"endpoint", 1, 0, 'e'}, {"minutes", 1, 0, 'm'}, {"clients", 1, 0, 'c'},
        {"dim", 1, 0, 'd'}, {"items", 1, 0, 'n'}, {"write-pct", 1, 0, 'w'},
        {"delete-pct", 1, 0, 'x'}, {"composed-pct", 1, 0, 'q'}, {"caption", 1, 0, 't'},
        {"snapshot-s", 1, 0, 's'}, {"sample-s", 1, 0, 'S'}, {"warmup-s", 1, 0, 'W'},
        {"compare-s", 1, 0, 'C'}, {"pid", 1, 0, 'p'}, {"csv", 1, 0, 'o'}, {"plot", 1, 0, 'P'},
        {"timeout-ms", 1, 0, 'T'}, {"job-s", 1, 0, 'j'}, {"job-person", 1, 0, 'J'},
        {"job-garment", 1, 0, 'G'}, {"job-steps", 1, 0, 'k'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    *cfg = (soak_cfg){.minutes = 60, .clients = 4, .dim = 64, .items = 20000, .write_pct = 5,
                      .delete_pct = 1, .snapshot_s = 300, .sample_s = 10, .warmup_s = 300,
                      .compare_s = 300, .timeout_ms = 10000, .caption = SOAK_CAPTION_DEFAULT,
                      .prefix = "soak-", .job_steps = 8};
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': cfg->endpoint = optarg; break;
        case 'm': cfg->minutes = atof(optarg); break;
        case 'c': cfg->clients = atol(optarg); break;
        case 'd': cfg->dim = atol(optarg); break;
        case 'n': cfg->items = atol(optarg); break;
        case 'w': cfg->write_pct = atof(optarg); break;
        case 'x': cfg->delete_pct = atof(optarg); break;
        case 'q': cfg->composed_pct = atof(optarg); break;
        case 't': cfg->caption = optarg; break;
        case 's': cfg->snapshot_s = atol(optarg); break;
        case 'S': cfg->sample_s = atol(optarg); break;
        case 'W': cfg->warmup_s = atof(optarg); break;
        case 'C': cfg->compare_s = atof(optarg); break;
        case 'T': cfg->timeout_ms = atol(optarg); break;
        case 'o': cfg->csv = optarg; break;
        case 'P': cfg->plot = optarg; break;
        case 'j': cfg->job_s = atol(optarg); break;
        case 'J': cfg->job_person = optarg; break;
        case 'G': cfg->job_garment = optarg; break;
        case 'k': cfg->job_steps = atol(optarg); break;
        case 'p':
            if (cfg->n_pids == SOAK_MAX_PIDS || atoi(optarg) <= 0) {
                fprintf(stderr, "soak: --pid: at most %d positive pids\n", SOAK_MAX_PIDS);
                return 2;
            }
            cfg->pids[cfg->n_pids++] = atoi(optarg);
            break;
        case 'h': usage(); exit(0);
        default: usage(); return 2;
        }
    }
    if (cfg->job_s < 0 || (cfg->job_s > 0 && (!cfg->job_person || !cfg->job_garment)) ||
        cfg->job_steps < 1 || cfg->job_steps > CIRRUS_GEN_STEPS_MAX) {
        fprintf(stderr, "soak: --job-s S needs --job-person and --job-garment; --job-steps "
                        "1..%d\n", CIRRUS_GEN_STEPS_MAX);
        return 2;
    }
    if (!cfg->endpoint || cfg->minutes <= 0 || cfg->clients < 1 || cfg->clients > 256 ||
        cfg->dim < 1 || cfg->dim > 4096 || cfg->items < 1 || cfg->sample_s < 1 ||
        cfg->snapshot_s < 1 || cfg->write_pct < 0 || cfg->delete_pct < 0 ||
        cfg->composed_pct < 0 || cfg->write_pct + cfg->delete_pct + cfg->composed_pct > 100) {
        fprintf(stderr, "soak: needs --endpoint; --minutes > 0, --clients 1..256, --dim "
                        "1..4096, --items >= 1, percentages summing to <= 100\n");
        return 2;
    }
    return 0;
}

int bench_cmd_soak(int argc, char **argv)
{
    soak_cfg cfg;
    soak s = {.cfg = &cfg};
    pthread_t th[258];
    client_arg args[256];
    sample *xs;
    size_t n = 0, cap;
    FILE *csv = NULL;
    uint64_t prev_err = 0;
    double prev_t = 0;
    int rc = parse(argc, argv, &cfg), bad;
    if (rc)
        return rc;
    cap = (size_t)(cfg.minutes * 60 / (double)cfg.sample_s) + 4;
    if (!(xs = calloc(cap, sizeof *xs)))
        return 1;
    if (cfg.csv && !(csv = fopen(cfg.csv, "w"))) {
        perror(cfg.csv);
        free(xs);
        return 1;
    }
    printf("soak: preloading %ld items of dim %ld into %s\n", cfg.items, cfg.dim, cfg.endpoint);
    if (preload(&cfg)) {
        free(xs);
        if (csv)
            fclose(csv);
        return 1;
    }
    pthread_mutex_init(&s.mu, NULL);
    s.start_us = cr_clock_mono_us();
    s.end_us = s.start_us + (uint64_t)(cfg.minutes * 60e6);
    for (long i = 0; i < cfg.clients; i++) {
        args[i] = (client_arg){&s, (unsigned)(1000 + i)};
        pthread_create(&th[i], NULL, client_main, &args[i]);
    }
    pthread_create(&th[cfg.clients], NULL, snapshot_main, &s);
    if (cfg.job_s > 0)
        pthread_create(&th[cfg.clients + 1], NULL, jobs_main, &s);
    printf("%8s %9s %8s %8s %6s", "t_s", "qps", "p50_ms", "p99_ms", "errors");
    for (int i = 0; i < cfg.n_pids; i++)
        printf("  %8s %7s %6s %5s %4s", "rss_mb", "anon_mb", "file", "fds", "thr");
    printf("\n");
    for (uint64_t next = s.start_us + (uint64_t)cfg.sample_s * 1000000u; n < cap;
         next += (uint64_t)cfg.sample_s * 1000000u) {
        uint64_t now = cr_clock_mono_us(), stop = next < s.end_us ? next : s.end_us;
        if (now < stop)
            usleep((useconds_t)(stop - now));
        take_sample(&s, &xs[n], (double)(cr_clock_mono_us() - s.start_us) / 1e6, prev_t, &prev_err);
        prev_t = xs[n].t_s;
        print_sample(&cfg, &xs[n++], csv);
        if (stop == s.end_us)
            break;
    }
    for (long i = 0; i <= cfg.clients + (cfg.job_s > 0); i++)
        pthread_join(th[i], NULL);
    if (csv)
        fclose(csv);
    bad = verdict(&s, xs, n);
    plot(&cfg);
    printf("soak: %s\n", bad ? "FAILED" : "passed");
    free(s.all);
    free(xs);
    pthread_mutex_destroy(&s.mu);
    return bad ? 1 : 0;
}
