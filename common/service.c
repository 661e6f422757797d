#include "common/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/curve_zap.h"
#include "common/log.h"
#include "common/wire.h"

#define SVC_MAX_WORKERS 64
#define SVC_POLL_MS 100         /* longest sleep of a thread between checks of its stop flag */
#define SVC_START_WAIT_MS 10000 /* longest wait at open for the threads to run */
#define SVC_CANCEL_GRACE_MS 100 /* after the drain: time for cancelled work to answer */
#define SVC_STUCK_GRACE_MS 5000 /* after the drain: time for a busy pool thread to return */
#define SVC_FLUSH_MS 50         /* before closing the ROUTER: ZeroMQ sends what is queued */

enum { MODE_RUN = 0, MODE_DRAIN = 1, MODE_EXIT = 2 }; /* the front thread's */

/* A reply on its way to the front thread: routing frames (copies) and the packed body. */
typedef struct svc_out {
    cr_wire_msg m;
    struct svc_out *next;
} svc_out;

typedef struct call_queue {
    cr_svc_call *head, *tail;
    int n;
} call_queue;

struct cr_svc_call {
    cr_service *s;
    cr_wire_msg m; /* routing frames and body, as received */
    cr_pb_bounded alloc;
    Cirrus__V1__Request *req; /* unpacked through alloc; NULL until then */
    const cr_svc_op *op;      /* NULL: not in the table */
    int opcase;
    uint64_t id;              /* as peeked, for answers before the unpack */
    uint64_t recv_us;
    size_t weight;            /* writer requests */
    int on_front;             /* replies go to the ROUTER directly */
    int replied;
    atomic_int refs;          /* the skeleton's, and a holder's after cr_svc_call_keep */
    cr_svc_call *next;
};

/* Shared by the handle, its threads and its calls; freed by the last of them, so that a kept
 * call answered after close (or a pool thread left running) touches only live memory. */
struct cr_service {
    cr_svc_opts o;
    cr_svc_ops t;
    cr_svc_op *ops;
    void *ctx;
    char name[32], pool_name[32], bind[256], endpoint[256];
    cr_wire_limits lim;
    void *zctx;
    int own_zctx;
    void *front;    /* the ROUTER; the front thread's once it runs */
    cr_zap *zap;    /* checks CURVE clients (o.curve on a tcp:// bind) */
    int efd;        /* wakes the front: replies queued, mode changed */
    atomic_int refs;
    atomic_int alive;     /* calls not yet freed */
    atomic_int pool_busy; /* pool requests queued or running */
    atomic_int mode;
    atomic_int cancel;
    pthread_mutex_t mu;
    pthread_cond_t pool_cv, writer_cv, ready_cv;
    call_queue pool, writer;
    cr_svc_call **batch; /* the writer's, writer_queue long */
    svc_out *out_head, *out_tail;
    int out_signalled, abandoned, ready;
    int pool_stop, writer_stop;
    uint64_t drain_until_ms;
    int has_writer, front_started, writer_started, nworkers;
    pthread_t front_t, writer_t, workers[SVC_MAX_WORKERS];
};

cr_svc_opts cr_svc_default_opts(void)
{
    cr_svc_opts o;
    memset(&o, 0, sizeof o);
    o.name = "server";
    o.pool_name = "worker";
    o.workers = 2;
    o.pool_queue = 10000;
    o.pool_batch = 32;
    o.writer_queue = 1024;
    o.writer_batch = 8192;
    o.default_deadline_ms = 30000;
    o.drain_ms = 30000;
    o.idle_ms = 100;
    return o;
}

/* ---- lifetime ------------------------------------------------------------------------- */

static void svc_free(cr_service *s)
{
    for (svc_out *x = s->out_head, *n; x; x = n) {
        n = x->next;
        cr_wire_msg_close(&x->m);
        free(x);
    }
    if (s->efd >= 0)
        close(s->efd);
    pthread_cond_destroy(&s->pool_cv);
    pthread_cond_destroy(&s->writer_cv);
    pthread_cond_destroy(&s->ready_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->batch);
    free(s->ops);
    free(s);
}

static void svc_unref(cr_service *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        svc_free(s);
}

static void wake_front(cr_service *s)
{
    uint64_t one = 1;
    if (write(s->efd, &one, sizeof one) < 0)
        CR_WARN(s->name, "eventfd: %s", strerror(errno));
}

static void abs_deadline(struct timespec *ts, uint64_t ms)
{
    uint64_t until = cr_clock_mono_us() + ms * 1000u;
    ts->tv_sec = (time_t)(until / 1000000u);
    ts->tv_nsec = (long)(until % 1000000u) * 1000L;
}

