#include "coordinator/io.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/wire.h"

#define MAX_BACKENDS (COORD_MAX_GROUPS * COORD_MAX_REPLICAS + COORD_MAX_ENCODERS)
#define PENDING_SLOTS 65536 /* power of two */
#define MAX_ATTEMPTS 4
#define PING_EVERY_MS 500
#define PING_MISSES_DOWN 3
#define SILENT_DOWN_MS 1500
#define MAX_WORKERS 64

typedef struct backend {
    char ep[COORD_MAX_ENDPOINT];
    void *sock;
    int outstanding;
    int up, ever_up;
    /* Freshness (see coord_io_replica_missed): written under coord_io.state_mu; `readable`
     * and `answering` are also read without it, by pick() and the repair thread. */
    _Atomic int readable;  /* may serve reads: not behind, or its group's only replica */
    _Atomic int answering; /* up, and has answered since it was (re)connected */
    int group_size; /* replicas in its group (1: always readable) */
    int behind, known, repair_running, fresh_behind;
    uint64_t mark, fresh_mark;
    int missed_pings;
    uint64_t ping_id, ping_sent_ms;
    uint64_t last_reply_ms;
    int is_encoder, group, replica;
} backend;

typedef struct sub_state {
    int done, attempts;
    uint64_t deadline_ms, hedge_at_ms;
    uint32_t tried; /* bitmask of replica (or encoder) indexes */
    uint64_t ids[MAX_ATTEMPTS];
} sub_state;

typedef struct call {
    /* Handed between a worker and the I/O thread through ZeroMQ; these flags make the
     * ownership transfer explicit in the C memory model (and visible to ThreadSanitizer,
     * which cannot see inside libzmq). */
    _Atomic int submitted, finished;
    zmq_msg_t worker;   /* routing identity of the worker's call socket */
    coord_sub *subs;
    size_t n, remaining;
    sub_state *st;
    struct call *next, *prev;
} call;

typedef struct pending {
    uint64_t id;        /* 0 = free slot */
    call *c;            /* NULL for a health ping */
    int sub;
    int backend;
} pending;

