#include "coordinator/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/sock.h"

cr_err coord_backends_init(coord_backends *s, void *zmq_ctx, const cr_wire_limits *lim)
{
    memset(s, 0, sizeof *s);
    s->be = calloc(COORD_MAX_BACKENDS, sizeof *s->be);
    s->jobs_be = -1;
    if (!s->be)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    s->ctx = zmq_ctx;
    s->lim = *lim;
    pthread_mutex_init(&s->state_mu, NULL);
    return CR_OK;
}

void coord_backends_free(coord_backends *s)
{
    for (int i = 0; s->be && i < s->n; i++)
        cr_sock_close(&s->be[i].sock);
    if (s->be)
        pthread_mutex_destroy(&s->state_mu);
    free(s->be);
    s->be = NULL;
    s->n = 0;
}

/* With CURVE on, every tcp:// backend needs its public key from the map: a node whose key is
 * unknown is refused here rather than connected in plaintext. */
static cr_err backend_curve(coord_backends *s, coord_backend *b, const char *pub)
{
    if (!s->curve || !cr_endpoint_is_tcp(b->ep))
        return CR_OK;
    if (!pub[0])
        return cr_error_set(CR_ERR_INVALID, "cluster map: %s has no curve_pub (this "
                                            "coordinator runs with --curve-secret)", b->ep);
    snprintf(b->pub, sizeof b->pub, "%s", pub);
    return cr_curve_setup_client(b->sock, s->curve, pub);
}

static cr_err backend_open(coord_backends *s, coord_backend *b, const char *ep, const char *pub)
{
    cr_wire_limits lim = s->lim;
    cr_err rc;
    snprintf(b->ep, sizeof b->ep, "%s", ep);
    if (strncmp(ep, "inproc://", 9) == 0)
        lim.heartbeat_ivl_ms = 0;
    if (cr_sock_open(s->ctx, CR_SOCK_DEALER, &lim, &b->sock))
        return CR_ERR_NET;
    if ((rc = backend_curve(s, b, pub)) || (rc = cr_sock_connect(b->sock, ep))) {
        cr_sock_close(&b->sock);
        return rc;
    }
    b->up = 1; /* optimistic until pings say otherwise */
    /* Nothing is known of a replica's contents until a repair compared it with its peers
     * (single-replica groups are exempt: fresh_publish). */
    b->behind = 1;
    b->mark = 0;
    return CR_OK;
}

void coord_backends_publish(coord_backends *s, const coord_backend *b)
{
    if (!b->is_encoder && b->group >= 0)
        atomic_store(&s->live[b->group][b->replica], b->up && atomic_load(&b->readable));
}

/* Publishes `readable` from the freshness fields; state_mu held. The only replica of a group
 * holds every acknowledged write by definition (a write it missed was acknowledged by none),
 * so it is always readable and never repaired. */
static void fresh_publish(coord_backend *b)
{
    if (b->group_size == 1) {
        b->behind = 0;
        b->known = 1;
        b->mark = UINT64_MAX;
    }
    atomic_store(&b->readable, !b->behind);
}

void coord_backends_mark(coord_backends *s, coord_backend *b, int up)
{
    int returned = !b->up || !b->ever_up;
    if (up) {
        b->missed_pings = 0;
        b->last_reply_ms = cr_clock_mono_ms();
        if (!b->up) {
            b->up = 1;
            CR_INFO("coordinator", "%s is up", b->ep);
        }
        b->ever_up = 1;
        atomic_store(&b->answering, 1);
        /* A replica answering for the first time, or again: the repair hook decides whether
         * it (or a peer waiting for it) must catch up before serving reads. */
        if (returned && !b->is_encoder && s->on_up)
            s->on_up(s->up_ctx, b->group, b->replica);
    } else if (b->up) {
        b->up = 0;
        atomic_store(&b->answering, 0);
        CR_WARN("coordinator", "%s is down", b->ep);
    }
    coord_backends_publish(s, b);
}

