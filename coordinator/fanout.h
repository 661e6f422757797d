/* fanout.h — the state of a request that sends one sub-request per target and answers when
 * they are all back (get, stats, snapshot, schema), owned by the request (r->state). */
#ifndef COORD_FANOUT_H
#define COORD_FANOUT_H

#include "coordinator/request.h"

typedef struct coord_fanout {
    coord_rq *r;
    coord_call call;
    coord_sub *subs;
    size_t n;
    uint8_t **bodies;
    size_t n_bodies;
    char ***per; /* get: the ids of each group */
    size_t *cnt;
    size_t n_groups;
    void *ext;                /* an operation's own state (its merge), freed by ext_free */
    void (*ext_free)(void *);
} coord_fanout;

/* A fanout of up to max_subs subs and n_bodies bodies, made r's state (freed with it).
 * NULL when out of memory. */
coord_fanout *coord_fanout_new(coord_rq *r, size_t max_subs, size_t n_bodies);

/* Packs req into bodies[0] (n_bodies >= 1), sends it to one replica of every shard group
 * and calls done(f) on the loop once every sub is back or timed out. Errors: CR_ERR_NOMEM,
 * those of coord_loop_call; the caller fails the request. */
cr_err coord_fanout_to_groups(coord_fanout *f, const Cirrus__V1__Request *req,
                              void (*done)(void *));

#endif