struct coord_io {
    coord_io_opts o;
    void *ctx;
    int own_ctx;
    pthread_mutex_t map_mu;
    coord_map *map;      /* current; read under map_mu */
    coord_map **retired; /* maps replaced by reloads, freed at coord_io_free */
    size_t n_retired;
    coord_map *next_map; /* set by coord_io_set_map, applied by the I/O thread */
    pthread_mutex_t state_mu; /* replicas' freshness fields, and backends_build */
    cr_wire_limits lim;
    char work_ep[64], call_ep[64];
    void *front, *work, *calls;
    backend be[MAX_BACKENDS];
    int n_be;
    int group_be[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* backend index */
    int enc_be[COORD_MAX_ENCODERS];
    pending *pend;
    uint64_t next_id;
    call *active;
    atomic_int stopping, exited;
    atomic_int live[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* for workers */
    cr_wire_spin spin; /* the I/O thread's */
};

struct coord_worker {
    coord_io *io;
    void *req, *call;
};

/* ---- pending table ---------------------------------------------------------------------- */

static pending *pend_find(coord_io *io, uint64_t id)
{
    for (size_t i = id & (PENDING_SLOTS - 1), n = 0; n < PENDING_SLOTS;
         i = (i + 1) & (PENDING_SLOTS - 1), n++) {
        if (io->pend[i].id == id)
            return &io->pend[i];
        if (io->pend[i].id == 0)
            return NULL;
    }
    return NULL;
}

static int pend_add(coord_io *io, uint64_t id, call *c, int sub, int be)
{
    for (size_t i = id & (PENDING_SLOTS - 1), n = 0; n < PENDING_SLOTS;
         i = (i + 1) & (PENDING_SLOTS - 1), n++) {
        if (io->pend[i].id == 0 || io->pend[i].id == UINT64_MAX) {
            io->pend[i] = (pending){id, c, sub, be};
            return 0;
        }
    }
    return -1;
}

/* Deleted slots become tombstones (UINT64_MAX) so probe chains stay intact. */
static void pend_del(coord_io *io, pending *p)
{
    if (p->backend >= 0 && io->be[p->backend].outstanding > 0)
        io->be[p->backend].outstanding--;
    p->id = UINT64_MAX;
    p->c = NULL;
}

/* ---- backends ---------------------------------------------------------------------------- */

static cr_err backend_open(coord_io *io, backend *b, const char *ep)
{
    cr_wire_limits lim = io->lim;
    snprintf(b->ep, sizeof b->ep, "%s", ep);
    if (strncmp(ep, "inproc://", 9) == 0)
        lim.heartbeat_ivl_ms = 0;
    b->sock = zmq_socket(io->ctx, ZMQ_DEALER);
    if (!b->sock)
        return cr_error_set(CR_ERR_NET, "socket: %s", zmq_strerror(errno));
    if (cr_wire_socket_setup(b->sock, &lim))
        return CR_ERR_NET;
    if (zmq_connect(b->sock, ep) != 0)
        return cr_error_set(CR_ERR_NET, "connect %s: %s", ep, zmq_strerror(errno));
    b->up = 1; /* optimistic until pings say otherwise */
    /* Nothing is known of a replica's contents until a repair compared it with its peers
     * (single-replica groups are exempt: fresh_publish). */
    b->behind = 1;
    b->mark = 0;
    return CR_OK;
}

static void set_live(coord_io *io, backend *b)
{
    if (!b->is_encoder && b->group >= 0)
        atomic_store(&io->live[b->group][b->replica], b->up && atomic_load(&b->readable));
}

/* Publishes `readable` from the freshness fields; state_mu held. The only replica of a group
 * holds every acknowledged write by definition (a write it missed was acknowledged by none),
 * so it is always readable and never repaired. */
static void fresh_publish(backend *b)
{
    if (b->group_size == 1) {
        b->behind = 0;
        b->known = 1;
        b->mark = UINT64_MAX;
    }
    atomic_store(&b->readable, !b->behind);
}

static void backend_mark(coord_io *io, backend *b, int up)
{
    uint64_t now = cr_clock_mono_ms();
    int returned = !b->up || !b->ever_up;
    if (up) {
        b->missed_pings = 0;
        b->last_reply_ms = now;
        if (!b->up) {
            b->up = 1;
            CR_INFO("coordinator", "%s is up", b->ep);
        }
        b->ever_up = 1;
        atomic_store(&b->answering, 1);
        /* A replica answering for the first time, or again: the repair hook decides whether
         * it (or a peer waiting for it) must catch up before serving reads. */
        if (returned && !b->is_encoder && io->o.on_replica_up)
            io->o.on_replica_up(io->o.up_ctx, b->group, b->replica);
    } else if (b->up) {
        b->up = 0;
        atomic_store(&b->answering, 0);
        CR_WARN("coordinator", "%s is down", b->ep);
    }
    set_live(io, b);
}

/* Builds backends for `map`, reusing the connections of endpoints that stay. */
static cr_err backends_build(coord_io *io, const coord_map *map)
{
    backend old[MAX_BACKENDS];
    int n_old = io->n_be, n = 0;
    cr_err rc = CR_OK;

    pthread_mutex_lock(&io->state_mu);
    memcpy(old, io->be, sizeof old);
    memset(io->be, 0, sizeof io->be);
    for (int g = 0; g < map->n_groups + 1 && !rc; g++) {
        int count = g < map->n_groups ? map->n_replicas[g] : map->n_encoders;
        for (int r = 0; r < count && !rc; r++) {
            const char *ep = g < map->n_groups ? map->replicas[g][r] : map->encoders[r];
            backend *b = &io->be[n];
            int reused = 0;
            for (int i = 0; i < n_old; i++)
                if (old[i].sock && strcmp(old[i].ep, ep) == 0) {
                    *b = old[i];
                    old[i].sock = NULL;
                    reused = 1;
                    break;
                }
            if (!reused)
                rc = backend_open(io, b, ep);
            b->is_encoder = g == map->n_groups;
            b->group = b->is_encoder ? -1 : g;
            b->replica = r;
            if (b->is_encoder)
                io->enc_be[r] = n;
            else
                io->group_be[g][r] = n;
            b->group_size = count;
            if (!b->is_encoder)
                fresh_publish(b);
            set_live(io, b);
            n++;
        }
    }
    io->n_be = n;
    pthread_mutex_unlock(&io->state_mu);
    for (int i = 0; i < n_old; i++)
        if (old[i].sock)
            zmq_close(old[i].sock);
    return rc;
}

/* ---- sending ----------------------------------------------------------------------------- */

/* The body with `id` appended as field 1: protobuf keeps the last value of a scalar field,
 * so the backend sees our id whatever the worker packed. */
static cr_err send_body(coord_io *io, backend *b, const uint8_t *body, size_t len, uint64_t id)
{
    zmq_msg_t m;
    uint8_t tail[11];
    size_t n = 0;
    (void)io;
    tail[n++] = 0x08;
    do {
        uint8_t byte = id & 0x7f;
        id >>= 7;
        tail[n++] = byte | (id ? 0x80 : 0);
    } while (id);
    if (zmq_msg_init_size(&m, len + n) != 0)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    memcpy(zmq_msg_data(&m), body, len);
    memcpy((uint8_t *)zmq_msg_data(&m) + len, tail, n);
    if (zmq_msg_send(&m, b->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return cr_error_set(CR_ERR_OVERLOADED, "%s: send queue full", b->ep);
    }
    return CR_OK;
}

static void sub_finish(coord_io *io, call *c, int si, cr_err rc, const char *msg,
                       Cirrus__V1__Response *resp, int replica)
{
    sub_state *st = &c->st[si];
    coord_sub *s = &c->subs[si];
    if (st->done) {
        if (resp)
            cirrus__v1__response__free_unpacked(resp, NULL);
        return;
    }
    st->done = 1;
    s->rc = rc;
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
    s->resp = resp;
    s->replica_used = replica;
    /* Forget the other attempts: a late answer is dropped. */
    for (int a = 0; a < st->attempts; a++) {
        pending *p = pend_find(io, st->ids[a]);
        if (p && p->c == c)
            pend_del(io, p);
    }
    c->remaining--;
}

/* Picks a backend for sub `si` not tried yet; -1 when none is live. */
static int pick(coord_io *io, call *c, int si)
{
    coord_sub *s = &c->subs[si];
    sub_state *st = &c->st[si];
    const coord_map *m = io->map;
    int best = -1, count;
    if (s->target == COORD_TO_REPLICA) {
        if (s->group < 0 || s->group >= m->n_groups || s->replica < 0 ||
            s->replica >= m->n_replicas[s->group] || (st->tried & 1u << s->replica))
            return -1;
        int bi = io->group_be[s->group][s->replica];
        return io->be[bi].up ? bi : -1;
    }
    if (s->target == COORD_TO_GROUP && (s->group < 0 || s->group >= m->n_groups))
        return -1;
    count = s->target == COORD_TO_GROUP ? m->n_replicas[s->group] : m->n_encoders;
    for (int r = 0; r < count; r++) {
        int bi = s->target == COORD_TO_GROUP ? io->group_be[s->group][r] : io->enc_be[r];
        backend *b = &io->be[bi];
        if ((st->tried & 1u << r) || !b->up ||
            (s->target == COORD_TO_GROUP && !atomic_load(&b->readable)))
            continue;
        if (best < 0 || b->outstanding < io->be[best].outstanding)
            best = bi;
    }
    return best;
}

static void attempt(coord_io *io, call *c, int si)
{
    sub_state *st = &c->st[si];
    coord_sub *s = &c->subs[si];
    int bi = st->attempts < MAX_ATTEMPTS ? pick(io, c, si) : -1;
    backend *b;
    uint64_t id;
    if (bi < 0) {
        if (st->attempts == 0)
            sub_finish(io, c, si, CR_ERR_UNAVAILABLE,
                       s->target == COORD_TO_ENCODER ? "no live encoder"
                       : s->target == COORD_TO_GROUP
                           ? "no live, up-to-date replica in the shard group"
                           : "replica is down",
                       NULL, -1);
        return;
    }
    b = &io->be[bi];
    id = io->next_id++;
    st->tried |= 1u << b->replica;
    if (send_body(io, b, s->body, s->len, id) || pend_add(io, id, c, si, bi)) {
        if (st->attempts == 0)
            sub_finish(io, c, si, CR_ERR_OVERLOADED, cr_error_message(), NULL, -1);
        return;
    }
    b->outstanding++;
    st->ids[st->attempts++] = id;
    CR_DEBUG("coordinator", "call %p sub %d attempt %d -> %s id %llu", (void *)c, si,
             st->attempts, b->ep, (unsigned long long)id);
}

static void call_start(coord_io *io, call *c)
{
    uint64_t now = cr_clock_mono_ms();
    c->remaining = c->n;
    for (size_t i = 0; i < c->n; i++) {
        sub_state *st = &c->st[i];
        memset(st, 0, sizeof *st);
        st->deadline_ms = now + (c->subs[i].timeout_ms ? c->subs[i].timeout_ms : 10000);
        st->hedge_at_ms = c->subs[i].hedge ? now + (uint64_t)io->map->hedge_ms : UINT64_MAX;
        attempt(io, c, (int)i);
    }
    c->next = io->active;
    c->prev = NULL;
    if (io->active)
        io->active->prev = c;
    io->active = c;
}

static void call_reply_if_done(coord_io *io, call *c)
{
    zmq_msg_t done;
    if (c->remaining)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        io->active = c->next;
    if (c->next)
        c->next->prev = c->prev;
    CR_DEBUG("coordinator", "call %p done", (void *)c);
    atomic_store_explicit(&c->finished, 1, memory_order_release);
    zmq_msg_send(&c->worker, io->calls, ZMQ_SNDMORE);
    zmq_msg_init_size(&done, 1);
    zmq_msg_send(&done, io->calls, 0);
}

/* ---- events ------------------------------------------------------------------------------ */

static int retryable(int code)
{
    return code == CR_ERR_UNAVAILABLE || code == CR_ERR_OVERLOADED || code == CR_ERR_NET ||
           code == CR_ERR_DEADLINE;
}

static void on_backend(coord_io *io, int bi)
{
    backend *b = &io->be[bi];
    zmq_msg_t m;
    Cirrus__V1__Response *resp;
    pending *p;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, b->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return;
    }
    resp = cirrus__v1__response__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    zmq_msg_close(&m);
    if (!resp)
        return;
    backend_mark(io, b, 1);
    p = pend_find(io, resp->id);
    CR_DEBUG("coordinator", "reply id %llu from %s: %s", (unsigned long long)resp->id, b->ep,
             p ? (p->c ? "pending" : "ping") : "unknown");
    if (!p || p->backend != bi) {
        cirrus__v1__response__free_unpacked(resp, NULL);
        return;
    }
    if (!p->c) { /* a health ping */
        b->ping_id = 0;
        pend_del(io, p);
        cirrus__v1__response__free_unpacked(resp, NULL);
        return;
    }
    {
        call *c = p->c;
        int si = p->sub;
        coord_sub *s = &c->subs[si];
        int code = resp->status ? resp->status->code : CR_ERR_PROTO;
        pend_del(io, p);
        if (retryable(code) && s->target != COORD_TO_REPLICA && pick(io, c, si) >= 0) {
            cirrus__v1__response__free_unpacked(resp, NULL);
            attempt(io, c, si); /* another replica */
        } else {
            int inflight = 0;
            for (int a = 0; retryable(code) && a < c->st[si].attempts; a++)
                inflight |= pend_find(io, c->st[si].ids[a]) != NULL;
            if (inflight) /* a hedged twin may still succeed */
                cirrus__v1__response__free_unpacked(resp, NULL);
            else
                sub_finish(io, c, si, CR_OK, NULL, resp, b->replica);
        }
        call_reply_if_done(io, c);
    }
}

static void on_call(coord_io *io)
{
    zmq_msg_t id, body;
    call *c;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&id, io->calls, ZMQ_DONTWAIT) < 0 ||
        zmq_msg_recv(&body, io->calls, ZMQ_DONTWAIT) < 0 || zmq_msg_size(&body) != sizeof c) {
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        return;
    }
    memcpy(&c, zmq_msg_data(&body), sizeof c);
    zmq_msg_close(&body);
    (void)atomic_load_explicit(&c->submitted, memory_order_acquire);
    zmq_msg_init(&c->worker);
    zmq_msg_move(&c->worker, &id);
    call_start(io, c);
    call_reply_if_done(io, c);
}

