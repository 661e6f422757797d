#include "coordinator/loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/curve_zap.h"
#include "common/log.h"
#include "common/sock.h"

#define TICK_US 20000         /* the health heartbeat's resolution */
#define MAX_WAIT_MS 100       /* longest poll: the stop flag is checked at least this often */
#define DRAIN_MS 2000         /* calls in flight get this long after a stop */
#define BATCH 64              /* messages read from one socket per turn */
#define DEFAULT_TIMEOUT_MS 10000
#define FRONT_SNDHWM 1024     /* replies queued per client connection (intake.c: 256 in flight) */

enum { CALL_IDLE = 0, CALL_ACTIVE = 1, CALL_READY = 2 };

struct coord_loop {
    coord_loop_opts o;
    void *ctx;
    int own_ctx;
    pthread_mutex_t map_mu;
    coord_map *map;      /* current; written by the loop under map_mu */
    coord_map **retired; /* maps replaced by reloads, freed at coord_loop_free */
    size_t n_retired;
    coord_map *next_map; /* set by coord_loop_set_map, applied by the loop */
    atomic_int map_waiting;
    cr_wire_limits lim;
    void *front;
    cr_zap *zap; /* checks CURVE clients of the front (o.curve on a tcp:// bind) */
    void *side; /* ROUTER for calls from other threads (coord_caller) */
    char side_ep[64];
    atomic_int callers_closed;
    coord_backends bs;
    coord_pending *pend;
    coord_timers timers;
    coord_timer tick;
    coord_call *ready_head, *ready_tail;
    size_t active;
    cr_wire_spin spin;
    cr_poll *poll;  /* every backend (by index), the side socket, the front */
    int poll_stale; /* the backends changed: rebuild the poll set */
};

/* ---- pending calls ------------------------------------------------------------------------ */

static void pend_del(coord_loop *L, uint64_t id)
{
    coord_pending_entry *p = coord_pending_find(L->pend, id);
    if (!p)
        return;
    if (p->backend >= 0 && p->backend < L->bs.n && L->bs.be[p->backend].outstanding > 0)
        L->bs.be[p->backend].outstanding--;
    coord_pending_del(L->pend, id);
}

/* 1 when attempt id of call c is still in flight. */
static int in_flight(coord_loop *L, const coord_call *c, uint64_t id)
{
    const coord_pending_entry *p = coord_pending_find(L->pend, id);
    return p && p->owner == c;
}

/* ---- calls -------------------------------------------------------------------------------- */

static void ready_push(coord_loop *L, coord_call *c)
{
    coord_timers_cancel(&L->timers, &c->timer);
    c->state = CALL_READY;
    c->next_ready = NULL;
    if (L->ready_tail)
        L->ready_tail->next_ready = c;
    else
        L->ready_head = c;
    L->ready_tail = c;
}

static void run_ready(coord_loop *L)
{
    while (L->ready_head) {
        coord_call *c = L->ready_head;
        L->ready_head = c->next_ready;
        if (!L->ready_head)
            L->ready_tail = NULL;
        c->state = CALL_IDLE;
        L->active--;
        c->done(c->arg);
    }
}

static void sub_finish(coord_loop *L, coord_call *c, coord_sub *s, cr_err rc, const char *msg,
                       Cirrus__V1__Response *resp, int replica)
{
    if (s->done) {
        if (resp)
            cirrus__v1__response__free_unpacked(resp, NULL);
        return;
    }
    s->done = 1;
    s->rc = rc;
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
    s->resp = resp;
    s->replica_used = replica;
    for (int a = 0; a < s->attempts; a++) /* a late answer of another attempt is dropped */
        if (in_flight(L, c, s->ids[a]))
            pend_del(L, s->ids[a]);
    c->remaining--;
}

static const char *no_backend(coord_target t)
{
    return t == COORD_TO_JOBS      ? "no live job broker (cirrus serve --worker-bind, or "
                                     "\"jobs\" in the cluster map)"
           : t == COORD_TO_ENCODER ? "no live encoder"
           : t == COORD_TO_GROUP ? "no live, up-to-date replica in the shard group"
                                 : "replica is down";
}

