/* table.c — the broker's jobs in memory (see broker_impl.h): indexes by id and idempotency
 * key, the queue of each kind in submission order, records to and from the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "jobs/broker_impl.h"

static unsigned hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (unsigned)(h % JOBS_HASH);
}

jobs_job *jobs_find(jobs_broker *b, const char *id)
{
    for (jobs_job *j = b->by_id[hash_str(id)]; j; j = j->id_next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

jobs_job *jobs_find_key(jobs_broker *b, const char *key)
{
    for (jobs_job *j = b->by_key[hash_str(key)]; j; j = j->key_next)
        if (strcmp(j->key, key) == 0)
            return j;
    return NULL;
}

int jobs_terminal(Cirrus__V1__JobState s)
{
    return s != CIRRUS__V1__JOB_STATE__JOB_QUEUED && s != CIRRUS__V1__JOB_STATE__JOB_RUNNING;
}

const char *jobs_state_name(Cirrus__V1__JobState s)
{
    static const char *names[] = {"queued", "running", "succeeded", "failed", "cancelled",
                                  "expired"};
    return (unsigned)s < 6 ? names[s] : "unknown";
}

const char *jobs_kind_name(Cirrus__V1__JobKind k)
{
    static const char *names[] = {"unspecified", "tryon", "edit", "text2image"};
    return (unsigned)k < JOBS_KINDS ? names[k] : "unknown";
}

jobs_job *jobs_job_new(jobs_broker *b, Cirrus__V1__GenerateRequest *req)
{
    jobs_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->seq = b->next_seq++;
    /* ids sort in submission order and never repeat across restarts (seq only grows) */
    snprintf(j->id, sizeof j->id, "j-%016llx", (unsigned long long)j->seq);
    j->req = req;
    j->kind = req->kind;
    j->state = CIRRUS__V1__JOB_STATE__JOB_QUEUED;
    if (req->idempotency_key && req->idempotency_key[0])
        j->key = strdup(req->idempotency_key);
    j->created_ms = (uint64_t)cr_clock_unix_ms();
    return j;
}

void jobs_list_push(jobs_list *l, jobs_job *j)
{
    j->q_next = NULL;
    j->q_prev = l->tail;
    if (l->tail)
        l->tail->q_next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

void jobs_list_remove(jobs_list *l, jobs_job *j)
{
    if (j->q_prev)
        j->q_prev->q_next = j->q_next;
    else
        l->head = j->q_next;
    if (j->q_next)
        j->q_next->q_prev = j->q_prev;
    else
        l->tail = j->q_prev;
    j->q_prev = j->q_next = NULL;
    l->n--;
}

/* Inserts j into the all-jobs list by seq (loading reads records in id order = seq order, and
 * new jobs have the highest seq, so this is an append in practice). */
static void all_insert(jobs_broker *b, jobs_job *j)
{
    jobs_job *after = b->all_tail;
    while (after && after->seq > j->seq)
        after = after->all_prev;
    j->all_prev = after;
    j->all_next = after ? after->all_next : b->all_head;
    if (j->all_next)
        j->all_next->all_prev = j;
    else
        b->all_tail = j;
    if (after)
        after->all_next = j;
    else
        b->all_head = j;
    b->n_all++;
}

void jobs_index(jobs_broker *b, jobs_job *j)
{
    unsigned h = hash_str(j->id);
    j->id_next = b->by_id[h];
    b->by_id[h] = j;
    if (j->key) {
        h = hash_str(j->key);
        j->key_next = b->by_key[h];
        b->by_key[h] = j;
    }
    all_insert(b, j);
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_QUEUED) {
        j->queued_us = cr_clock_mono_us();
        jobs_list_push(&b->queued[j->kind], j);
    }
}

static void unchain(jobs_job **head, jobs_job *j, int by_key)
{
    for (jobs_job **pp = head; *pp; pp = by_key ? &(*pp)->key_next : &(*pp)->id_next)
        if (*pp == j) {
            *pp = by_key ? j->key_next : j->id_next;
            return;
        }
}