static void sweep(coord_io *io)
{
    uint64_t now = cr_clock_mono_ms();
    for (call *c = io->active, *next; c; c = next) {
        next = c->next;
        for (size_t i = 0; i < c->n; i++) {
            sub_state *st = &c->st[i];
            if (st->done)
                continue;
            if (now >= st->deadline_ms) {
                for (int a = 0; a < st->attempts; a++) {
                    pending *p = pend_find(io, st->ids[a]);
                    if (p && p->c == c && now - io->be[p->backend].last_reply_ms > SILENT_DOWN_MS)
                        backend_mark(io, &io->be[p->backend], 0);
                }
                sub_finish(io, c, (int)i, CR_TIMEOUT, "backend did not answer in time", NULL,
                           -1);
            } else if (now >= st->hedge_at_ms) {
                st->hedge_at_ms = UINT64_MAX;
                attempt(io, c, (int)i);
            }
        }
        call_reply_if_done(io, c);
    }
}

static void ping(coord_io *io)
{
    static const uint8_t health[] = {0x82, 0x01, 0x00}; /* Request{health = {}} (field 16) */
    uint64_t now = cr_clock_mono_ms();
    for (int i = 0; i < io->n_be; i++) {
        backend *b = &io->be[i];
        set_live(io, b);
        if (b->ping_id) {
            if (now - b->ping_sent_ms < PING_EVERY_MS)
                continue;
            pending *p = pend_find(io, b->ping_id);
            if (p)
                pend_del(io, p);
            if (++b->missed_pings >= PING_MISSES_DOWN)
                backend_mark(io, b, 0);
            b->ping_id = 0;
        }
        if (now - b->ping_sent_ms < PING_EVERY_MS)
            continue;
        b->ping_id = io->next_id++;
        b->ping_sent_ms = now;
        if (send_body(io, b, health, sizeof health, b->ping_id) ||
            pend_add(io, b->ping_id, NULL, -1, i)) {
            b->ping_id = 0;
            continue;
        }
        b->outstanding++;
    }
}