/* Sends sub s to a backend it has not tried; finishes it when its first attempt cannot go. */
static void attempt(coord_loop *L, coord_call *c, coord_sub *s)
{
    coord_pending_entry e = {c, (int)(s - c->subs), -1};
    coord_backend *b;
    uint64_t id;
    int bi = s->attempts < COORD_MAX_ATTEMPTS
                 ? coord_backends_pick(&L->bs, L->map, s->target, s->group, s->replica, s->tried)
                 : -1;
    if (bi < 0) {
        if (s->attempts == 0)
            sub_finish(L, c, s, CR_ERR_UNAVAILABLE, no_backend(s->target), NULL, -1);
        return;
    }
    b = &L->bs.be[bi];
    e.backend = bi;
    s->tried |= 1u << b->replica;
    if (coord_pending_add(L->pend, &e, &id)) {
        if (s->attempts == 0)
            sub_finish(L, c, s, CR_ERR_OVERLOADED, cr_error_message(), NULL, -1);
        return;
    }
    if (coord_backend_send(b, s->body, s->len, id)) {
        coord_pending_del(L->pend, id);
        if (s->attempts == 0)
            sub_finish(L, c, s, CR_ERR_OVERLOADED, cr_error_message(), NULL, -1);
        return;
    }
    b->outstanding++;
    s->ids[s->attempts++] = id;
}

/* The earliest deadline or hedge among the subs not done. */
static uint64_t next_due(const coord_call *c)
{
    uint64_t due = UINT64_MAX;
    for (size_t i = 0; i < c->n; i++) {
        const coord_sub *s = &c->subs[i];
        if (s->done)
            continue;
        if (s->deadline_us < due)
            due = s->deadline_us;
        if (s->hedge_at_us < due)
            due = s->hedge_at_us;
    }
    return due;
}

/* After an event: completes the call, or re-arms its timer. */
static void call_settle(coord_loop *L, coord_call *c)
{
    if (c->state != CALL_ACTIVE)
        return;
    if (c->remaining == 0)
        ready_push(L, c);
    else if (coord_timers_arm(&L->timers, &c->timer, next_due(c)))
        CR_ERROR("coordinator", "timer: %s", cr_error_message()); /* the tick re-checks */
}

/* A timed-out attempt whose backend has said nothing for a while marks that backend down. */
static void down_if_silent(coord_loop *L, coord_call *c, const coord_sub *s, uint64_t now_ms)
{
    for (int a = 0; a < s->attempts; a++) {
        const coord_pending_entry *p = coord_pending_find(L->pend, s->ids[a]);
        if (p && p->owner == c && now_ms - L->bs.be[p->backend].last_reply_ms >
                                      COORD_SILENT_DOWN_MS)
            coord_backends_mark(&L->bs, &L->bs.be[p->backend], 0);
    }
}

static void call_timer(void *owner)
{
    coord_call *c = owner;
    coord_loop *L = c->loop;
    uint64_t now = cr_clock_mono_us();
    for (size_t i = 0; i < c->n; i++) {
        coord_sub *s = &c->subs[i];
        if (s->done)
            continue;
        if (now >= s->deadline_us) {
            down_if_silent(L, c, s, now / 1000);
            sub_finish(L, c, s, CR_TIMEOUT, "backend did not answer in time", NULL, -1);
        } else if (now >= s->hedge_at_us) {
            s->hedge_at_us = UINT64_MAX;
            attempt(L, c, s);
        }
    }
    call_settle(L, c);
}

cr_err coord_loop_call(coord_loop *L, coord_call *c, coord_sub *subs, size_t n,
                       coord_call_fn done, void *arg)
{
    uint64_t now = cr_clock_mono_us();
    uint64_t hedge_us = (uint64_t)(L->map->hedge_ms > 0 ? L->map->hedge_ms : 0) * 1000;
    c->subs = subs;
    c->n = c->remaining = n;
    c->done = done;
    c->arg = arg;
    c->loop = L;
    c->state = CALL_ACTIVE;
    coord_timer_init(&c->timer, call_timer, c);
    L->active++;
    for (size_t i = 0; i < n; i++) {
        coord_sub *s = &subs[i];
        s->rc = CR_ERR_INTERNAL;
        s->msg[0] = '\0';
        s->resp = NULL;
        s->replica_used = -1;
        s->done = s->attempts = 0;
        s->tried = 0;
        s->deadline_us = now + (uint64_t)(s->timeout_ms ? s->timeout_ms : DEFAULT_TIMEOUT_MS) *
                                   1000;
        s->hedge_at_us = s->hedge && hedge_us ? now + hedge_us : UINT64_MAX;
        attempt(L, c, s);
    }
    call_settle(L, c);
    return CR_OK;
}

