/* intake.c — client requests to the broker (see broker_impl.h): Generate (checks, idempotency,
 * the queue bound; answered only once the record is committed), JobStatus, CancelJob,
 * ListJobs, Health. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "jobs/broker_impl.h"

#define LIST_DEFAULT 50
#define LIST_MAX 1000

static void reply_info(jobs_broker *b, const cr_wire_msg *route, uint64_t id, int op,
                       const jobs_job *j, const uint8_t *image, size_t image_len)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__JobInfo info;
    Cirrus__V1__JobAttempt *atts = calloc(j->n_log + 1, sizeof *atts);
    Cirrus__V1__JobAttempt **attp = calloc(j->n_log + 1, sizeof *attp);
    if (!atts || !attp) {
        cr_wire_reply_error(b->front, route, id, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    jobs_info_fill(j, &info, atts, attp);
    if (image) {
        info.image.data = (uint8_t *)image;
        info.image.len = image_len;
    }
    switch (op) {
    case CIRRUS__V1__REQUEST__OP_GENERATE:
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_GENERATE;
        resp.generate = &info;
        break;
    case CIRRUS__V1__REQUEST__OP_CANCEL_JOB:
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_CANCEL_JOB;
        resp.cancel_job = &info;
        break;
    default:
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_JOB_STATUS;
        resp.job_status = &info;
    }
    if (cr_wire_reply_ok(b->front, route, id, &resp))
        CR_WARN("jobs", "answering about %s: %s", j->id, cr_error_message());
out:
    free(atts);
    free(attp);
}

/* A JobStatus answer: the job as it stands, with its stored result when asked. */
static void reply_status(jobs_broker *b, const cr_wire_msg *route, uint64_t id, const jobs_job *j,
                         int include_image)
{
    Cirrus__V1__JobRecord *rec = NULL;
    /* a result not yet flushed is still in memory (the soak saw "succeeded" without its
     * image when only the store was read) */
    if (include_image && j->image) {
        reply_info(b, route, id, CIRRUS__V1__REQUEST__OP_JOB_STATUS, j, j->image, j->image_len);
        return;
    }
    if (include_image && j->stored_image && !j->evict &&
        jobs_store_get(b->st, j->id, &rec) != CR_OK)
        CR_WARN("jobs", "%s: reading its result: %s", j->id, cr_error_message());
    reply_info(b, route, id, CIRRUS__V1__REQUEST__OP_JOB_STATUS, j, rec ? rec->image.data : NULL,
               rec ? rec->image.len : 0);
    if (rec)
        cirrus__v1__job_record__free_unpacked(rec, NULL);
}

void jobs_waiter_answer(jobs_broker *b, jobs_job *j, jobs_waiter *w, cr_err code,
                        const char *msg)
{
    if (code || !j)
        cr_wire_reply_error(b->front, &w->route, w->req_id, code ? code : CR_ERR_INTERNAL,
                            msg);
    else if (w->op == CIRRUS__V1__REQUEST__OP_JOB_STATUS)
        reply_status(b, &w->route, w->req_id, j, w->include_image);
    else
        reply_info(b, &w->route, w->req_id, w->op, j, NULL, 0);
    cr_wire_msg_close(&w->route);
    free(w);
}

void jobs_waiters_settle(jobs_broker *b, jobs_job *j, uint64_t now_mono_ms, int force)
{
    (void)now_mono_ms;
    (void)force;
    /* every waiter waits for durability only (clients poll for the end: cirrus_job_wait):
     * for the submit to be synced, or for a final state already in memory to be */
    if (!jobs_synced(b, j))
        return;
    while (j->waiters) {
        jobs_waiter *w = j->waiters;
        j->waiters = w->next;
        jobs_waiter_answer(b, j, w, CR_OK, NULL);
    }
}

static size_t queued_total(const jobs_broker *b)
{
    size_t n = 0;
    for (int k = 0; k < JOBS_KINDS; k++)
        n += b->queued[k].n;
    return n;
}