/* ---- proxy -------------------------------------------------------------------------------- */

static void apply_next_map(coord_io *io)
{
    coord_map *next;
    pthread_mutex_lock(&io->map_mu);
    next = io->next_map;
    io->next_map = NULL;
    pthread_mutex_unlock(&io->map_mu);
    if (!next)
        return;
    /* Calls in flight keep their pending entries; a removed backend's late answers are
     * dropped and those subs time out or are retried on a live replica. */
    for (int i = 0; i < PENDING_SLOTS; i++)
        if (io->pend[i].id && io->pend[i].id != UINT64_MAX && io->pend[i].c) {
            call *c = io->pend[i].c;
            int si = io->pend[i].sub;
            pend_del(io, &io->pend[i]);
            if (!c->st[si].done)
                c->st[si].hedge_at_ms = 0; /* re-attempt at the next sweep */
        } else if (io->pend[i].id && io->pend[i].id != UINT64_MAX) {
            pend_del(io, &io->pend[i]);
        }
    for (int i = 0; i < io->n_be; i++)
        io->be[i].ping_id = 0;
    if (backends_build(io, next))
        CR_ERROR("coordinator", "applying the new map: %s", cr_error_message());
    pthread_mutex_lock(&io->map_mu);
    {
        coord_map **grown = realloc(io->retired, (io->n_retired + 1) * sizeof *grown);
        if (grown) {
            io->retired = grown;
            io->retired[io->n_retired++] = io->map;
        } /* else: the old map leaks rather than vanish under a request using it */
    }
    io->map = next;
    pthread_mutex_unlock(&io->map_mu);
    CR_INFO("coordinator", "cluster map reloaded: %d groups, %d encoders", next->n_groups,
            next->n_encoders);
}