/* Moves the backend for `ep` from old[] into *b when there is one. */
static int reuse(coord_backend *old, int n_old, coord_backend *b, const char *ep,
                 const char *pub)
{
    for (int i = 0; i < n_old; i++)
        if (old[i].sock && strcmp(old[i].ep, ep) == 0 && strcmp(old[i].pub, pub) == 0) {
            memcpy(b, &old[i], sizeof *b);
            old[i].sock = NULL;
            return 1;
        }
    return 0;
}

cr_err coord_backends_build(coord_backends *s, const coord_map *map)
{
    coord_backend *old = malloc(COORD_MAX_BACKENDS * sizeof *old);
    int n_old = s->n, n = 0;
    cr_err rc = CR_OK;

    if (!old)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&s->state_mu);
    memcpy(old, s->be, COORD_MAX_BACKENDS * sizeof *old);
    memset(s->be, 0, COORD_MAX_BACKENDS * sizeof *s->be);
    for (int g = 0; g < map->n_groups + 1 && !rc; g++) {
        int enc = g == map->n_groups, count = enc ? map->n_encoders : map->n_replicas[g];
        for (int r = 0; r < count && !rc; r++) {
            const char *ep = enc ? map->encoders[r] : map->replicas[g][r];
            const char *pub = enc ? map->encoder_pub[r] : map->replica_pub[g][r];
            coord_backend *b = &s->be[n];
            if (!reuse(old, n_old, b, ep, s->curve && cr_endpoint_is_tcp(ep) ? pub : ""))
                rc = backend_open(s, b, ep, pub);
            b->is_encoder = enc;
            b->group = enc ? -1 : g;
            b->replica = r;
            if (enc)
                s->enc_be[r] = n;
            else
                s->group_be[g][r] = n;
            b->group_size = count;
            if (!enc)
                fresh_publish(b);
            coord_backends_publish(s, b);
            n++;
        }
    }
    s->jobs_be = -1;
    if (!rc && map->jobs[0]) { /* pinged like an encoder; never a shard replica */
        coord_backend *b = &s->be[n];
        const char *pub = s->curve && cr_endpoint_is_tcp(map->jobs) ? map->jobs_pub : "";
        if (!reuse(old, n_old, b, map->jobs, pub))
            rc = backend_open(s, b, map->jobs, map->jobs_pub);
        b->is_encoder = 1;
        b->group = -1;
        b->group_size = 1;
        coord_backends_publish(s, b);
        s->jobs_be = n++;
    }
    s->n = n;
    pthread_mutex_unlock(&s->state_mu);
    for (int i = 0; i < n_old; i++)
        cr_sock_close(&old[i].sock);
    free(old);
    return rc;
}

cr_err coord_backend_send(coord_backend *b, const uint8_t *body, size_t len, uint64_t id)
{
    uint8_t tail[11];
    size_t n = 0;
    cr_err rc;
    tail[n++] = 0x08; /* field 1, varint */
    do {
        uint8_t byte = id & 0x7f;
        id >>= 7;
        tail[n++] = byte | (id ? 0x80 : 0);
    } while (id);
    rc = cr_sock_send(b->sock, NULL, (cr_sock_buf[]){{body, len}, {tail, n}}, 2,
                      CR_SOCK_DONTWAIT);
    if (rc == CR_ERR_NOMEM)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (rc)
        return cr_error_set(CR_ERR_OVERLOADED, "%s: send queue full", b->ep);
    return CR_OK;
}

int coord_backends_pick(const coord_backends *s, const coord_map *m, coord_target target,
                        int group, int replica, uint32_t tried)
{
    int best = -1, count;
    if (target == COORD_TO_REPLICA) {
        if (group < 0 || group >= m->n_groups || replica < 0 || replica >= m->n_replicas[group] ||
            (tried & 1u << replica))
            return -1;
        int bi = s->group_be[group][replica];
        return s->be[bi].up ? bi : -1;
    }
    if (target == COORD_TO_JOBS)
        return s->jobs_be >= 0 && !(tried & 1u) && s->be[s->jobs_be].up ? s->jobs_be : -1;
    if (target == COORD_TO_GROUP && (group < 0 || group >= m->n_groups))
        return -1;
    count = target == COORD_TO_GROUP ? m->n_replicas[group] : m->n_encoders;
    for (int r = 0; r < count; r++) {
        int bi = target == COORD_TO_GROUP ? s->group_be[group][r] : s->enc_be[r];
        const coord_backend *b = &s->be[bi];
        if ((tried & 1u << r) || !b->up ||
            (target == COORD_TO_GROUP && !atomic_load(&b->readable)))
            continue;
        if (best < 0 || b->outstanding < s->be[best].outstanding)
            best = bi;
    }
    return best;
}