void jobs_job_free(jobs_job *j)
{
    if (!j)
        return;
    if (j->req)
        cirrus__v1__generate_request__free_unpacked(j->req, NULL);
    while (j->waiters) {
        jobs_waiter *w = j->waiters;
        j->waiters = w->next;
        cr_wire_msg_close(&w->route);
        free(w);
    }
    free(j->key);
    free(j->log);
    free(j->image);
    free(j);
}

void jobs_job_drop(jobs_broker *b, jobs_job *j)
{
    unchain(&b->by_id[hash_str(j->id)], j, 0);
    if (j->key)
        unchain(&b->by_key[hash_str(j->key)], j, 1);
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_QUEUED)
        jobs_list_remove(&b->queued[j->kind], j);
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else
        b->all_head = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    else
        b->all_tail = j->all_prev;
    b->n_all--;
    for (jobs_job **pp = &b->dirty_head; *pp; pp = &(*pp)->dirty_next)
        if (*pp == j) {
            *pp = j->dirty_next;
            break;
        }
    if (j->sync_listed) {
        jobs_job *prev = NULL;
        for (jobs_job **pp = &b->unsynced_head; *pp; prev = *pp, pp = &(*pp)->sync_next)
            if (*pp == j) {
                *pp = j->sync_next;
                if (b->unsynced_tail == j)
                    b->unsynced_tail = prev;
                break;
            }
    }
    jobs_job_free(j);
}

void jobs_dirty(jobs_broker *b, jobs_job *j)
{
    if (j->dirty)
        return;
    j->dirty = 1;
    j->dirty_next = b->dirty_head;
    b->dirty_head = j;
}

void jobs_dirty_report(jobs_broker *b, jobs_job *j)
{
    j->report_sync = 1;
    jobs_dirty(b, j);
}

int jobs_synced(const jobs_broker *b, const jobs_job *j)
{
    return j->durable && !j->report_sync && j->sync_gen <= atomic_load(&b->synced_gen);
}

static void attempts_fill(const jobs_job *j, Cirrus__V1__JobAttempt *atts,
                          Cirrus__V1__JobAttempt **attp)
{
    for (size_t i = 0; i < j->n_log; i++) {
        cirrus__v1__job_attempt__init(&atts[i]);
        atts[i].worker = (char *)j->log[i].worker;
        atts[i].reason = (char *)j->log[i].reason;
        atts[i].started_ms = j->log[i].started_ms;
        atts[i].ended_ms = j->log[i].ended_ms;
        attp[i] = &atts[i];
    }
}

void jobs_record_fill(const jobs_job *j, Cirrus__V1__JobRecord *rec, Cirrus__V1__JobAttempt *atts,
                      Cirrus__V1__JobAttempt **attp)
{
    cirrus__v1__job_record__init(rec);
    rec->job_id = (char *)j->id;
    rec->request = j->req;
    rec->state = j->state;
    rec->attempts = j->attempts;
    attempts_fill(j, atts, attp);
    rec->n_attempt_log = j->n_log;
    rec->attempt_log = attp;
    rec->created_ms = j->created_ms;
    rec->started_ms = j->started_ms;
    rec->ended_ms = j->ended_ms;
    rec->deadline_ms = j->deadline_ms;
    rec->step = j->step;
    rec->fraction = j->fraction;
    rec->error = (char *)j->error;
    rec->cancel_requested = j->cancel_requested;
    rec->seq = j->seq;
    if (j->image) {
        rec->image.data = j->image;
        rec->image.len = j->image_len;
    }
}