static void thread_ready(cr_service *s)
{
    pthread_mutex_lock(&s->mu);
    s->ready++;
    pthread_cond_broadcast(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- calls ---------------------------------------------------------------------------- */

static void msg_move(cr_wire_msg *dst, cr_wire_msg *src)
{
    cr_wire_msg_init(dst);
    for (int i = 0; i < src->nroute; i++) {
        zmq_msg_init(&dst->route[i]);
        zmq_msg_move(&dst->route[i], &src->route[i]);
    }
    dst->nroute = src->nroute;
    if (src->has_body) {
        zmq_msg_init(&dst->body);
        zmq_msg_move(&dst->body, &src->body);
        dst->has_body = 1;
    }
}

static cr_svc_call *call_new(cr_service *s, cr_wire_msg *m, uint64_t recv_us)
{
    cr_svc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    c->recv_us = recv_us;
    c->on_front = 1;
    atomic_init(&c->refs, 1);
    msg_move(&c->m, m);
    cr_pb_bounded_init(&c->alloc, s->lim.max_alloc);
    atomic_fetch_add(&s->refs, 1);
    atomic_fetch_add(&s->alive, 1);
    return c;
}

static cr_err queue_out(cr_svc_call *c, const ProtobufCMessage *msg)
{
    cr_service *s = c->s;
    size_t len = protobuf_c_message_get_packed_size(msg);
    svc_out *x = calloc(1, sizeof *x);
    int drop;
    if (!x)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for a reply");
    cr_wire_msg_init(&x->m);
    for (int i = 0; i < c->m.nroute; i++) {
        zmq_msg_init(&x->m.route[i]);
        zmq_msg_copy(&x->m.route[i], &c->m.route[i]);
        x->m.nroute++;
    }
    if (zmq_msg_init_size(&x->m.body, len) != 0) {
        cr_wire_msg_close(&x->m);
        free(x);
        return cr_error_set(CR_ERR_NOMEM, "cannot allocate a %zu-byte reply", len);
    }
    x->m.has_body = 1;
    protobuf_c_message_pack(msg, zmq_msg_data(&x->m.body));
    pthread_mutex_lock(&s->mu);
    drop = s->abandoned;
    if (!drop) {
        if (s->out_tail)
            s->out_tail->next = x;
        else
            s->out_head = x;
        s->out_tail = x;
        if (!s->out_signalled) {
            s->out_signalled = 1;
            wake_front(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (drop) { /* close stopped waiting for this one: nobody sends it any more */
        cr_wire_msg_close(&x->m);
        free(x);
    }
    return CR_OK;
}

static cr_err send_reply(cr_svc_call *c, const ProtobufCMessage *msg)
{
    if (c->replied)
        return cr_error_set(CR_ERR_INTERNAL, "request %llu answered twice",
                            (unsigned long long)c->id);
    c->replied = 1;
    if (c->on_front)
        return cr_wire_send(c->s->front, &c->m, msg, 0);
    return queue_out(c, msg);
}

cr_err cr_svc_reply(cr_svc_call *c, const Cirrus__V1__Response *resp)
{
    cr_err rc = send_reply(c, &resp->base);
    if (rc)
        CR_WARN(c->s->name, "reply %llu: %s", (unsigned long long)resp->id, cr_error_message());
    return rc;
}

cr_err cr_svc_reply_ok(cr_svc_call *c, uint64_t id, Cirrus__V1__Response *resp)
{
    Cirrus__V1__Status st;
    cr_wire_status_set(&st, CR_OK, "");
    resp->id = id;
    resp->status = &st;
    return cr_svc_reply(c, resp);
}

cr_err cr_svc_reply_error(cr_svc_call *c, uint64_t id, cr_err code, const char *message)
{
    cr_wire_error e;
    cr_wire_error_init(&e, id, code, message);
    return cr_svc_reply(c, &e.resp);
}

const Cirrus__V1__Request *cr_svc_call_request(const cr_svc_call *c)
{
    return c->req;
}

uint64_t cr_svc_call_recv_us(const cr_svc_call *c)
{
    return c->recv_us;
}

const atomic_int *cr_svc_call_cancel(const cr_svc_call *c)
{
    return &c->s->cancel;
}

cr_svc_call *cr_svc_call_keep(cr_svc_call *c)
{
    /* The holder may finish with it before the skeleton's thread is back from the handler:
     * whichever lets go last frees it. */
    atomic_fetch_add(&c->refs, 1);
    c->on_front = 0; /* its reply may come from any thread: through the channel */
    return c;
}

static void call_free(cr_svc_call *c)
{
    cr_service *s = c->s;
    if (!c->replied) {
        CR_WARN(s->name, "request %llu (op %d) got no answer from its handler",
                (unsigned long long)c->id, c->opcase);
        cr_svc_reply_error(c, c->id, CR_ERR_INTERNAL, "the server sent no answer");
    }
    if (c->req)
        cirrus__v1__request__free_unpacked(c->req, &c->alloc.base);
    cr_wire_msg_close(&c->m);
    free(c);
    atomic_fetch_sub(&s->alive, 1);
    svc_unref(s);
}

static void call_unref(cr_svc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

void cr_svc_call_release(cr_svc_call **pp)
{
    if (!pp || !*pp)
        return;
    call_unref(*pp);
    *pp = NULL;
}

/* The skeleton is done with c: freed unless a handler kept it (then by its holder). */
static void call_done(cr_svc_call *c)
{
    call_unref(c);
}

/* ---- reading requests ------------------------------------------------------------------ */

static int read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; *i < n && shift < 64; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

/* A Request's id and op from its top-level fields, without unpacking (which copies every
 * byte of an op's payload). -1 when the walk finds what protobuf-c may judge otherwise (a
 * known field of the wrong wire type, a group, a cut field): the caller unpacks instead. */
static int peek_request(const zmq_msg_t *body, uint64_t *id, int *opcase)
{
    const uint8_t *p = zmq_msg_data((zmq_msg_t *)body);
    size_t n = zmq_msg_size((zmq_msg_t *)body), i = 0;
    *id = 0;
    *opcase = 0;
    while (i < n) {
        uint64_t key, v;
        const ProtobufCFieldDescriptor *f;
        int wt;
        if (!read_varint(p, n, &i, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
            return -1;
        wt = (int)(key & 7);
        f = protobuf_c_message_descriptor_get_field(&cirrus__v1__request__descriptor,
                                                    (unsigned)(key >> 3));
        if (f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? wt != 2 : f && wt != 0)
            return -1;
        switch (wt) {
        case 0:
            if (!read_varint(p, n, &i, &v))
                return -1;
            if (f && f->id == 1) /* Request.id */
                *id = v;
            break;
        case 1: if (n - i < 8) return -1; i += 8; break;
        case 5: if (n - i < 4) return -1; i += 4; break;
        case 2:
            if (!read_varint(p, n, &i, &v) || v > n - i)
                return -1;
            i += (size_t)v;
            if (f)
                *opcase = (int)f->id; /* protobuf-c's oneof case values are field numbers */
            break;
        default: return -1;
        }
    }
    return 0;
}

static const cr_svc_op *find_op(const cr_service *s, int opcase)
{
    for (size_t i = 0; i < s->t.n; i++)
        if (s->ops[i].op == opcase)
            return &s->ops[i];
    return NULL;
}

/* Unpacks c's body; on failure answers CR_ERR_PROTO (id 0: nothing of it can be trusted). */
static int call_unpack(cr_svc_call *c)
{
    if (c->req)
        return 1;
    if (cr_wire_unpack_request(&c->m, &c->alloc, &c->req) == CR_OK)
        return 1;
    cr_svc_reply_error(c, 0, CR_ERR_PROTO, cr_error_message());
    return 0;
}

/* ---- the pool ------------------------------------------------------------------------- */

static void queue_push(call_queue *q, cr_svc_call *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->n++;
}

static cr_svc_call *queue_pop(call_queue *q)
{
    cr_svc_call *c = q->head;
    if (c) {
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        c->next = NULL;
    }
    return c;
}

/* 1 when the pool took c (it replies through the channel from now on). */
static int pool_push(cr_service *s, cr_svc_call *c)
{
    int ok;
    pthread_mutex_lock(&s->mu);
    ok = !s->pool_stop && s->pool.n < s->o.pool_queue;
    if (ok) {
        c->on_front = 0;
        queue_push(&s->pool, c);
        atomic_fetch_add(&s->pool_busy, 1);
        pthread_cond_signal(&s->pool_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void default_op(cr_service *s, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    if (req->op_case == CIRRUS__V1__REQUEST__OP__NOT_SET)
        cr_svc_reply_error(c, req->id, CR_ERR_INVALID, "request without an operation");
    else
        cr_svc_reply_error(c, req->id, CR_ERR_UNSUPPORTED,
                           s->t.unsupported ? s->t.unsupported : "operation not served here");
}

/* A pool request before it runs: unpacked, and its deadline (from its receive) checked.
 * 0 when it was answered instead. */
static int pool_ready(cr_service *s, cr_svc_call *c)
{
    uint32_t budget;
    if (!call_unpack(c))
        return 0;
    budget = c->req->deadline_ms ? c->req->deadline_ms : s->o.default_deadline_ms;
    if ((cr_clock_mono_us() - c->recv_us) / 1000 > budget) {
        cr_svc_reply_error(c, c->req->id, CR_ERR_DEADLINE, "deadline passed while queued");
        return 0;
    }
    return 1;
}

/* 1 when c's op is the one whose queued requests run together. */
static int op_batches(const cr_service *s, const cr_svc_op *op)
{
    return op && s->o.batch && op->op == s->o.batch_op && op->where == CR_SVC_POOL;
}

static void pool_run(cr_service *s, cr_svc_call *c)
{
    if (!pool_ready(s, c))
        return;
    if (c->op)
        c->op->fn(s->ctx, c, c->req);
    else
        default_op(s, c, c->req);
}

/* calls[0..n) of one batching op: those still to run go to the op's batch function
 * together (one alone: to its fn). `run` has room for n. */
static void pool_run_batch(cr_service *s, cr_svc_call *const *calls, size_t n,
                           cr_svc_call **run)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (pool_ready(s, calls[i]))
            run[m++] = calls[i];
    if (m == 1)
        run[0]->op->fn(s->ctx, run[0], run[0]->req);
    else if (m > 1)
        s->o.batch(s->ctx, run, m);
}

/* Under s->mu, c just popped: when its op batches, moves the other calls of that op queued
 * now (in arrival order, up to pool_batch in all) from the queue to out[1..]; out[0] = c.
 * Returns how many out holds. */
static size_t take_batch(cr_service *s, cr_svc_call *c, cr_svc_call **out, size_t room)
{
    cr_svc_call *prev = NULL, *x = s->pool.head;
    size_t n = 1;
    out[0] = c;
    if (!op_batches(s, c->op))
        return 1;
    while (x && n < room) {
        cr_svc_call *next = x->next;
        if (x->op == c->op) {
            if (prev)
                prev->next = next;
            else
                s->pool.head = next;
            if (s->pool.tail == x)
                s->pool.tail = prev;
            s->pool.n--;
            x->next = NULL;
            out[n++] = x;
        } else {
            prev = x;
        }
        x = next;
    }
    return n;
}

static void *worker_main(void *arg)
{
    cr_service *s = arg;
    /* a batch, and the part of it still to run; without them every request runs alone */
    size_t room = (size_t)s->o.pool_batch;
    cr_svc_call **batch = room > 1 ? malloc(2 * room * sizeof *batch) : NULL, *one[1];
    if (!batch)
        room = 1;
    thread_ready(s);
    for (;;) {
        cr_svc_call *c, **calls = batch ? batch : one;
        size_t n;
        int late;
        pthread_mutex_lock(&s->mu);
        while (!s->pool.head && !s->pool_stop) {
            struct timespec ts;
            abs_deadline(&ts, SVC_POLL_MS);
            pthread_cond_timedwait(&s->pool_cv, &s->mu, &ts);
        }
        c = queue_pop(&s->pool);
        n = c ? take_batch(s, c, calls, room) : 0;
        late = s->pool_stop && cr_clock_mono_ms() > s->drain_until_ms;
        pthread_mutex_unlock(&s->mu);
        if (!c)
            break; /* stopping, and nothing is left */
        for (size_t i = 0; late && i < n; i++)
            cr_svc_reply_error(calls[i], calls[i]->req ? calls[i]->req->id : calls[i]->id,
                               CR_ERR_UNAVAILABLE, "the server is shutting down");
        if (!late && n > 1)
            pool_run_batch(s, calls, n, calls + room);
        else if (!late)
            pool_run(s, c);
        atomic_fetch_sub(&s->pool_busy, (int)n);
        for (size_t i = 0; i < n; i++)
            call_done(calls[i]);
    }
    free(batch);
    svc_unref(s);
    return NULL;
}

/* ---- the writer ----------------------------------------------------------------------- */

static void writer_push(cr_service *s, cr_svc_call *c)
{
    int queued = -1;
    pthread_mutex_lock(&s->mu);
    if (s->writer.n < s->o.writer_queue && !s->writer_stop) {
        c->on_front = 0;
        c->weight = s->t.write_weight ? s->t.write_weight(c->req) : 1;
        queue_push(&s->writer, c);
        pthread_cond_signal(&s->writer_cv);
    } else {
        queued = s->writer.n;
    }
    pthread_mutex_unlock(&s->mu);
    if (queued >= 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "write queue full (%d requests)", queued);
        cr_svc_reply_error(c, c->req->id, CR_ERR_OVERLOADED, msg);
        call_done(c);
    }
}

/* Takes queued requests up to the batch weight (at least one), waiting idle_ms at most. */
static size_t writer_take(cr_service *s)
{
    size_t n = 0, weight = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->writer.head && !s->writer_stop) {
        struct timespec ts;
        abs_deadline(&ts, s->o.idle_ms);
        pthread_cond_timedwait(&s->writer_cv, &s->mu, &ts);
    }
    while (s->writer.head && (n == 0 || weight + s->writer.head->weight <= s->o.writer_batch)) {
        weight += s->writer.head->weight;
        s->batch[n++] = queue_pop(&s->writer);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int writer_done(cr_service *s)
{
    int done;
    pthread_mutex_lock(&s->mu);
    done = s->writer_stop && !s->writer.head;
    pthread_mutex_unlock(&s->mu);
    return done;
}

static void *writer_main(void *arg)
{
    cr_service *s = arg;
    thread_ready(s);
    for (;;) {
        size_t n = writer_take(s);
        if (n) {
            s->t.write_batch(s->ctx, s->batch, n);
            for (size_t i = 0; i < n; i++)
                call_done(s->batch[i]);
        } else if (writer_done(s)) {
            break;
        }
        if (s->t.write_idle)
            s->t.write_idle(s->ctx, 0);
    }
    if (s->t.write_idle)
        s->t.write_idle(s->ctx, 1);
    svc_unref(s);
    return NULL;
}

/* ---- the front thread ----------------------------------------------------------------- */

static void send_out(void *sock, svc_out *x)
{
    for (int i = 0; i < x->m.nroute; i++)
        if (zmq_msg_send(&x->m.route[i], sock, ZMQ_SNDMORE) < 0)
            goto fail;
    x->m.nroute = 0;
    if (zmq_msg_send(&x->m.body, sock, 0) < 0)
        goto fail;
    x->m.has_body = 0;
    return;
fail:
    CR_DEBUG("service", "reply dropped: %s", zmq_strerror(errno));
}

/* Sends every reply the other threads queued. */
static void forward_replies(cr_service *s)
{
    svc_out *list;
    uint64_t v;
    if (read(s->efd, &v, sizeof v) < 0 && errno != EAGAIN)
        CR_WARN(s->name, "eventfd: %s", strerror(errno));
    pthread_mutex_lock(&s->mu);
    list = s->out_head;
    s->out_head = s->out_tail = NULL;
    s->out_signalled = 0;
    pthread_mutex_unlock(&s->mu);
    for (svc_out *x = list, *n; x; x = n) {
        n = x->next;
        send_out(s->front, x);
        cr_wire_msg_close(&x->m);
        free(x);
    }
}

static int more_waiting(void *sock)
{
    int ev = 0;
    size_t len = sizeof ev;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) == 0 && (ev & ZMQ_POLLIN);
}

/* A POOL request with a front function goes there first when the pool has no backlog to
 * hide the front's work behind: nothing else waiting, or every worker busy anyway. */
static int try_front(cr_service *s, cr_svc_call *c)
{
    if (!c->op || !c->op->front)
        return 0;
    if (op_batches(s, c->op)) {
        /* with others in flight, queued requests merge into one batch on a pool thread */
        if (atomic_load(&s->pool_busy) > 0 || more_waiting(s->front))
            return 0;
    } else if (atomic_load(&s->pool_busy) < s->o.workers && more_waiting(s->front)) {
        return 0;
    }
    if (!call_unpack(c))
        return 1;
    return c->op->front(s->ctx, c, c->req);
}

static void route_call(cr_service *s, cr_svc_call *c)
{
    cr_svc_where where = c->op ? c->op->where : CR_SVC_POOL;
    if (where == CR_SVC_FRONT) {
        if (call_unpack(c))
            c->op->fn(s->ctx, c, c->req);
    } else if (where == CR_SVC_WRITER) {
        cr_err rc;
        if (!call_unpack(c))
            goto done;
        rc = c->op->admit ? c->op->admit(s->ctx, c->req) : CR_OK;
        if (rc) {
            cr_svc_reply_error(c, c->req->id, rc, cr_error_message());
            goto done;
        }
        writer_push(s, c);
        return;
    } else {
        if (try_front(s, c))
            goto done;
        if (pool_push(s, c))
            return;
        cr_svc_reply_error(c, c->req ? c->req->id : c->id, CR_ERR_OVERLOADED,
                           "server overloaded: its request queue is full; retry later");
    }
done:
    call_done(c);
}

/* One request from the ROUTER: framing checked (errors answered there), op read, routed. */
static void take_front(cr_service *s)
{
    cr_wire_msg m;
    cr_svc_call *c;
    uint64_t now = cr_clock_mono_us(), id = 0;
    int opcase = 0, peeked;

    cr_wire_msg_init(&m);
    if (cr_wire_front_recv(s->front, &m, &s->lim) != CR_OK) {
        cr_wire_msg_close(&m);
        return;
    }
    peeked = peek_request(&m.body, &id, &opcase) == 0;
    c = call_new(s, &m, now);
    if (!c) {
        cr_wire_reply_error(s->front, &m, id, CR_ERR_NOMEM, "out of memory");
        cr_wire_msg_close(&m);
        return;
    }
    cr_wire_msg_close(&m);
    if (!peeked) {
        /* unusual encoding: let protobuf-c judge it */
        if (!call_unpack(c)) {
            call_done(c);
            return;
        }
        id = c->req->id;
        opcase = (int)c->req->op_case;
    }
    c->id = id;
    c->opcase = opcase;
    c->op = find_op(s, opcase);
    route_call(s, c);
}

static void *front_main(void *arg)
{
    cr_service *s = arg;
    cr_wire_spin spin = {s->o.spin_us, 0};
    thread_ready(s);
    for (;;) {
        int mode = atomic_load(&s->mode);
        zmq_pollitem_t items[2] = {{NULL, s->efd, ZMQ_POLLIN, 0}, {s->front, 0, ZMQ_POLLIN, 0}};
        if (mode == MODE_EXIT)
            break;
        /* Draining: requests are no longer read, replies still forwarded. */
        if (cr_wire_poll_spin(items, mode == MODE_RUN ? 2 : 1, SVC_POLL_MS, &spin) <= 0)
            continue;
        if (items[0].revents & ZMQ_POLLIN)
            forward_replies(s);
        if (mode == MODE_RUN && (items[1].revents & ZMQ_POLLIN))
            take_front(s);
    }
    forward_replies(s);
    cr_clock_sleep_ms(SVC_FLUSH_MS); /* LINGER is 0: let ZeroMQ's I/O thread send the last */
    zmq_close(s->front);
    s->front = NULL;
    svc_unref(s);
    return NULL;
}

/* ---- open / close --------------------------------------------------------------------- */

static cr_err check_opts(const cr_svc_opts *o, const cr_svc_ops *t)
{
    int writer = 0;
    if (!o || !t || !o->bind || !o->bind[0])
        return cr_error_set(CR_ERR_INVALID, "service: no bind endpoint");
    if (o->workers < 1 || o->workers > SVC_MAX_WORKERS)
        return cr_error_set(CR_ERR_INVALID, "service: %d workers (1..%d)", o->workers,
                            SVC_MAX_WORKERS);
    if (o->pool_queue < 1 || o->writer_queue < 1 || o->writer_batch < 1 || o->idle_ms < 1 ||
        o->pool_batch < 1 || o->pool_batch > 4096)
        return cr_error_set(CR_ERR_INVALID, "service: queue bounds must be positive (pool "
                            "batch 1..4096)");
    for (size_t i = 0; i < t->n; i++) {
        const cr_svc_op *op = &t->ops[i];
        if (op->where == CR_SVC_WRITER)
            writer = 1;
        else if ((op->where != CR_SVC_FRONT && op->where != CR_SVC_POOL) || !op->fn)
            return cr_error_set(CR_ERR_INVALID, "service: op %d has no handler", op->op);
    }
    if (writer && !t->write_batch)
        return cr_error_set(CR_ERR_INVALID, "service: writer ops without write_batch");
    return CR_OK;
}

static cr_err svc_new(cr_service **out, const cr_svc_opts *o, const cr_svc_ops *t, void *ctx)
{
    cr_service *s = calloc(1, sizeof *s);
    pthread_condattr_t ca;
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->t = *t;
    s->ctx = ctx;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->ops = calloc(t->n ? t->n : 1, sizeof *s->ops);
    s->batch = calloc((size_t)o->writer_queue, sizeof *s->batch);
    snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "server");
    snprintf(s->pool_name, sizeof s->pool_name, "%s", o->pool_name ? o->pool_name : "worker");
    snprintf(s->bind, sizeof s->bind, "%s", o->bind);
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->pool_cv, &ca);
    pthread_cond_init(&s->writer_cv, &ca);
    pthread_cond_init(&s->ready_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (s->efd < 0 || !s->ops || !s->batch) {
        cr_err rc = s->efd < 0 ? cr_error_set(CR_ERR_INTERNAL, "eventfd: %s", strerror(errno))
                               : cr_error_set(CR_ERR_NOMEM, "out of memory");
        svc_free(s);
        return rc;
    }
    if (t->n)
        memcpy(s->ops, t->ops, t->n * sizeof *s->ops);
    s->t.ops = s->ops;
    s->o.name = s->name;
    s->o.pool_name = s->pool_name;
    s->o.bind = s->bind;
    s->lim = cr_wire_default_limits();
    if (o->max_frame)
        s->lim.max_frame = o->max_frame;
    if (s->lim.max_alloc < 4 * s->lim.max_frame)
        s->lim.max_alloc = 4 * s->lim.max_frame;
    if (strncmp(o->bind, "inproc://", 9) == 0)
        s->lim.heartbeat_ivl_ms = 0;
    for (size_t i = 0; i < t->n; i++)
        s->has_writer |= t->ops[i].where == CR_SVC_WRITER;
    *out = s;
    return CR_OK;
}

/* The ZAP handler first: a CURVE socket bound without one would accept any client that
 * knows the server's public key. */
static cr_err curve_on(cr_service *s)
{
    cr_err rc = cr_zap_start(&s->zap, s->zctx, s->o.curve);
    if (!rc)
        rc = cr_curve_setup_server(s->front, s->o.curve);
    return rc;
}

static cr_err socket_open(cr_service *s)
{
    size_t len = sizeof s->endpoint;
    cr_err rc;
    if (s->o.zmq_ctx) {
        s->zctx = s->o.zmq_ctx;
    } else {
        rc = cr_wire_ctx_new(&s->zctx);
        if (rc)
            return rc;
        s->own_zctx = 1;
    }
    s->front = zmq_socket(s->zctx, ZMQ_ROUTER);
    if (!s->front)
        return cr_error_set(CR_ERR_NET, "socket: %s", zmq_strerror(errno));
    rc = cr_wire_socket_setup(s->front, &s->lim);
    if (!rc && s->o.curve && cr_endpoint_is_tcp(s->bind))
        rc = curve_on(s);
    if (rc)
        return rc;
    cr_warn_exposed(s->name, s->bind, s->zap != NULL, "CURVE (--curve-secret, --curve-allow)");
    if (zmq_bind(s->front, s->bind) != 0)
        return cr_error_set(CR_ERR_NET, "cannot bind %s: %s", s->bind, zmq_strerror(errno));
    if (zmq_getsockopt(s->front, ZMQ_LAST_ENDPOINT, s->endpoint, &len) != 0)
        snprintf(s->endpoint, sizeof s->endpoint, "%s", s->bind);
    return CR_OK;
}

/* Starts one thread holding a reference on s; 0 or the pthread error. */
static int spawn(cr_service *s, pthread_t *t, void *(*fn)(void *))
{
    cr_svc_spawn_fn *f = s->o.spawn ? s->o.spawn : pthread_create;
    int e;
    atomic_fetch_add(&s->refs, 1);
    e = f(t, NULL, fn, s);
    if (e != 0)
        atomic_fetch_sub(&s->refs, 1);
    return e;
}

static cr_err threads_start(cr_service *s)
{
    struct timespec ts;
    int want, e;
    if (s->has_writer) {
        if ((e = spawn(s, &s->writer_t, writer_main)))
            return cr_error_set(CR_ERR_INTERNAL, "cannot start the writer thread: %s",
                                strerror(e));
        s->writer_started = 1;
    }
    for (; s->nworkers < s->o.workers; s->nworkers++)
        if ((e = spawn(s, &s->workers[s->nworkers], worker_main)))
            /* A server with fewer workers than asked would serve slower than its operator
             * planned for, or not at all: fail the start, as every other start failure does. */
            return cr_error_set(CR_ERR_INTERNAL, "cannot start %s thread %d of %d: %s",
                                s->pool_name, s->nworkers + 1, s->o.workers, strerror(e));
    if ((e = spawn(s, &s->front_t, front_main)))
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the %s front thread: %s", s->name,
                            strerror(e));
    s->front_started = 1;
    want = s->writer_started + s->nworkers + 1;
    abs_deadline(&ts, SVC_START_WAIT_MS);
    pthread_mutex_lock(&s->mu);
    while (s->ready < want && pthread_cond_timedwait(&s->ready_cv, &s->mu, &ts) == 0)
        ;
    e = s->ready < want;
    pthread_mutex_unlock(&s->mu);
    if (e)
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the %s: its threads did not run "
                            "within %d ms", s->name, SVC_START_WAIT_MS);
    return CR_OK;
}

cr_err cr_service_open(cr_service **out, const cr_svc_opts *o, const cr_svc_ops *ops, void *ctx)
{
    cr_service *s = NULL;
    cr_err rc = check_opts(o, ops);
    if (!rc)
        rc = svc_new(&s, o, ops, ctx);
    if (rc)
        return rc;
    rc = socket_open(s);
    if (!rc)
        rc = threads_start(s);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", cr_error_message());
        cr_service_close(&s);
        return cr_error_set(rc, "%s", why);
    }
    *out = s;
    return CR_OK;
}

const char *cr_service_endpoint(const cr_service *s)
{
    return s->endpoint;
}

/* Joins t by CLOCK_MONOTONIC ms `until`; 1 when joined. */
static int join_until(pthread_t t, uint64_t until)
{
    uint64_t now = cr_clock_mono_ms(), left = until > now ? until - now : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

static void wait_calls(cr_service *s, uint64_t until)
{
    while (atomic_load(&s->alive) > 0 && cr_clock_mono_ms() < until)
        cr_clock_sleep_ms(5);
}

/* The pool finishes its queue (answering what is left past the drain), then its threads are
 * joined; returns how many stayed busy past the drain plus SVC_STUCK_GRACE_MS (detached). */
static int pool_stop(cr_service *s, uint64_t until)
{
    pthread_t busy[SVC_MAX_WORKERS];
    int nbusy = 0, stuck = 0;
    pthread_mutex_lock(&s->mu);
    s->pool_stop = 1;
    s->drain_until_ms = until;
    pthread_cond_broadcast(&s->pool_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        if (!join_until(s->workers[i], until))
            busy[nbusy++] = s->workers[i];
    if (nbusy)
        atomic_store(&s->cancel, 1);
    for (int i = 0; i < nbusy; i++) {
        if (join_until(busy[i], cr_clock_mono_ms() + SVC_STUCK_GRACE_MS))
            continue;
        CR_ERROR(s->name, "a %s thread did not stop; detaching it", s->pool_name);
        pthread_detach(busy[i]);
        stuck++;
    }
    return stuck;
}

cr_err cr_service_close(cr_service **pp)
{
    cr_service *s = pp ? *pp : NULL;
    uint64_t until;
    int stuck, left;
    if (!s)
        return CR_OK;
    *pp = NULL;
    until = cr_clock_mono_ms() + s->o.drain_ms;
    atomic_store(&s->mode, MODE_DRAIN); /* no more requests are read */
    if (s->front_started)
        wake_front(s);
    stuck = pool_stop(s, until);
    if (s->writer_started) {
        /* Its queue is bounded and every write in it was accepted: it finishes all of them
         * (acknowledged writes stay acknowledged), then runs its final idle call. */
        pthread_mutex_lock(&s->mu);
        s->writer_stop = 1;
        pthread_cond_broadcast(&s->writer_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer_t, NULL);
    }
    wait_calls(s, until);
    left = atomic_load(&s->alive);
    if (left) {
        CR_WARN(s->name, "drain: %d requests unanswered after %u ms; dropping their work", left,
                s->o.drain_ms);
        atomic_store(&s->cancel, 1);
        wait_calls(s, cr_clock_mono_ms() + SVC_CANCEL_GRACE_MS);
    }
    pthread_mutex_lock(&s->mu);
    s->abandoned = 1; /* from here on a late reply is dropped by its sender */
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->mode, MODE_EXIT);
    if (s->front_started) {
        wake_front(s);
        pthread_join(s->front_t, NULL);
    } else if (s->front) {
        zmq_close(s->front);
        s->front = NULL;
    }
    cr_zap_stop(&s->zap);
    if (s->own_zctx)
        cr_wire_ctx_term(&s->zctx);
    if (stuck)
        cr_error_set(CR_TIMEOUT, "%s: %d %s threads did not stop; left running", s->name,
                     stuck, s->pool_name);
    svc_unref(s);
    return stuck ? CR_TIMEOUT : CR_OK;
}