static void loop(coord_io *io, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[3 + MAX_BACKENDS];
    while (!*stop) {
        int n = 3;
        apply_next_map(io);
        items[0] = (zmq_pollitem_t){io->front, 0, ZMQ_POLLIN, 0};
        items[1] = (zmq_pollitem_t){io->work, 0, ZMQ_POLLIN, 0};
        items[2] = (zmq_pollitem_t){io->calls, 0, ZMQ_POLLIN, 0};
        for (int i = 0; i < io->n_be; i++)
            items[n++] = (zmq_pollitem_t){io->be[i].sock, 0, ZMQ_POLLIN, 0};
        if (cr_wire_poll_spin(items, n, 5, &io->spin) > 0) {
            for (int i = 0; i < io->n_be; i++)
                if (items[3 + i].revents & ZMQ_POLLIN)
                    for (int k = 0; k < 64; k++) {
                        int before = io->be[i].outstanding;
                        on_backend(io, i);
                        zmq_pollitem_t one = {io->be[i].sock, 0, ZMQ_POLLIN, 0};
                        if (zmq_poll(&one, 1, 0) <= 0 || before < 0)
                            break;
                    }
            if (items[2].revents & ZMQ_POLLIN)
                on_call(io);
            if (items[1].revents & ZMQ_POLLIN)
                cr_wire_forward(io->work, io->front);
            if (items[0].revents & ZMQ_POLLIN)
                cr_wire_dispatch_timed(io->front, io->work, &io->lim);
        }
        sweep(io);
        ping(io);
    }
}

/* ---- lifecycle --------------------------------------------------------------------------- */