void jobs_submit(jobs_broker *b, jobs_job *j, jobs_waiter *w)
{
    uint32_t budget = j->req->job_deadline_ms ? j->req->job_deadline_ms : b->o.job_deadline_ms;
    if (queued_total(b) >= b->o.queue) {
        jobs_metrics_count(b, &b->m.rejected_overloaded);
        jobs_waiter_answer(b, NULL, w, CR_ERR_OVERLOADED, "the job queue is full");
        jobs_job_free(j);
        return;
    }
    j->deadline_ms = j->created_ms + budget;
    jobs_index(b, j);
    w->next = j->waiters;
    j->waiters = w;
    jobs_dirty_report(b, j);
    jobs_metrics_count(b, &b->m.submitted);
    CR_INFO("jobs", "%s %s queued%s%s", j->id, jobs_kind_name(j->kind), j->key ? " key " : "",
            j->key ? j->key : "");
}

/* By signature: a PNG, a JPEG (SOI + a marker) or a WebP (RIFF....WEBP); libcirrus checks
 * the same (client/jobs.c), the broker again for clients that do not use it. */
static int image_signature_ok(const ProtobufCBinaryData *b)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = b->data;
    if (!b->len)
        return 1; /* absent */
    if (b->len >= 8 && memcmp(p, png, 8) == 0)
        return 1;
    if (b->len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return 1;
    return b->len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0;
}

static int size_bad(uint32_t v)
{
    return v && (v < JOBS_SIZE_MIN || v > JOBS_SIZE_MAX || v % 8);
}

/* Checks a request's fields; NULL when it can run, else the reason. */
static const char *generate_check(const Cirrus__V1__GenerateRequest *g)
{
    static const char *const categories[] = {"upper_body", "lower_body", "dresses"};
    int category_ok = !g->category || !g->category[0];
    for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++)
        category_ok |= g->category && strcmp(g->category, categories[i]) == 0;
    if (g->kind < CIRRUS__V1__JOB_KIND__JOB_TRYON || g->kind > CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE)
        return "unknown job kind (tryon, edit or text2image)";
    if (g->kind != CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE && !g->person_image.len)
        return "person_image is required";
    if (g->kind == CIRRUS__V1__JOB_KIND__JOB_TRYON && !g->garment_image.len &&
        !(g->garment_item_id && g->garment_item_id[0]))
        return "a try-on needs garment_image or garment_item_id";
    if (g->kind == CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE && !(g->text && g->text[0]))
        return "text2image needs text";
    if (g->person_image.len > JOBS_MAX_IMAGE || g->garment_image.len > JOBS_MAX_IMAGE ||
        g->mask.len > JOBS_MAX_IMAGE || g->sketch.len > JOBS_MAX_IMAGE)
        return "an image exceeds 16 MiB";
    if (!image_signature_ok(&g->person_image) || !image_signature_ok(&g->garment_image) ||
        !image_signature_ok(&g->mask) || !image_signature_ok(&g->sketch))
        return "an image (person, garment, mask or sketch) is not a PNG, JPEG or WebP image";
    if (!category_ok)
        return "category: upper_body, lower_body or dresses";
    if (g->text && strlen(g->text) > JOBS_MAX_TEXT)
        return "text exceeds 4096 bytes";
    if (g->idempotency_key && strlen(g->idempotency_key) > JOBS_MAX_KEY)
        return "idempotency_key exceeds 200 bytes";
    if (g->steps > 1000)
        return "steps: 0..1000";
    if (size_bad(g->width) || size_bad(g->height))
        return "width and height: multiples of 8 in 64..2048";
    if (!(g->guidance >= 0 && g->guidance <= JOBS_GUIDANCE_MAX)) /* NaN too */
        return "guidance: 0..50";
    return NULL;
}

static jobs_waiter *waiter_new(cr_wire_msg *m, uint64_t id, int op)
{
    jobs_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    cr_wire_msg_take_route(&w->route, m);
    w->req_id = id;
    w->op = op;
    return w;
}

