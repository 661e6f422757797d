/* dispatch.c — the broker's side of the worker protocol (docs/protocol.md): Ready, heartbeats
 * both ways, progress, results, liveness, and FCFS dispatch per kind to idle capable workers.
 * A worker's messages are one frame each (a WorkerMsg) behind the ROUTER's identity frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "jobs/broker_impl.h"

static void send_to(jobs_broker *b, jobs_worker *w, const Cirrus__V1__DispatchMsg *d)
{
    if (cr_wire_send(b->wsock, &w->route, &d->base, CR_SOCK_DONTWAIT))
        CR_WARN("jobs", "sending to worker %s: %s", w->name, cr_error_message());
    w->last_sent_ms = cr_clock_mono_ms();
}

static void send_reconnect(jobs_broker *b, cr_wire_msg *m, const char *why)
{
    Cirrus__V1__DispatchMsg d = CIRRUS__V1__DISPATCH_MSG__INIT;
    Cirrus__V1__WorkerReconnect r = CIRRUS__V1__WORKER_RECONNECT__INIT;
    r.reason = (char *)why;
    d.msg_case = CIRRUS__V1__DISPATCH_MSG__MSG_RECONNECT;
    d.reconnect = &r;
    cr_wire_send(b->wsock, m, &d.base, CR_SOCK_DONTWAIT);
}

static jobs_worker *worker_find(jobs_broker *b, const uint8_t *rid, size_t len)
{
    for (int i = 0; i < JOBS_MAX_WORKERS; i++) {
        jobs_worker *w = &b->workers[i];
        if (w->used && w->rid_len == len && memcmp(w->rid, rid, len) == 0)
            return w;
    }
    return NULL;
}

/* Puts j back in its kind's queue at its place by seq (it keeps its turn). */
static void requeue(jobs_broker *b, jobs_job *j)
{
    jobs_list *l = &b->queued[j->kind];
    jobs_job *at = l->head;
    while (at && at->seq < j->seq)
        at = at->q_next;
    j->state = CIRRUS__V1__JOB_STATE__JOB_QUEUED;
    j->queued_us = cr_clock_mono_us();
    if (!at) {
        jobs_list_push(l, j);
        return;
    }
    j->q_next = at;
    j->q_prev = at->q_prev;
    if (at->q_prev)
        at->q_prev->q_next = j;
    else
        l->head = j;
    at->q_prev = j;
    l->n++;
}

/* An attempt of j ended without a result it can keep: run again, or fail after the last. */
static void attempt_failed(jobs_broker *b, jobs_job *j, const char *reason, const char *detail)
{
    uint64_t now = (uint64_t)cr_clock_unix_ms();
    char msg[256];
    jobs_list_remove(&b->running, j);
    if (j->worker && j->worker->active)
        j->worker->active--;
    j->worker = NULL;
    jobs_attempt_end(j, reason, now);
    jobs_metrics_retry(b, reason);
    snprintf(msg, sizeof msg, "%s%s%s", reason, detail ? ": " : "", detail ? detail : "");
    if (j->cancel_requested) {
        jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_CANCELLED, "cancelled while running");
    } else if (j->attempts >= b->o.attempts) {
        char err[300];
        snprintf(err, sizeof err, "%u attempts failed, the last: %s", j->attempts, msg);
        jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_FAILED, err);
    } else {
        CR_WARN("jobs", "%s attempt %u: %s; queued again", j->id, j->attempts, msg);
        j->started_ms = 0;
        requeue(b, j);
        jobs_dirty(b, j);
    }
}

/* A worker gone (silent, disconnected, or Ready again): its jobs run elsewhere. */
static void worker_drop(jobs_broker *b, jobs_worker *w, const char *reason)
{
    jobs_job *next;
    CR_WARN("jobs", "worker %s: %s (%u jobs held)", w->name, reason, w->active);
    for (jobs_job *j = b->running.head; j; j = next) {
        next = j->q_next;
        if (j->worker == w)
            attempt_failed(b, j, reason, NULL);
    }
    cr_wire_msg_close(&w->route);
    memset(w, 0, sizeof *w);
}

static void on_ready(jobs_broker *b, jobs_worker *w, cr_wire_msg *m, const uint8_t *rid,
                     size_t rid_len, const Cirrus__V1__WorkerReady *r)
{
    if (w) /* Ready again: it dropped whatever it held */
        worker_drop(b, w, "worker lost");
    for (int i = 0; i < JOBS_MAX_WORKERS && !w; i++)
        if (!b->workers[i].used)
            w = &b->workers[i];
    if (!w || rid_len > sizeof w->rid) {
        send_reconnect(b, m, "the broker has no room for another worker");
        return;
    }
    memset(w, 0, sizeof *w);
    w->used = 1;
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    cr_wire_msg_take_route(&w->route, m);
    snprintf(w->name, sizeof w->name, "%s", r->worker_id && r->worker_id[0] ? r->worker_id : "?");
    for (size_t i = 0; i < r->n_capabilities; i++)
        if ((unsigned)r->capabilities[i] < JOBS_KINDS && r->capabilities[i])
            w->caps |= 1u << r->capabilities[i];
    b->workers_by_kind_seen |= w->caps;
    w->concurrency = r->concurrency < 1 ? 1 : r->concurrency > JOBS_MAX_CONCURRENCY
                                                  ? JOBS_MAX_CONCURRENCY : r->concurrency;
    w->last_heard_ms = cr_clock_mono_ms();
    CR_INFO("jobs", "worker %s ready: caps 0x%x, concurrency %u", w->name, w->caps,
            w->concurrency);
}