cr_err coord_io_new(coord_io **out, const coord_map *map, const coord_io_opts *o)
{
    coord_io *io = calloc(1, sizeof *io);
    cr_err rc;
    if (!io)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    io->o = *o;
    io->spin.spin_us = o->spin_us;
    io->map = malloc(sizeof *io->map);
    io->pend = calloc(PENDING_SLOTS, sizeof *io->pend);
    if (!io->map || !io->pend) {
        free(io->map);
        free(io->pend);
        free(io);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    *io->map = *map;
    pthread_mutex_init(&io->map_mu, NULL);
    pthread_mutex_init(&io->state_mu, NULL);
    io->lim = cr_wire_default_limits();
    if (strncmp(o->bind, "inproc://", 9) == 0)
        io->lim.heartbeat_ivl_ms = 0;
    io->own_ctx = !o->zmq_ctx;
    io->ctx = o->zmq_ctx ? o->zmq_ctx : zmq_ctx_new();
    io->next_id = ((uint64_t)cr_clock_mono_ns() << 8) | 1;
    cr_wire_inproc_name(io->work_ep, sizeof io->work_ep, "coord-work");
    cr_wire_inproc_name(io->call_ep, sizeof io->call_ep, "coord-calls");
    rc = backends_build(io, io->map);
    if (rc) {
        coord_io_free(&io);
        return rc;
    }
    *out = io;
    return CR_OK;
}

void coord_io_free(coord_io **pp)
{
    coord_io *io = pp ? *pp : NULL;
    if (!io)
        return;
    for (int i = 0; i < io->n_be; i++)
        if (io->be[i].sock)
            zmq_close(io->be[i].sock);
    if (io->own_ctx)
        zmq_ctx_term(io->ctx);
    pthread_mutex_destroy(&io->map_mu);
    pthread_mutex_destroy(&io->state_mu);
    free(io->next_map);
    free(io->map);
    for (size_t i = 0; i < io->n_retired; i++)
        free(io->retired[i]);
    free(io->retired);
    free(io->pend);
    free(io);
    *pp = NULL;
}

void coord_io_set_map(coord_io *io, const coord_map *map)
{
    coord_map *copy = malloc(sizeof *copy);
    if (!copy)
        return;
    *copy = *map;
    pthread_mutex_lock(&io->map_mu);
    free(io->next_map);
    io->next_map = copy;
    pthread_mutex_unlock(&io->map_mu);
}

void coord_io_set_up_hook(coord_io *io, coord_io_up_fn fn, void *ctx)
{
    io->o.on_replica_up = fn;
    io->o.up_ctx = ctx;
}

const coord_map *coord_io_map(coord_io *io)
{
    const coord_map *m;
    pthread_mutex_lock(&io->map_mu);
    m = io->map;
    pthread_mutex_unlock(&io->map_mu);
    return m;
}

int coord_io_stopping(const coord_io *io)
{
    return atomic_load(&io->stopping);
}

int coord_io_replica_live(coord_io *io, int group, int replica)
{
    if (group < 0 || group >= COORD_MAX_GROUPS || replica < 0 || replica >= COORD_MAX_REPLICAS)
        return 0;
    return atomic_load(&io->live[group][replica]);
}

/* ---- replica freshness ------------------------------------------------------------------ */

/* The backend of (group, replica) as last built, or -1; state_mu held. Checked against the
 * backend itself: during a reload group_be may hold entries of the previous map. */
static int replica_be(coord_io *io, int group, int replica)
{
    int bi;
    if (group < 0 || group >= COORD_MAX_GROUPS || replica < 0 || replica >= COORD_MAX_REPLICAS)
        return -1;
    bi = io->group_be[group][replica];
    if (bi < 0 || bi >= io->n_be || io->be[bi].is_encoder || io->be[bi].group != group ||
        io->be[bi].replica != replica)
        return -1;
    return bi;
}

static void state_fill(const backend *b, coord_replica_state *out)
{
    out->up = atomic_load(&b->answering);
    out->behind = b->behind;
    out->known = b->known;
    out->mark = b->mark;
    snprintf(out->ep, sizeof out->ep, "%s", b->ep);
}

static void missed(backend *b, uint64_t min_version, int acked)
{
    uint64_t below = min_version ? min_version - 1 : 0;
    if (b->group_size == 1)
        return;
    if (below < b->mark)
        b->mark = below;
    if (below < b->fresh_mark)
        b->fresh_mark = below;
    if (acked) {
        b->behind = 1;
        b->fresh_behind = 1;
    }
    atomic_store(&b->readable, !b->behind);
}

int coord_io_replica_missed(coord_io *io, int group, int replica, const char *ep,
                            uint64_t min_version, int acked)
{
    int bi, answering = 0;
    pthread_mutex_lock(&io->state_mu);
    /* The caller's map may predate a reload: mark the endpoint it wrote to, wherever it is
     * now, and whatever now sits at (group, replica). Marking one too many is safe. */
    for (int i = 0; ep && i < io->n_be; i++)
        if (!io->be[i].is_encoder && strcmp(io->be[i].ep, ep) == 0) {
            missed(&io->be[i], min_version, acked);
            answering |= atomic_load(&io->be[i].answering);
        }
    bi = replica_be(io, group, replica);
    if (bi >= 0) {
        missed(&io->be[bi], min_version, acked);
        answering |= atomic_load(&io->be[bi].answering);
    }
    pthread_mutex_unlock(&io->state_mu);
    return answering;
}

int coord_io_replica_state(coord_io *io, int group, int replica, coord_replica_state *out)
{
    int bi;
    pthread_mutex_lock(&io->state_mu);
    bi = replica_be(io, group, replica);
    if (bi >= 0)
        state_fill(&io->be[bi], out);
    pthread_mutex_unlock(&io->state_mu);
    return bi >= 0;
}

int coord_io_repair_begin(coord_io *io, int group, int replica, coord_replica_state *out)
{
    int bi;
    pthread_mutex_lock(&io->state_mu);
    bi = replica_be(io, group, replica);
    if (bi >= 0) {
        backend *b = &io->be[bi];
        state_fill(b, out);
        b->repair_running = 1;
        b->fresh_mark = UINT64_MAX;
        b->fresh_behind = 0;
    }
    pthread_mutex_unlock(&io->state_mu);
    return bi >= 0;
}

int coord_io_repair_end(coord_io *io, int group, int replica, const char *ep, int proven,
                        int complete)
{
    int bi, more = 0;
    pthread_mutex_lock(&io->state_mu);
    bi = replica_be(io, group, replica);
    if (bi >= 0 && io->be[bi].repair_running && strcmp(io->be[bi].ep, ep) == 0) {
        backend *b = &io->be[bi];
        /* Misses since the repair began may or may not have been copied: they stay. */
        if (complete) {
            b->mark = b->fresh_mark;
            b->known = 1;
        }
        if (proven)
            b->behind = b->fresh_behind;
        more = b->fresh_mark != UINT64_MAX || b->fresh_behind;
        b->repair_running = 0;
        fresh_publish(b);
    }
    pthread_mutex_unlock(&io->state_mu);
    return more;
}

cr_err coord_io_run(coord_io *io, volatile sig_atomic_t *stop)
{
    cr_wire_limits inner = io->lim;
    pthread_t workers[MAX_WORKERS];
    int nw = 0;
    cr_err rc = CR_OK;

    inner.heartbeat_ivl_ms = 0;
    inner.max_frame = (size_t)-1 >> 1;
    io->front = zmq_socket(io->ctx, ZMQ_ROUTER);
    io->work = zmq_socket(io->ctx, ZMQ_DEALER);
    io->calls = zmq_socket(io->ctx, ZMQ_ROUTER);
    if (!io->front || !io->work || !io->calls || cr_wire_socket_setup(io->front, &io->lim) ||
        cr_wire_socket_setup(io->work, &inner) || cr_wire_socket_setup(io->calls, &inner)) {
        rc = cr_error_set(CR_ERR_NET, "coordinator sockets: %s", zmq_strerror(errno));
        goto out;
    }
    if (zmq_bind(io->front, io->o.bind) != 0) {
        rc = cr_error_set(CR_ERR_NET, "cannot bind %s: %s", io->o.bind, zmq_strerror(errno));
        goto out;
    }
    if (zmq_bind(io->work, io->work_ep) != 0 || zmq_bind(io->calls, io->call_ep) != 0) {
        rc = cr_error_set(CR_ERR_NET, "inproc bind: %s", zmq_strerror(errno));
        goto out;
    }
    for (; nw < io->o.workers && nw < MAX_WORKERS; nw++)
        if (pthread_create(&workers[nw], NULL, io->o.worker_main, io->o.worker_arg) != 0)
            break;
    if (nw < io->o.workers && nw < MAX_WORKERS) {
        /* Serving with fewer workers than asked (or none) would look up but answer nothing. */
        rc = cr_error_set(CR_ERR_INTERNAL, "cannot start request thread %d of %d", nw + 1,
                          io->o.workers);
        atomic_store(&io->stopping, 1);
        for (int i = 0; i < nw; i++)
            pthread_join(workers[i], NULL);
        goto out;
    }
    CR_INFO("coordinator", "serving on %s: %d shard groups, %d encoders, %d workers",
            io->o.bind, io->map->n_groups, io->map->n_encoders, nw);
    loop(io, stop);
    /* Let the workers finish what they hold: keep serving their calls and replies. */
    atomic_store(&io->stopping, 1);
    {
        volatile sig_atomic_t never = 0;
        uint64_t until = cr_clock_mono_ms() + 2000;
        while (io->active && cr_clock_mono_ms() < until) {
            zmq_pollitem_t it[2] = {{io->calls, 0, ZMQ_POLLIN, 0}, {io->work, 0, ZMQ_POLLIN, 0}};
            (void)never;
            if (zmq_poll(it, 2, 5) > 0) {
                if (it[0].revents & ZMQ_POLLIN)
                    on_call(io);
                if (it[1].revents & ZMQ_POLLIN)
                    cr_wire_forward(io->work, io->front);
            }
            for (int i = 0; i < io->n_be; i++)
                on_backend(io, i);
            sweep(io);
        }
    }
    for (int i = 0; i < nw; i++)
        pthread_join(workers[i], NULL);
    while (1) {
        zmq_pollitem_t it = {io->work, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 0) <= 0)
            break;
        cr_wire_forward(io->work, io->front);
    }
    cr_clock_sleep_ms(50);
out:
    if (io->front)
        zmq_close(io->front);
    if (io->work)
        zmq_close(io->work);
    if (io->calls)
        zmq_close(io->calls);
    io->front = io->work = io->calls = NULL;
    atomic_store(&io->exited, 1);
    return rc;
}