static void on_generate(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    const Cirrus__V1__GenerateRequest *g = rq->generate;
    const char *why = generate_check(g);
    Cirrus__V1__GenerateRequest *own = NULL;
    jobs_waiter *w;
    jobs_job *j;
    uint8_t *buf = NULL;
    size_t len;
    if (why) {
        jobs_metrics_count(b, &b->m.rejected_invalid);
        cr_wire_reply_error(b->front, m, rq->id, CR_ERR_INVALID, why);
        return;
    }
    if (g->idempotency_key && g->idempotency_key[0] &&
        (j = jobs_find_key(b, g->idempotency_key))) {
        if (jobs_synced(b, j)) {
            reply_info(b, m, rq->id, CIRRUS__V1__REQUEST__OP_GENERATE, j, NULL, 0);
        } else if ((w = waiter_new(m, rq->id, CIRRUS__V1__REQUEST__OP_GENERATE))) {
            w->next = j->waiters;
            j->waiters = w;
        }
        return;
    }
    /* the job outlives the message: a copy on the default allocator */
    len = cirrus__v1__generate_request__get_packed_size(g);
    if (!(buf = malloc(len ? len : 1)))
        goto nomem;
    cirrus__v1__generate_request__pack(g, buf);
    own = cirrus__v1__generate_request__unpack(NULL, len, buf);
    free(buf);
    if (!own)
        goto nomem;
    own->wait = 0;
    if (!(j = jobs_job_new(b, own))) {
        cirrus__v1__generate_request__free_unpacked(own, NULL);
        goto nomem;
    }
    if (!(w = waiter_new(m, rq->id, CIRRUS__V1__REQUEST__OP_GENERATE))) {
        jobs_job_free(j);
        goto nomem;
    }
    jobs_garment_start(b, j, w);
    return;
nomem:
    cr_wire_reply_error(b->front, m, rq->id, CR_ERR_NOMEM, "out of memory");
}

/* A job whose final state is not yet synced is answered after the sync (a result or a
 * cancel is never reported before it would survive a crash). 1 when deferred; on no memory
 * the answer is not deferred. */
static int defer_until_synced(jobs_broker *b, cr_wire_msg *m, uint64_t id, int op, jobs_job *j,
                              int include_image)
{
    jobs_waiter *w;
    if (jobs_synced(b, j))
        return 0;
    if (j->report_sync && b->flush_single) {
        /* its end state failed to be written and waits for the store's next retry: say so
         * now rather than hold the client until a write that may need --job-store-mb */
        cr_wire_reply_error(b->front, m, id, CR_ERR_STORE,
                            "the job's new state cannot be written to the job store yet "
                            "(retried every heartbeat; see the broker's log)");
        return 1;
    }
    if (!(w = waiter_new(m, id, op)))
        return 0;
    w->include_image = include_image;
    w->next = j->waiters;
    j->waiters = w;
    return 1;
}

static void on_status(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    const Cirrus__V1__JobStatusRequest *s = rq->job_status;
    jobs_job *j = s->job_id ? jobs_find(b, s->job_id) : NULL;
    if (!j || !j->durable) {
        cr_wire_reply_error(b->front, m, rq->id, CR_NOTFOUND, "no such job");
        return;
    }
    if (defer_until_synced(b, m, rq->id, CIRRUS__V1__REQUEST__OP_JOB_STATUS, j,
                           s->include_image))
        return;
    reply_status(b, m, rq->id, j, s->include_image);
}

static void on_cancel(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    const char *id = rq->cancel_job->job_id;
    jobs_job *j = id ? jobs_find(b, id) : NULL;
    if (!j || !j->durable) {
        cr_wire_reply_error(b->front, m, rq->id, CR_NOTFOUND, "no such job");
        return;
    }
    if (j->state == CIRRUS__V1__JOB_STATE__JOB_QUEUED) {
        jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_CANCELLED, "cancelled while queued");
    } else if (j->state == CIRRUS__V1__JOB_STATE__JOB_RUNNING && !j->cancel_requested) {
        j->cancel_requested = 1;
        jobs_dirty(b, j);
        jobs_cancel_send(b, j);
    }
    if (defer_until_synced(b, m, rq->id, CIRRUS__V1__REQUEST__OP_CANCEL_JOB, j, 0))
        return;
    reply_info(b, m, rq->id, CIRRUS__V1__REQUEST__OP_CANCEL_JOB, j, NULL, 0);
}