static jobs_job *held(jobs_broker *b, jobs_worker *w, const char *id)
{
    jobs_job *j = id ? jobs_find(b, id) : NULL;
    return j && j->worker == w && j->state == CIRRUS__V1__JOB_STATE__JOB_RUNNING ? j : NULL;
}

static void on_result(jobs_broker *b, jobs_worker *w, const Cirrus__V1__JobResult *r)
{
    jobs_job *j = held(b, w, r->job_id);
    int code = r->status ? r->status->code : CR_ERR_INTERNAL;
    const char *msg = r->status && r->status->message ? r->status->message : "";
    if (!j) {
        CR_WARN("jobs", "worker %s: result for job %s it does not hold: ignored", w->name,
                r->job_id ? r->job_id : "?");
        return;
    }
    if (code == 0 && r->image.len) {
        jobs_list_remove(&b->running, j);
        w->active--;
        j->worker = NULL;
        jobs_attempt_end(j, "", (uint64_t)cr_clock_unix_ms());
        if (!(j->image = malloc(r->image.len))) {
            attempt_failed(b, j, "worker error", "out of memory for the result");
            return;
        }
        memcpy(j->image, r->image.data, r->image.len);
        j->image_len = r->image.len;
        jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED, NULL);
        return;
    }
    if (j->cancel_requested || code == CR_ERR_DEADLINE) {
        uint64_t now = (uint64_t)cr_clock_unix_ms();
        int cancelled = j->cancel_requested;
        char why[300];
        jobs_list_remove(&b->running, j);
        w->active--;
        j->worker = NULL;
        /* the worker says "cancelled" for the Cancel the broker sent at the deadline */
        snprintf(why, sizeof why, "deadline passed while running%s%s%s", msg[0] ? " (" : "",
                 msg, msg[0] ? ")" : "");
        jobs_attempt_end(j, cancelled ? "cancelled" : "timeout", now);
        jobs_finish(b, j, cancelled ? CIRRUS__V1__JOB_STATE__JOB_CANCELLED
                                    : CIRRUS__V1__JOB_STATE__JOB_FAILED,
                    cancelled ? "cancelled while running" : why);
        return;
    }
    if (code == CR_ERR_INVALID || code == CR_ERR_UNSUPPORTED) { /* another try fails alike */
        jobs_list_remove(&b->running, j);
        w->active--;
        j->worker = NULL;
        jobs_attempt_end(j, "worker error", (uint64_t)cr_clock_unix_ms());
        jobs_finish(b, j, CIRRUS__V1__JOB_STATE__JOB_FAILED, msg[0] ? msg : "refused");
        return;
    }
    attempt_failed(b, j, code == CR_ERR_NOMEM ? "out of memory" : "worker error", msg);
}

void jobs_on_worker(jobs_broker *b, cr_wire_msg *m)
{
    size_t rid_len, len;
    const uint8_t *rid = cr_wire_msg_route_frame(m, 0, &rid_len);
    const uint8_t *body = cr_wire_msg_body(m, &len);
    cr_pb_bounded alloc;
    ProtobufCMessage *pm = NULL;
    Cirrus__V1__WorkerMsg *wm;
    jobs_worker *w;
    if (!rid || m->nroute != 1) {
        CR_WARN("jobs", "dropped a worker message with %d routing frames", m->nroute);
        return;
    }
    cr_pb_bounded_init(&alloc, b->wlim.max_alloc);
    if (cr_wire_unpack(&cirrus__v1__worker_msg__descriptor, body, len, &alloc, &pm)) {
        CR_WARN("jobs", "dropped a malformed worker frame (%zu bytes): %s", len,
                cr_error_message());
        return;
    }
    wm = (Cirrus__V1__WorkerMsg *)pm;
    w = worker_find(b, rid, rid_len);
    if (wm->msg_case == CIRRUS__V1__WORKER_MSG__MSG_READY) {
        on_ready(b, w, m, rid, rid_len, wm->ready);
    } else if (!w) {
        /* a worker declared dead (silent) that resumed, or one that never sent Ready: what it
         * says about a job is stale (the job was requeued), so it is dropped, and said */
        if (wm->msg_case == CIRRUS__V1__WORKER_MSG__MSG_RESULT ||
            wm->msg_case == CIRRUS__V1__WORKER_MSG__MSG_PROGRESS) {
            const char *id = wm->msg_case == CIRRUS__V1__WORKER_MSG__MSG_RESULT
                                 ? wm->result->job_id : wm->progress->job_id;
            CR_WARN("jobs", "%s for job %s from a worker it does not know (declared dead, or "
                    "no Ready): ignored", wm->msg_case == CIRRUS__V1__WORKER_MSG__MSG_RESULT
                    ? "result" : "progress", id && id[0] ? id : "?");
        }
        if (wm->msg_case != CIRRUS__V1__WORKER_MSG__MSG_DISCONNECT)
            send_reconnect(b, m, "unknown worker: send Ready");
    } else {
        w->last_heard_ms = cr_clock_mono_ms();
        switch (wm->msg_case) {
        case CIRRUS__V1__WORKER_MSG__MSG_PROGRESS: {
            jobs_job *j = held(b, w, wm->progress->job_id);
            if (j) {
                j->step = wm->progress->step;
                j->fraction = wm->progress->fraction;
            }
            break;
        }
        case CIRRUS__V1__WORKER_MSG__MSG_RESULT:
            on_result(b, w, wm->result);
            break;
        case CIRRUS__V1__WORKER_MSG__MSG_DISCONNECT:
            worker_drop(b, w, "worker lost");
            break;
        default: /* heartbeat */
            break;
        }
    }
    protobuf_c_message_free_unpacked(pm, &alloc.base);
}