/* ---- worker side ---------------------------------------------------------------------- */

static cr_err worker_open(coord_io *io, coord_worker **out, int serves_requests)
{
    coord_worker *w = calloc(1, sizeof *w);
    if (!w)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    w->io = io;
    /* Only request-serving workers join the work socket: its DEALER deals requests round
     * robin to every connected peer, and a peer that never reads would swallow some. */
    w->req = serves_requests ? zmq_socket(io->ctx, ZMQ_DEALER) : NULL;
    w->call = zmq_socket(io->ctx, ZMQ_DEALER);
    if ((serves_requests && (!w->req || zmq_connect(w->req, io->work_ep) != 0)) || !w->call ||
        zmq_connect(w->call, io->call_ep) != 0) {
        coord_worker_close(&w);
        return cr_error_set(CR_ERR_NET, "worker sockets: %s", zmq_strerror(errno));
    }
    *out = w;
    return CR_OK;
}

cr_err coord_worker_open(coord_io *io, coord_worker **out)
{
    return worker_open(io, out, 1);
}

cr_err coord_worker_open_caller(coord_io *io, coord_worker **out)
{
    return worker_open(io, out, 0);
}

void coord_worker_close(coord_worker **pp)
{
    coord_worker *w = pp ? *pp : NULL;
    int zero = 0;
    if (!w)
        return;
    if (w->req) {
        zmq_setsockopt(w->req, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(w->req);
    }
    if (w->call) {
        zmq_setsockopt(w->call, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(w->call);
    }
    free(w);
    *pp = NULL;
}

cr_err coord_worker_next(coord_worker *w, int poll_ms, void *route_msg, uint64_t *recv_us)
{
    cr_wire_msg *m = route_msg;
    cr_wire_limits lim = w->io->lim;
    zmq_pollitem_t it = {w->req, 0, ZMQ_POLLIN, 0};
    cr_err rc;
    lim.max_frame = (size_t)-1 >> 1;
    if (zmq_poll(&it, 1, poll_ms) <= 0)
        return CR_TIMEOUT;
    rc = cr_wire_recv(w->req, m, &lim, ZMQ_DONTWAIT);
    if (rc)
        return rc;
    rc = cr_wire_take_recv_time(m, recv_us);
    if (rc)
        return rc;
    return CR_OK;
}

cr_err coord_worker_reply(coord_worker *w, const void *route, const Cirrus__V1__Response *resp)
{
    return cr_wire_send(w->req, route, &resp->base, 0);
}

cr_err coord_worker_reply_error(coord_worker *w, const void *route, uint64_t id, cr_err code,
                                const char *msg)
{
    return cr_wire_reply_error(w->req, route, id, code, msg);
}

cr_err coord_io_call(coord_worker *w, coord_sub *subs, size_t n)
{
    call *c;
    char done[8];
    uint32_t max_timeout = 0;
    int wait_ms;
    if (n == 0)
        return CR_OK;
    c = calloc(1, sizeof *c);
    if (!c || !(c->st = calloc(n, sizeof *c->st))) {
        free(c);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    c->subs = subs;
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        subs[i].rc = CR_ERR_INTERNAL;
        subs[i].resp = NULL;
        subs[i].msg[0] = '\0';
        if (subs[i].timeout_ms > max_timeout)
            max_timeout = subs[i].timeout_ms;
    }
    atomic_store_explicit(&c->submitted, 1, memory_order_release);
    if (zmq_send(w->call, &c, sizeof c, 0) < 0) {
        free(c->st);
        free(c);
        return cr_error_set(CR_ERR_NET, "cannot reach the I/O thread");
    }
    /* The I/O thread answers when every sub is done; each sub has its own timeout, so this
     * wait is bounded. */
    wait_ms = (int)(max_timeout ? max_timeout : 10000) + 5000;
    {
        zmq_pollitem_t it = {w->call, 0, ZMQ_POLLIN, 0};
        cr_wire_spin spin = {w->io->o.spin_us, cr_clock_mono_us() + w->io->o.spin_us};
        uint64_t until = cr_clock_mono_ms() + (uint64_t)wait_ms;
        int ready = 0;
        /* In slices, so that a caller outliving the I/O thread (the repair thread at
         * shutdown) stops at once; the exited thread no longer touches the call. */
        while (!ready && cr_clock_mono_ms() < until) {
            ready = cr_wire_poll_spin(&it, 1, 100, &spin) > 0;
            if (!ready && atomic_load(&w->io->exited)) {
                free(c->st);
                free(c);
                return cr_error_set(CR_ERR_UNAVAILABLE, "the coordinator is stopping");
            }
        }
        if (!ready)
            return cr_error_set(CR_ERR_INTERNAL, "the I/O thread did not answer");
    }
    if (zmq_recv(w->call, done, sizeof done, ZMQ_DONTWAIT) < 0) {
        /* Should not happen; leak the call rather than free memory the I/O thread may use. */
        return cr_error_set(CR_ERR_INTERNAL, "the I/O thread did not answer");
    }
    (void)atomic_load_explicit(&c->finished, memory_order_acquire);
    zmq_msg_close(&c->worker);
    free(c->st);
    free(c);
    return CR_OK;
}