void jobs_info_fill(const jobs_job *j, Cirrus__V1__JobInfo *info, Cirrus__V1__JobAttempt *atts,
                    Cirrus__V1__JobAttempt **attp)
{
    cirrus__v1__job_info__init(info);
    info->job_id = (char *)j->id;
    info->state = j->state;
    info->progress = j->fraction;
    info->error = (char *)j->error;
    info->attempts = j->attempts;
    info->worker = j->n_log ? (char *)j->log[j->n_log - 1].worker : (char *)"";
    info->step = j->step;
    info->kind = j->kind;
    info->created_ms = j->created_ms;
    info->started_ms = j->started_ms;
    info->ended_ms = j->ended_ms;
    /* j->image: a result the next flush commits */
    info->has_image = (j->stored_image > 0 || j->image) && !j->evict;
    if (atts && attp) { /* a listing leaves the attempt logs out */
        attempts_fill(j, atts, attp);
        info->n_attempt_log = j->n_log;
        info->attempt_log = attp;
    }
}

void jobs_attempt_begin(jobs_job *j, const char *worker, uint64_t now_ms)
{
    jobs_attempt *g = realloc(j->log, (j->n_log + 1) * sizeof *g);
    if (!g) { /* the log loses this entry; the count stays right */
        CR_WARN("jobs", "%s: out of memory for the attempt log", j->id);
        return;
    }
    j->log = g;
    memset(&g[j->n_log], 0, sizeof *g);
    snprintf(g[j->n_log].worker, sizeof g->worker, "%s", worker);
    g[j->n_log].started_ms = now_ms;
    j->n_log++;
}

void jobs_attempt_end(jobs_job *j, const char *reason, uint64_t now_ms)
{
    if (!j->n_log || j->log[j->n_log - 1].ended_ms)
        return;
    snprintf(j->log[j->n_log - 1].reason, sizeof j->log->reason, "%s", reason);
    j->log[j->n_log - 1].ended_ms = now_ms;
}

/* A finished job no longer needs its inputs: the record keeps the parameters, not the images
 * (they would fill the store with every person photo ever submitted). */
static void drop_inputs(Cirrus__V1__GenerateRequest *r)
{
    ProtobufCBinaryData *fields[] = {&r->person_image, &r->garment_image, &r->mask, &r->sketch};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        free(fields[i]->data);
        fields[i]->data = NULL;
        fields[i]->len = 0;
    }
}

void jobs_finish(jobs_broker *b, jobs_job *j, Cirrus__V1__JobState state, const char *error)
{
    uint64_t now = (uint64_t)cr_clock_unix_ms();
    /* a running job stays on the running list while its worker holds it (dispatch.c) */
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_QUEUED)
        jobs_list_remove(&b->queued[j->kind], j);
    j->state = state;
    j->ended_ms = now;
    if (error)
        snprintf(j->error, sizeof j->error, "%s", error);
    if (state == CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED) {
        j->fraction = 1.0f;
        if (j->started_ms)
            jobs_metrics_run(b, (double)(now - j->started_ms) / 1000.0);
    }
    if (j->req)
        drop_inputs(j->req);
    jobs_dirty_report(b, j);
    CR_INFO("jobs", "%s %s: %s%s%s (attempts %u)", j->id, jobs_kind_name(j->kind),
            jobs_state_name(state), j->error[0] ? ": " : "", j->error, j->attempts);
}

/* ---- loading ------------------------------------------------------------------------- */