int coord_backends_live(coord_backends *s, int group, int replica)
{
    if (group < 0 || group >= COORD_MAX_GROUPS || replica < 0 || replica >= COORD_MAX_REPLICAS)
        return 0;
    return atomic_load(&s->live[group][replica]);
}

/* ---- replica freshness ------------------------------------------------------------------ */

/* The backend of (group, replica) as last built, or -1; state_mu held. Checked against the
 * backend itself: during a reload group_be may hold entries of the previous map. */
static int replica_be(const coord_backends *s, int group, int replica)
{
    int bi;
    if (group < 0 || group >= COORD_MAX_GROUPS || replica < 0 || replica >= COORD_MAX_REPLICAS)
        return -1;
    bi = s->group_be[group][replica];
    if (bi < 0 || bi >= s->n || s->be[bi].is_encoder || s->be[bi].group != group ||
        s->be[bi].replica != replica)
        return -1;
    return bi;
}

static void state_fill(const coord_backend *b, coord_replica_state *out)
{
    out->up = atomic_load(&b->answering);
    out->behind = b->behind;
    out->known = b->known;
    out->mark = b->mark;
    snprintf(out->ep, sizeof out->ep, "%s", b->ep);
}

static void missed(coord_backend *b, uint64_t min_version, int acked)
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

int coord_backends_replica_missed(coord_backends *s, int group, int replica, const char *ep,
                                  uint64_t min_version, int acked)
{
    int bi, answering = 0;
    pthread_mutex_lock(&s->state_mu);
    /* The caller's map may predate a reload: mark the endpoint it wrote to, wherever it is
     * now, and whatever now sits at (group, replica). Marking one too many is safe. */
    for (int i = 0; ep && i < s->n; i++)
        if (!s->be[i].is_encoder && strcmp(s->be[i].ep, ep) == 0) {
            missed(&s->be[i], min_version, acked);
            answering |= atomic_load(&s->be[i].answering);
        }
    bi = replica_be(s, group, replica);
    if (bi >= 0) {
        missed(&s->be[bi], min_version, acked);
        answering |= atomic_load(&s->be[bi].answering);
    }
    pthread_mutex_unlock(&s->state_mu);
    return answering;
}

int coord_backends_replica_state(coord_backends *s, int group, int replica,
                                 coord_replica_state *out)
{
    int bi;
    pthread_mutex_lock(&s->state_mu);
    bi = replica_be(s, group, replica);
    if (bi >= 0)
        state_fill(&s->be[bi], out);
    pthread_mutex_unlock(&s->state_mu);
    return bi >= 0;
}

int coord_backends_repair_begin(coord_backends *s, int group, int replica,
                                coord_replica_state *out)
{
    int bi;
    pthread_mutex_lock(&s->state_mu);
    bi = replica_be(s, group, replica);
    if (bi >= 0) {
        coord_backend *b = &s->be[bi];
        state_fill(b, out);
        b->repair_running = 1;
        b->fresh_mark = UINT64_MAX;
        b->fresh_behind = 0;
    }
    pthread_mutex_unlock(&s->state_mu);
    return bi >= 0;
}

int coord_backends_repair_end(coord_backends *s, int group, int replica, const char *ep,
                              int proven, int complete)
{
    int bi, more = 0;
    pthread_mutex_lock(&s->state_mu);
    bi = replica_be(s, group, replica);
    if (bi >= 0 && s->be[bi].repair_running && strcmp(s->be[bi].ep, ep) == 0) {
        coord_backend *b = &s->be[bi];
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
    pthread_mutex_unlock(&s->state_mu);
    return more;
}