void coord_loop_call_cancel(coord_loop *L, coord_call *c)
{
    if (c->state == CALL_IDLE)
        return;
    if (c->state == CALL_READY) {
        coord_call **pp = &L->ready_head, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->next_ready;
        }
        if (*pp)
            *pp = c->next_ready;
        if (L->ready_tail == c)
            L->ready_tail = prev;
    }
    for (size_t i = 0; i < c->n; i++)
        for (int a = 0; a < c->subs[i].attempts; a++)
            if (in_flight(L, c, c->subs[i].ids[a]))
                pend_del(L, c->subs[i].ids[a]);
    coord_timers_cancel(&L->timers, &c->timer);
    c->state = CALL_IDLE;
    L->active--;
}

size_t coord_loop_active_calls(const coord_loop *L)
{
    return L->active;
}

/* ---- backend answers ---------------------------------------------------------------------- */

static int retryable(int code)
{
    return code == CR_ERR_UNAVAILABLE || code == CR_ERR_OVERLOADED || code == CR_ERR_NET ||
           code == CR_ERR_DEADLINE;
}

/* An answer for sub s of call c from backend b. */
static void on_answer(coord_loop *L, coord_call *c, coord_sub *s, const coord_backend *b,
                      Cirrus__V1__Response *resp)
{
    int code = resp->status ? resp->status->code : CR_ERR_PROTO;
    if (retryable(code) && s->target != COORD_TO_REPLICA &&
        coord_backends_pick(&L->bs, L->map, s->target, s->group, s->replica, s->tried) >= 0) {
        cirrus__v1__response__free_unpacked(resp, NULL);
        attempt(L, c, s); /* another replica */
        return;
    }
    if (retryable(code))
        for (int a = 0; a < s->attempts; a++)
            if (in_flight(L, c, s->ids[a])) { /* a hedged twin may still succeed */
                cirrus__v1__response__free_unpacked(resp, NULL);
                return;
            }
    sub_finish(L, c, s, CR_OK, NULL, resp, b->replica);
}

/* Reads one message from backend bi; 0 when none was queued. */
static int on_backend(coord_loop *L, int bi)
{
    coord_backend *b = &L->bs.be[bi];
    Cirrus__V1__Response *resp;
    ProtobufCMessage *msg = NULL;
    coord_pending_entry *p;
    cr_err rc = cr_sock_recv_unpack(b->sock, &cirrus__v1__response__descriptor, NULL,
                                    CR_SOCK_DONTWAIT, &msg);
    if (rc == CR_ERR_PROTO) /* read, but not a Response: skip it */
        return 1;
    if (rc)
        return 0;
    resp = (Cirrus__V1__Response *)msg;
    coord_backends_mark(&L->bs, b, 1);
    p = coord_pending_find(L->pend, resp->id);
    if (!p || p->backend != bi) { /* late, stale or foreign */
        cirrus__v1__response__free_unpacked(resp, NULL);
        return 1;
    }
    if (!p->owner) { /* a health ping */
        b->ping_id = 0;
        pend_del(L, resp->id);
        cirrus__v1__response__free_unpacked(resp, NULL);
        return 1;
    }
    {
        coord_call *c = p->owner;
        coord_sub *s = &c->subs[p->sub];
        pend_del(L, resp->id);
        on_answer(L, c, s, b, resp);
        call_settle(L, c);
    }
    return 1;
}

/* ---- health ------------------------------------------------------------------------------- */

static void ping(coord_loop *L, coord_backend *b, int bi, uint64_t now)
{
    static const uint8_t health[] = {0x82, 0x01, 0x00}; /* Request{health = {}} (field 16) */
    coord_pending_entry e = {NULL, -1, bi};
    uint64_t id;
    if (b->ping_id) {
        if (now - b->ping_sent_ms < COORD_PING_EVERY_MS)
            return;
        pend_del(L, b->ping_id);
        b->ping_id = 0;
        if (++b->missed_pings >= COORD_PING_MISSES_DOWN)
            coord_backends_mark(&L->bs, b, 0);
    }
    if (now - b->ping_sent_ms < COORD_PING_EVERY_MS)
        return;
    b->ping_sent_ms = now;
    if (coord_pending_add(L->pend, &e, &id))
        return;
    if (coord_backend_send(b, health, sizeof health, id)) {
        coord_pending_del(L->pend, id);
        return;
    }
    b->ping_id = id;
    b->outstanding++;
}

