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

void jobs_waiter_answer(jobs_broker *b, jobs_job *j, jobs_waiter *w, cr_err code,
                        const char *msg)
{
    if (code || !j)
        cr_wire_reply_error(b->front, &w->route, w->req_id, code ? code : CR_ERR_INTERNAL,
                            msg);
    else
        reply_info(b, &w->route, w->req_id, w->op, j, NULL, 0);
    cr_wire_msg_close(&w->route);
    free(w);
}

void jobs_waiters_settle(jobs_broker *b, jobs_job *j, uint64_t now_mono_ms, int force)
{
    (void)now_mono_ms;
    (void)force;
    /* every waiter waits for durability only (clients poll for the end: cirrus_job_wait) */
    if (!j->durable)
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
    jobs_dirty(b, j);
    jobs_metrics_count(b, &b->m.submitted);
    CR_INFO("jobs", "%s %s queued%s%s", j->id, jobs_kind_name(j->kind), j->key ? " key " : "",
            j->key ? j->key : "");
}

/* Checks a request's fields; NULL when it can run, else the reason. */
static const char *generate_check(const Cirrus__V1__GenerateRequest *g)
{
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
    if (g->text && strlen(g->text) > JOBS_MAX_TEXT)
        return "text exceeds 4096 bytes";
    if (g->idempotency_key && strlen(g->idempotency_key) > JOBS_MAX_KEY)
        return "idempotency_key exceeds 200 bytes";
    if (g->steps > 1000)
        return "steps: 0..1000";
    if (g->width > 2048 || g->height > 2048 || (g->width && g->width < 16) ||
        (g->height && g->height < 16))
        return "width and height: 16..2048";
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
        if (j->durable) {
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

static void on_status(jobs_broker *b, cr_wire_msg *m, const Cirrus__V1__Request *rq)
{
    const Cirrus__V1__JobStatusRequest *s = rq->job_status;
    jobs_job *j = s->job_id ? jobs_find(b, s->job_id) : NULL;
    Cirrus__V1__JobRecord *rec = NULL;
    const uint8_t *img = NULL;
    size_t img_len = 0;
    if (!j || !j->durable) {
        cr_wire_reply_error(b->front, m, rq->id, CR_NOTFOUND, "no such job");
        return;
    }
    /* A job that just succeeded holds its image until the next flush commits it: a status
     * asked for in between gets it from memory (else it said "succeeded" with no image: one
     * of the soak's job errors). */
    if (s->include_image && j->image) {
        img = j->image;
        img_len = j->image_len;
    } else if (s->include_image && j->stored_image && !j->evict) {
        if (jobs_store_get(b->st, j->id, &rec) == CR_OK) {
            img = rec->image.data;
            img_len = rec->image.len;
        } else {
            CR_WARN("jobs", "%s: reading its result: %s", j->id, cr_error_message());
        }
    }
    reply_info(b, m, rq->id, CIRRUS__V1__REQUEST__OP_JOB_STATUS, j, img, img_len);
    if (rec)
        cirrus__v1__job_record__free_unpacked(rec, NULL);
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

/* Queued jobs whose deadline passed expire; running ones are told to stop. */
void jobs_deadlines(jobs_broker *b, uint64_t now_ms, uint64_t now_mono)
{
    (void)now_mono;
    for (int k = 0; k < JOBS_KINDS; k++) {
        jobs_job *next;
        for (jobs_job *j = b->queued[k].head; j; j = next) {
            next = j->q_next;
            if (j->deadline_ms && now_ms >= j->deadline_ms)
                jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_EXPIRED,
                            b->workers_by_kind_seen & (1u << k)
                                ? "deadline passed while queued"
                                : "deadline passed while queued: no worker offers this kind");
        }
    }
    for (jobs_job *j = b->running.head; j; j = j->q_next)
        if (j->deadline_ms && now_ms >= j->deadline_ms && !j->cancel_sent)
            jobs_cancel_send(b, j);
}