static void on_list(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    const Cirrus__V1__ListJobsRequest *l = rq->list_jobs;
    uint32_t limit = l->limit ? l->limit : LIST_DEFAULT;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__JobList list = CIRRUS__V1__JOB_LIST__INIT;
    Cirrus__V1__JobInfo *infos, **infop;
    size_t n = 0;
    if (limit > LIST_MAX)
        limit = LIST_MAX;
    infos = calloc(limit, sizeof *infos);
    infop = calloc(limit, sizeof *infop);
    if (!infos || !infop) {
        cr_wire_reply_error(b->front, m, rq->id, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* newest first; the attempt logs are left out of a listing */
    for (jobs_job *j = b->all_tail; j && n < limit; j = j->all_prev) {
        if (!j->durable || (l->has_state && j->state != l->state))
            continue;
        jobs_info_fill(j, &infos[n], NULL, NULL);
        infos[n].n_attempt_log = 0;
        infos[n].attempt_log = NULL;
        infop[n] = &infos[n];
        n++;
    }
    list.n_jobs = n;
    list.jobs = infop;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_LIST_JOBS;
    resp.list_jobs = &list;
    cr_wire_reply_ok(b->front, m, rq->id, &resp);
out:
    free(infos);
    free(infop);
}

static void on_health(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = (char *)"jobs";
    h.version = (char *)"";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    cr_wire_reply_ok(b->front, m, rq->id, &resp);
}

void jobs_on_client(jobs_broker *b, cr_wire_msg *m)
{
    cr_pb_bounded alloc;
    Cirrus__V1__Request *rq = NULL;
    cr_pb_bounded_init(&alloc, b->lim.max_alloc);
    if (cr_wire_unpack_request(m, &alloc, &rq)) {
        cr_wire_reply_error(b->front, m, 0, CR_ERR_PROTO, cr_error_message());
        return;
    }
    switch (rq->op_case) {
    case CIRRUS__V1__REQUEST__OP_GENERATE:
        on_generate(b, m, rq);
        break;
    case CIRRUS__V1__REQUEST__OP_JOB_STATUS:
        on_status(b, m, rq);
        break;
    case CIRRUS__V1__REQUEST__OP_CANCEL_JOB:
        on_cancel(b, m, rq);
        break;
    case CIRRUS__V1__REQUEST__OP_LIST_JOBS:
        on_list(b, m, rq);
        break;
    case CIRRUS__V1__REQUEST__OP_HEALTH:
        on_health(b, m, rq);
        break;
    default:
        cr_wire_reply_error(b->front, m, rq->id, CR_ERR_UNSUPPORTED,
                            "the job broker answers Generate, JobStatus, CancelJob, ListJobs "
                            "and Health");
    }
    protobuf_c_message_free_unpacked(&rq->base, &alloc.base);
}

/* Whether a worker connected now announced kind k. */
static int kind_offered(const jobs_broker *b, int k)
{
    for (int i = 0; i < JOBS_MAX_WORKERS; i++)
        if (b->workers[i].used && (b->workers[i].caps & (1u << k)))
            return 1;
    return 0;
}

/* Queued jobs whose deadline passed expire (saying whether no connected worker offers their
 * kind); running ones are told to stop. */
void jobs_deadlines(jobs_broker *b, uint64_t now_ms, uint64_t now_mono)
{
    (void)now_mono;
    for (int k = 0; k < JOBS_KINDS; k++) {
        jobs_job *next;
        for (jobs_job *j = b->queued[k].head; j; j = next) {
            char why[128];
            next = j->q_next;
            if (!j->deadline_ms || now_ms < j->deadline_ms)
                continue;
            if (kind_offered(b, k))
                snprintf(why, sizeof why, "deadline passed while queued");
            else
                snprintf(why, sizeof why, "deadline passed while queued: no connected worker "
                         "offers kind %s%s", jobs_kind_name((Cirrus__V1__JobKind)k),
                         b->workers_by_kind_seen & (1u << k) ? "" : " (none has since the start)");
            jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_EXPIRED, why);
        }
    }
    for (jobs_job *j = b->running.head; j; j = j->q_next)
        if (j->deadline_ms && now_ms >= j->deadline_ms && !j->cancel_sent)
            jobs_cancel_send(b, j);
}