static void tick(void *owner)
{
    coord_loop *L = owner;
    uint64_t now = cr_clock_mono_ms();
    for (int i = 0; i < L->bs.n; i++) {
        coord_backends_publish(&L->bs, &L->bs.be[i]);
        ping(L, &L->bs.be[i], i, now);
    }
    coord_timers_arm(&L->timers, &L->tick, cr_clock_mono_us() + TICK_US);
}

/* ---- map reload --------------------------------------------------------------------------- */

/* Calls in flight lose their attempts (backend indexes change) and try again at once. */
static void reroute(void *ctx, uint64_t id, coord_pending_entry *e)
{
    coord_loop *L = ctx;
    coord_call *c = e->owner;
    coord_sub *s = c ? &c->subs[e->sub] : NULL;
    pend_del(L, id);
    if (s && !s->done) {
        s->tried = 0; /* else a group of one replica (or a write's replica) has none left to
                         try, and the call waits out its whole timeout */
        s->hedge_at_us = 0;
        coord_timers_arm(&L->timers, &c->timer, 0);
    }
}

static void apply_next_map(coord_loop *L)
{
    coord_map *next, **grown;
    if (!atomic_exchange(&L->map_waiting, 0))
        return;
    pthread_mutex_lock(&L->map_mu);
    next = L->next_map;
    L->next_map = NULL;
    pthread_mutex_unlock(&L->map_mu);
    if (!next)
        return;
    coord_pending_each(L->pend, reroute, L);
    for (int i = 0; i < L->bs.n; i++)
        L->bs.be[i].ping_id = 0;
    if (coord_backends_build(&L->bs, next))
        CR_ERROR("coordinator", "applying the new map: %s", cr_error_message());
    L->poll_stale = 1;
    pthread_mutex_lock(&L->map_mu);
    grown = realloc(L->retired, (L->n_retired + 1) * sizeof *grown);
    if (grown) {
        L->retired = grown;
        L->retired[L->n_retired++] = L->map;
    } /* else: the old map leaks rather than vanish under a request using it */
    L->map = next;
    pthread_mutex_unlock(&L->map_mu);
    CR_INFO("coordinator", "cluster map reloaded: %d groups, %d encoders", next->n_groups,
            next->n_encoders);
}

/* ---- calls from other threads -------------------------------------------------------------- */

/* A call handed over by a caller thread. The struct is the caller's; it passes to the loop with
 * the message and back with the answer (the atomics make the hand-over visible to
 * ThreadSanitizer, which cannot see inside libzmq). */
typedef struct side_call {
    _Atomic int submitted, finished;
    coord_call call;
    coord_sub *sub;
    cr_wire_msg who; /* the caller's routing identity */
    coord_loop *L;
} side_call;

struct coord_caller {
    coord_loop *L;
    void *sock;
};

static void side_done(void *arg)
{
    side_call *sc = arg;
    void *side = sc->L->side;
    static const uint8_t done = 0;
    cr_wire_msg who;
    /* Out of sc first: once the caller has its answer it may free sc. */
    cr_wire_msg_take_route(&who, &sc->who);
    atomic_store_explicit(&sc->finished, 1, memory_order_release);
    (void)cr_sock_send(side, &who, &(cr_sock_buf){&done, 1}, 1, 0); /* sc may be freed */
    cr_wire_msg_close(&who);
}

static void on_side(coord_loop *L)
{
    for (int k = 0; k < BATCH; k++) {
        cr_wire_msg m;
        const uint8_t *body;
        size_t len;
        side_call *sc;
        cr_err rc;
        cr_wire_msg_init(&m);
        rc = cr_wire_recv(L->side, &m, &L->lim, CR_SOCK_DONTWAIT);
        body = cr_wire_msg_body(&m, &len);
        if (rc || m.nroute != 1 || len != sizeof sc) { /* not one of our callers' hand-overs */
            cr_wire_msg_close(&m);
            if (rc == CR_TIMEOUT || rc == CR_ERR_NET)
                return;
            continue;
        }
        memcpy(&sc, body, sizeof sc);
        (void)atomic_load_explicit(&sc->submitted, memory_order_acquire);
        sc->L = L;
        cr_wire_msg_take_route(&sc->who, &m);
        cr_wire_msg_close(&m);
        coord_loop_call(L, &sc->call, sc->sub, 1, side_done, sc);
    }
}