void jobs_cancel_send(jobs_broker *b, jobs_job *j)
{
    Cirrus__V1__DispatchMsg d = CIRRUS__V1__DISPATCH_MSG__INIT;
    Cirrus__V1__CancelJobRequest c = CIRRUS__V1__CANCEL_JOB_REQUEST__INIT;
    if (!j->worker)
        return;
    c.job_id = j->id;
    d.msg_case = CIRRUS__V1__DISPATCH_MSG__MSG_CANCEL;
    d.cancel = &c;
    j->cancel_sent = 1;
    send_to(b, j->worker, &d);
}

/* The idle capable worker used least recently, or NULL. */
static jobs_worker *pick(jobs_broker *b, Cirrus__V1__JobKind kind)
{
    jobs_worker *best = NULL;
    for (int i = 0; i < JOBS_MAX_WORKERS; i++) {
        jobs_worker *w = &b->workers[i];
        if (w->used && (w->caps & (1u << kind)) && w->active < w->concurrency &&
            (!best || w->last_dispatch < best->last_dispatch))
            best = w;
    }
    return best;
}

static void dispatch_one(jobs_broker *b, jobs_job *j, jobs_worker *w)
{
    Cirrus__V1__DispatchMsg d = CIRRUS__V1__DISPATCH_MSG__INIT;
    Cirrus__V1__Job job = CIRRUS__V1__JOB__INIT;
    uint64_t now = (uint64_t)cr_clock_unix_ms();
    jobs_list_remove(&b->queued[j->kind], j);
    jobs_metrics_wait(b, (double)(cr_clock_mono_us() - j->queued_us) / 1e6);
    j->state = CIRRUS__V1__JOB_STATE__JOB_RUNNING;
    j->attempts++;
    j->started_ms = now;
    j->worker = w;
    j->cancel_sent = 0;
    jobs_attempt_begin(j, w->name, now);
    jobs_list_push(&b->running, j);
    jobs_dirty(b, j);
    w->active++;
    w->last_dispatch = ++b->dispatch_clock;
    job.job_id = j->id;
    job.request = j->req;
    job.deadline_ms = j->deadline_ms > now ? (uint32_t)(j->deadline_ms - now) : 1;
    job.attempt = j->attempts;
    d.msg_case = CIRRUS__V1__DISPATCH_MSG__MSG_JOB;
    d.job = &job;
    send_to(b, w, &d);
    CR_INFO("jobs", "%s attempt %u to worker %s", j->id, j->attempts, w->name);
}

void jobs_dispatch(jobs_broker *b)
{
    for (int k = 1; k < JOBS_KINDS; k++) {
        jobs_worker *w;
        while (b->queued[k].head && (w = pick(b, (Cirrus__V1__JobKind)k)))
            dispatch_one(b, b->queued[k].head, w);
    }
}

void jobs_liveness(jobs_broker *b, uint64_t now_mono)
{
    Cirrus__V1__DispatchMsg d = CIRRUS__V1__DISPATCH_MSG__INIT;
    Cirrus__V1__CoordinatorHeartbeat hb = CIRRUS__V1__COORDINATOR_HEARTBEAT__INIT;
    d.msg_case = CIRRUS__V1__DISPATCH_MSG__MSG_HEARTBEAT;
    d.heartbeat = &hb;
    for (int i = 0; i < JOBS_MAX_WORKERS; i++) {
        jobs_worker *w = &b->workers[i];
        if (!w->used)
            continue;
        if (now_mono - w->last_heard_ms > (uint64_t)JOBS_DEAD_INTERVALS * b->o.heartbeat_ms) {
            worker_drop(b, w, "worker silent");
            continue;
        }
        if (now_mono - w->last_sent_ms >= b->o.heartbeat_ms)
            send_to(b, w, &d);
    }
}

void jobs_workers_free(jobs_broker *b)
{
    for (int i = 0; i < JOBS_MAX_WORKERS; i++)
        if (b->workers[i].used) {
            cr_wire_msg_close(&b->workers[i].route);
            b->workers[i].used = 0;
        }
}
