/* metrics.c — the broker's counters and gauges in Prometheus text format. The broker thread
 * updates them under the mutex; jobs_broker_metrics reads them from any thread. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/broker_impl.h"

static const char *reasons[8] = {"worker lost", "worker silent", "worker error", "out of memory",
                                 "timeout", "cancelled", "broker restart", "other"};

/* Histogram upper bounds in seconds (wait_buckets/run_buckets hold one count per bound; +Inf
 * is the count): from a dispatch at once to a diffusion run of minutes. */
#define N_BOUNDS 14
static const double bounds[N_BOUNDS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,  60};
_Static_assert(sizeof((jobs_metrics *)0)->wait_buckets / sizeof(uint64_t) == N_BOUNDS &&
                   sizeof((jobs_metrics *)0)->run_buckets / sizeof(uint64_t) == N_BOUNDS,
               "one bucket per bound");

static void observe(uint64_t *buckets, double seconds)
{
    for (int i = 0; i < N_BOUNDS; i++)
        if (seconds <= bounds[i])
            buckets[i]++;
}

void jobs_metrics_init(jobs_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void jobs_metrics_free(jobs_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void jobs_metrics_gauges(jobs_broker *b)
{
    jobs_metrics *m = &b->m;
    pthread_mutex_lock(&m->mu);
    memset(m->by_state, 0, sizeof m->by_state);
    memset(m->workers_by_cap, 0, sizeof m->workers_by_cap);
    m->queue_depth = 0;
    m->workers = 0;
    for (jobs_job *j = b->all_head; j; j = j->all_next)
        if ((unsigned)j->kind < JOBS_KINDS && (unsigned)j->state < 6)
            m->by_state[j->kind][j->state]++;
    for (int k = 0; k < JOBS_KINDS; k++)
        m->queue_depth += b->queued[k].n;
    for (int i = 0; i < JOBS_MAX_WORKERS; i++)
        if (b->workers[i].used) {
            m->workers++;
            for (int k = 1; k < JOBS_KINDS; k++)
                if (b->workers[i].caps & (1u << k))
                    m->workers_by_cap[k]++;
        }
    pthread_mutex_unlock(&m->mu);
}

void jobs_metrics_retry(jobs_broker *b, const char *reason)
{
    int i = 0;
    while (i < 7 && strcmp(reasons[i], reason) != 0)
        i++;
    jobs_metrics_count(b, &b->m.retries[i]);
}

void jobs_metrics_wait(jobs_broker *b, double seconds)
{
    pthread_mutex_lock(&b->m.mu);
    b->m.wait_sum += seconds;
    b->m.wait_n++;
    observe(b->m.wait_buckets, seconds);
    pthread_mutex_unlock(&b->m.mu);
}

void jobs_metrics_run(jobs_broker *b, double seconds)
{
    pthread_mutex_lock(&b->m.mu);
    b->m.run_sum += seconds;
    b->m.run_n++;
    observe(b->m.run_buckets, seconds);
    pthread_mutex_unlock(&b->m.mu);
}

void jobs_metrics_count(jobs_broker *b, uint64_t *counter)
{
    pthread_mutex_lock(&b->m.mu);
    (*counter)++;
    pthread_mutex_unlock(&b->m.mu);
}

static int append(char **text, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*text ? *text + *len : NULL, *text ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (*text && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return 0;
        }
        size_t ncap = (*cap + (size_t)n + 1) * 2;
        char *t = realloc(*text, ncap);
        if (!t)
            return -1;
        *text = t;
        *cap = ncap;
    }
}

/* A Prometheus histogram: cumulative buckets (observe() counts each bound it is under). */
static int histogram(char **text, size_t *len, size_t *cap, const char *name,
                     const uint64_t *buckets, double sum, uint64_t n)
{
    int bad = append(text, len, cap, "# TYPE %s histogram\n", name);
    for (int i = 0; i < N_BOUNDS; i++)
        bad |= append(text, len, cap, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                      (unsigned long long)buckets[i]);
    bad |= append(text, len, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
                  name, (unsigned long long)n, name, sum, name, (unsigned long long)n);
    return bad;
}

cr_err jobs_broker_metrics(jobs_broker *b, char **text, size_t *len)
{
    static const char *states[6] = {"queued", "running", "succeeded", "failed", "cancelled",
                                    "expired"};
    static const char *kinds[JOBS_KINDS] = {"unspecified", "tryon", "edit", "text2image"};
    jobs_metrics *m = &b->m;
    size_t cap = *text ? *len + 1 : 0;
    int bad = 0;
    pthread_mutex_lock(&m->mu);
    bad |= append(text, len, &cap, "# TYPE cirrus_jobs gauge\n");
    for (int k = 1; k < JOBS_KINDS; k++)
        for (int s = 0; s < 6; s++)
            bad |= append(text, len, &cap, "cirrus_jobs{kind=\"%s\",state=\"%s\"} %llu\n",
                          kinds[k], states[s], (unsigned long long)m->by_state[k][s]);
    bad |= append(text, len, &cap,
                  "# TYPE cirrus_jobs_queue_depth gauge\ncirrus_jobs_queue_depth %llu\n"
                  "# TYPE cirrus_jobs_workers gauge\ncirrus_jobs_workers %llu\n",
                  (unsigned long long)m->queue_depth, (unsigned long long)m->workers);
    bad |= append(text, len, &cap, "# TYPE cirrus_jobs_workers_by_capability gauge\n");
    for (int k = 1; k < JOBS_KINDS; k++)
        bad |= append(text, len, &cap, "cirrus_jobs_workers_by_capability{kind=\"%s\"} %llu\n",
                      kinds[k], (unsigned long long)m->workers_by_cap[k]);
    bad |= append(text, len, &cap, "# TYPE cirrus_jobs_retries_total counter\n");
    for (int i = 0; i < 8; i++)
        bad |= append(text, len, &cap, "cirrus_jobs_retries_total{reason=\"%s\"} %llu\n",
                      reasons[i], (unsigned long long)m->retries[i]);
    bad |= append(text, len, &cap,
                  "# TYPE cirrus_jobs_submitted_total counter\ncirrus_jobs_submitted_total %llu\n"
                  "# TYPE cirrus_jobs_rejected_total counter\n"
                  "cirrus_jobs_rejected_total{reason=\"overloaded\"} %llu\n"
                  "cirrus_jobs_rejected_total{reason=\"invalid\"} %llu\n"
                  "# TYPE cirrus_jobs_evicted_total counter\ncirrus_jobs_evicted_total %llu\n",
                  (unsigned long long)m->submitted, (unsigned long long)m->rejected_overloaded,
                  (unsigned long long)m->rejected_invalid, (unsigned long long)m->evicted);
    bad |= append(text, len, &cap,
                  "# TYPE cirrus_jobs_store_commits_total counter\n"
                  "cirrus_jobs_store_commits_total %llu\n"
                  "# TYPE cirrus_jobs_store_syncs_total counter\n"
                  "cirrus_jobs_store_syncs_total %llu\n"
                  "# TYPE cirrus_jobs_store_sync_errors_total counter\n"
                  "cirrus_jobs_store_sync_errors_total %llu\n",
                  (unsigned long long)m->store_commits, (unsigned long long)m->store_syncs,
                  (unsigned long long)m->store_sync_errors);
    bad |= histogram(text, len, &cap, "cirrus_jobs_queue_wait_seconds", m->wait_buckets,
                     m->wait_sum, m->wait_n);
    bad |= histogram(text, len, &cap, "cirrus_jobs_run_seconds", m->run_buckets, m->run_sum,
                     m->run_n);
    pthread_mutex_unlock(&m->mu);
    return bad ? cr_error_set(CR_ERR_NOMEM, "out of memory for the job metrics") : CR_OK;
}