static int load_one(void *ctx, Cirrus__V1__JobRecord *rec)
{
    jobs_broker *b = ctx;
    jobs_job *j = calloc(1, sizeof *j);
    if (!j || !rec->job_id || strlen(rec->job_id) >= sizeof j->id || !rec->request) {
        CR_WARN("jobs", "skipping a job record %s", j ? "without an id or request" : "(no memory)");
        free(j);
        cirrus__v1__job_record__free_unpacked(rec, NULL);
        return 0;
    }
    snprintf(j->id, sizeof j->id, "%s", rec->job_id);
    j->req = rec->request;
    rec->request = NULL; /* taken over: freed with the job */
    j->kind = (unsigned)j->req->kind < JOBS_KINDS ? j->req->kind : 0;
    if (j->req->idempotency_key && j->req->idempotency_key[0])
        j->key = strdup(j->req->idempotency_key);
    j->state = rec->state;
    j->seq = rec->seq;
    j->attempts = rec->attempts;
    j->created_ms = rec->created_ms;
    j->started_ms = rec->started_ms;
    j->ended_ms = rec->ended_ms;
    j->deadline_ms = rec->deadline_ms;
    j->step = rec->step;
    j->fraction = rec->fraction;
    j->cancel_requested = rec->cancel_requested;
    j->committed = 1;
    j->durable = 1;
    snprintf(j->error, sizeof j->error, "%s", rec->error ? rec->error : "");
    j->stored_image = rec->image.len;
    if (rec->n_attempt_log && (j->log = calloc(rec->n_attempt_log, sizeof *j->log))) {
        for (size_t i = 0; i < rec->n_attempt_log; i++) {
            snprintf(j->log[i].worker, sizeof j->log->worker, "%s",
                     rec->attempt_log[i]->worker ? rec->attempt_log[i]->worker : "");
            snprintf(j->log[i].reason, sizeof j->log->reason, "%s",
                     rec->attempt_log[i]->reason ? rec->attempt_log[i]->reason : "");
            j->log[i].started_ms = rec->attempt_log[i]->started_ms;
            j->log[i].ended_ms = rec->attempt_log[i]->ended_ms;
        }
        j->n_log = rec->n_attempt_log;
    }
    if (j->seq >= b->next_seq)
        b->next_seq = j->seq + 1;
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_RUNNING) {
        /* its worker's connection died with the old broker: run it again */
        jobs_attempt_end(j, "broker restart", (uint64_t)cr_clock_unix_ms());
        j->state = CIRRUS__V1__JOB_STATE__JOB_QUEUED;
        j->started_ms = 0;
        jobs_dirty(b, j);
    }
    jobs_index(b, j);
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED && j->stored_image)
        jobs_result_add(b, j);
    cirrus__v1__job_record__free_unpacked(rec, NULL);
    return 0;
}

/* Results loaded in id order are put back in the order they ended (eviction: oldest first). */
static void results_sort(jobs_broker *b)
{
    jobs_job *sorted = NULL, *next;
    for (jobs_job *j = b->res_head; j; j = next) {
        jobs_job **pp = &sorted;
        next = j->res_next;
        while (*pp && (*pp)->ended_ms <= j->ended_ms)
            pp = &(*pp)->res_next;
        j->res_next = *pp;
        *pp = j;
    }
    b->res_head = sorted;
    b->res_tail = NULL;
    for (jobs_job *j = sorted, *prev = NULL; j; prev = j, j = j->res_next) {
        j->res_prev = prev;
        b->res_tail = j;
    }
}

cr_err jobs_table_load(jobs_broker *b)
{
    size_t queued = 0, results = 0;
    cr_err rc;
    /* A fresh store starts its ids at the wall clock in microseconds, so that the ids of a
     * store wiped and made again do not repeat those a client may still hold. */
    b->next_seq = (uint64_t)cr_clock_unix_ms() * 1000;
    rc = jobs_store_each(b->st, load_one, b);
    if (rc)
        return rc;
    results_sort(b);
    for (int k = 0; k < JOBS_KINDS; k++)
        queued += b->queued[k].n;
    for (jobs_job *j = b->res_head; j; j = j->res_next)
        results++;
    CR_INFO("jobs", "loaded %zu jobs (%zu to run), %zu results of %zu bytes", b->n_all, queued,
            results, b->results_bytes);
    return CR_OK;
}

void jobs_table_free(jobs_broker *b)
{
    jobs_job *j = b->all_head, *next;
    for (; j; j = next) {
        next = j->all_next;
        jobs_job_free(j);
    }
    memset(b->by_id, 0, sizeof b->by_id);
    memset(b->by_key, 0, sizeof b->by_key);
    memset(b->queued, 0, sizeof b->queued);
    memset(&b->running, 0, sizeof b->running);
    b->all_head = b->all_tail = NULL;
    b->res_head = b->res_tail = NULL;
    b->dirty_head = NULL;
    b->n_all = 0;
}