cr_err coord_caller_open(coord_loop *L, coord_caller **out)
{
    coord_caller *c = calloc(1, sizeof *c);
    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    c->L = L;
    if (cr_sock_open(L->ctx, CR_SOCK_DEALER, NULL, &c->sock) || cr_sock_set_linger(c->sock, 0) ||
        cr_sock_connect(c->sock, L->side_ep)) {
        cr_err rc = cr_error_wrap(CR_ERR_NET, "caller socket");
        coord_caller_close(&c);
        return rc;
    }
    *out = c;
    return CR_OK;
}

void coord_caller_close(coord_caller **pp)
{
    coord_caller *c = pp ? *pp : NULL;
    if (!c)
        return;
    cr_sock_close(&c->sock);
    free(c);
    *pp = NULL;
}

/* Waits for the loop's answer in slices, so that a caller outliving the loop stops at once. */
static int caller_wait(coord_caller *c, uint32_t wait_ms)
{
    uint64_t until = cr_clock_mono_ms() + wait_ms;
    while (cr_clock_mono_ms() < until) {
        if (cr_sock_wait_readable(c->sock, 100) > 0)
            return 1;
        if (atomic_load(&c->L->callers_closed))
            return -1;
    }
    return 0;
}

cr_err coord_caller_call(coord_caller *c, coord_sub *s)
{
    side_call *sc;
    cr_wire_msg done;
    int ready;
    if (atomic_load(&c->L->callers_closed))
        return cr_error_set(CR_ERR_UNAVAILABLE, "the coordinator is stopping");
    if (!(sc = calloc(1, sizeof *sc)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    sc->sub = s;
    atomic_store_explicit(&sc->submitted, 1, memory_order_release);
    if (cr_sock_send(c->sock, NULL, &(cr_sock_buf){&sc, sizeof sc}, 1, 0)) {
        free(sc);
        return cr_error_set(CR_ERR_NET, "cannot reach the event loop");
    }
    ready = caller_wait(c, (s->timeout_ms ? s->timeout_ms : DEFAULT_TIMEOUT_MS) + 5000);
    if (ready < 0) { /* the loop has stopped: it no longer touches sc */
        free(sc);
        return cr_error_set(CR_ERR_UNAVAILABLE, "the coordinator is stopping");
    }
    cr_wire_msg_init(&done);
    if (!ready || cr_wire_recv(c->sock, &done, &c->L->lim, CR_SOCK_DONTWAIT)) {
        cr_wire_msg_close(&done);
        return cr_error_set(CR_ERR_INTERNAL, "the event loop did not answer"); /* sc leaks:
                                                                                 it may be in use */
    }
    cr_wire_msg_close(&done);
    (void)atomic_load_explicit(&sc->finished, memory_order_acquire);
    free(sc);
    return CR_OK;
}

void coord_loop_close_callers(coord_loop *L)
{
    atomic_store(&L->callers_closed, 1);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void on_front(coord_loop *L)
{
    for (int k = 0; k < BATCH; k++) {
        cr_wire_msg m;
        cr_err rc;
        cr_wire_msg_init(&m);
        rc = cr_wire_front_recv(L->front, &m, &L->lim);
        if (rc == CR_OK)
            L->o.on_request(L->o.request_ctx, &m, cr_clock_mono_us());
        cr_wire_msg_close(&m);
        if (rc == CR_TIMEOUT || rc == CR_ERR_NET)
            return;
    }
}

static long wait_ms(const coord_loop *L)
{
    uint64_t next = coord_timers_next(&L->timers), now = cr_clock_mono_us();
    if (L->ready_head || next <= now)
        return 0;
    if (next - now >= (uint64_t)MAX_WAIT_MS * 1000)
        return MAX_WAIT_MS;
    return (long)((next - now + 999) / 1000);
}

/* Before the loop sleeps in poll (Redis's beforeSleep): apply a reloaded map, continue every
 * request whose call is done. */
static void before_sleep(coord_loop *L)
{
    apply_next_map(L);
    run_ready(L);
}

/* The poll set, in the order a turn serves them: backend answers first (they finish work),
 * then calls from other threads, then new requests. */
static void poll_build(coord_loop *L)
{
    cr_poll_clear(L->poll);
    for (int i = 0; i < L->bs.n; i++) /* index i: backend i */
        cr_poll_add(L->poll, L->bs.be[i].sock, CR_POLL_IN);
    cr_poll_add(L->poll, L->side, CR_POLL_IN);  /* bs.n */
    cr_poll_add(L->poll, L->front, CR_POLL_IN); /* bs.n + 1 */
    L->poll_stale = 0;
}

/* One turn: wait for a socket or the next timer, then handle what came. */
static void turn(coord_loop *L, int reading)
{
    cr_poll *p = L->poll;
    int n = L->bs.n;
    before_sleep(L);
    if (L->poll_stale)
        poll_build(L);
    cr_poll_set_events(p, n + 1, reading ? CR_POLL_IN : 0);
    if (cr_poll_wait(p, wait_ms(L), &L->spin) > 0) {
        for (int i = cr_poll_next(p, 0); i >= 0; i = cr_poll_next(p, i + 1)) {
            if (i < n)
                for (int k = 0; k < BATCH && on_backend(L, i); k++)
                    ;
            else if (i == n)
                on_side(L);
            else
                on_front(L);
        }
    }
    coord_timers_run(&L->timers, cr_clock_mono_us());
    run_ready(L);
}

cr_err coord_loop_run(coord_loop *L, volatile sig_atomic_t *stop)
{
    uint64_t until;
    if (coord_timers_arm(&L->timers, &L->tick, cr_clock_mono_us()))
        return CR_ERR_NOMEM;
    CR_INFO("coordinator", "serving on %s: %d shard groups, %d encoders, one event loop",
            L->o.bind, L->map->n_groups, L->map->n_encoders);
    while (!*stop)
        turn(L, 1);
    until = cr_clock_mono_ms() + DRAIN_MS;
    while ((L->active || L->ready_head) && cr_clock_mono_ms() < until)
        turn(L, 0);
    coord_timers_cancel(&L->timers, &L->tick);
    coord_loop_close_callers(L);
    return CR_OK;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* CURVE on a tcp:// front: the ZAP handler before the bind (a CURVE socket without one would
 * take any client that knows the public key); a warning when it is open to other hosts. */
static cr_err front_curve(coord_loop *L, const coord_loop_opts *o)
{
    cr_err rc = CR_OK;
    if (o->curve && cr_endpoint_is_tcp(o->bind)) {
        rc = cr_zap_start(&L->zap, L->ctx, o->curve);
        if (!rc)
            rc = cr_curve_setup_server(L->front, o->curve);
    }
    cr_warn_exposed("coordinator", o->bind, L->zap != NULL,
                    "CURVE (--curve-secret, --curve-allow)");
    return rc;
}

cr_err coord_loop_new(coord_loop **out, const coord_map *map, const coord_loop_opts *o)
{
    coord_loop *L = calloc(1, sizeof *L);
    cr_err rc;
    if (!L)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    L->o = *o;
    pthread_mutex_init(&L->map_mu, NULL);
    coord_timers_init(&L->timers);
    coord_timer_init(&L->tick, tick, L);
    L->spin.spin_us = o->spin_us;
    L->lim = cr_wire_default_limits();
    if (strncmp(o->bind, "inproc://", 9) == 0)
        L->lim.heartbeat_ivl_ms = 0;
    L->own_ctx = !o->zmq_ctx;
    L->ctx = o->zmq_ctx;
    L->map = malloc(sizeof *L->map);
    rc = L->map ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc && L->own_ctx)
        rc = cr_wire_ctx_new(&L->ctx);
    if (!rc)
        rc = cr_poll_new(&L->poll, 2 + COORD_MAX_BACKENDS);
    if (!rc) {
        *L->map = *map;
        rc = coord_pending_new(&L->pend, o->max_calls ? o->max_calls : 1u << 20);
    }
    if (!rc)
        rc = coord_backends_init(&L->bs, L->ctx, &L->lim);
    if (!rc) {
        L->bs.on_up = o->on_replica_up;
        L->bs.curve = o->curve;
        L->bs.up_ctx = o->up_ctx;
        rc = coord_backends_build(&L->bs, L->map);
    }
    if (!rc) {
        /* Replies queued for a client that does not read them: a bounded number (then
         * dropped), well above the MAX_CLIENT_REQUESTS in flight a reading client can have. */
        cr_wire_limits front_lim = L->lim;
        front_lim.sndhwm = FRONT_SNDHWM;
        if (cr_sock_open(L->ctx, CR_SOCK_ROUTER, &front_lim, &L->front))
            rc = cr_error_wrap(CR_ERR_NET, "coordinator socket");
    }
    if (!rc)
        rc = front_curve(L, o);
    if (!rc)
        rc = cr_sock_bind(L->front, o->bind);
    cr_wire_inproc_name(L->side_ep, sizeof L->side_ep, "coord-callers");
    if (!rc && (cr_sock_open(L->ctx, CR_SOCK_ROUTER, NULL, &L->side) ||
                cr_sock_bind(L->side, L->side_ep)))
        rc = cr_error_wrap(CR_ERR_NET, "inproc bind");
    if (rc) {
        coord_loop_free(&L);
        return rc;
    }
    L->poll_stale = 1;
    *out = L;
    return CR_OK;
}

void coord_loop_free(coord_loop **pp)
{
    coord_loop *L = pp ? *pp : NULL;
    if (!L)
        return;
    cr_sock_close(&L->front);
    cr_sock_close(&L->side);
    cr_zap_stop(&L->zap);
    coord_backends_free(&L->bs);
    if (L->own_ctx)
        cr_wire_ctx_term(&L->ctx);
    cr_poll_free(&L->poll);
    coord_pending_free(&L->pend);
    coord_timers_free(&L->timers);
    pthread_mutex_destroy(&L->map_mu);
    free(L->next_map);
    free(L->map);
    for (size_t i = 0; i < L->n_retired; i++)
        free(L->retired[i]);
    free(L->retired);
    free(L);
    *pp = NULL;
}

cr_err coord_loop_reply(coord_loop *L, const cr_wire_msg *route, const Cirrus__V1__Response *r)
{
    return cr_wire_send(L->front, route, &r->base, 0);
}

cr_err coord_loop_reply_error(coord_loop *L, const cr_wire_msg *route, uint64_t id, cr_err code,
                              const char *msg)
{
    return cr_wire_reply_error(L->front, route, id, code, msg);
}

coord_pending_stats coord_loop_pending_stats(const coord_loop *L)
{
    return coord_pending_get_stats(L->pend);
}

void coord_loop_set_up_hook(coord_loop *L, coord_up_fn fn, void *ctx)
{
    L->bs.on_up = fn;
    L->bs.up_ctx = ctx;
}

/* ---- any thread ----------------------------------------------------------------------------- */

const coord_map *coord_loop_map(coord_loop *L)
{
    const coord_map *m;
    pthread_mutex_lock(&L->map_mu);
    m = L->map;
    pthread_mutex_unlock(&L->map_mu);
    return m;
}

int coord_loop_map_pending(coord_loop *L)
{
    return atomic_load(&L->map_waiting);
}

void coord_loop_set_map(coord_loop *L, const coord_map *map)
{
    coord_map *copy = malloc(sizeof *copy);
    if (!copy)
        return;
    *copy = *map;
    pthread_mutex_lock(&L->map_mu);
    free(L->next_map);
    L->next_map = copy;
    pthread_mutex_unlock(&L->map_mu);
    atomic_store(&L->map_waiting, 1);
}

int coord_loop_replica_live(coord_loop *L, int group, int replica)
{
    return coord_backends_live(&L->bs, group, replica);
}

int coord_loop_replica_missed(coord_loop *L, int group, int replica, const char *ep,
                              uint64_t min_version, int acked)
{
    return coord_backends_replica_missed(&L->bs, group, replica, ep, min_version, acked);
}

int coord_loop_replica_state(coord_loop *L, int group, int replica, coord_replica_state *out)
{
    return coord_backends_replica_state(&L->bs, group, replica, out);
}

int coord_loop_repair_begin(coord_loop *L, int group, int replica, coord_replica_state *out)
{
    return coord_backends_repair_begin(&L->bs, group, replica, out);
}

int coord_loop_repair_end(coord_loop *L, int group, int replica, const char *ep, int proven,
                          int complete)
{
    return coord_backends_repair_end(&L->bs, group, replica, ep, proven, complete);
}

void *coord_loop_zmq_ctx(coord_loop *L)
{
    return L->ctx;
}
