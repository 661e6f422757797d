/* resolve.h — turning a query into the vector the shards search: a vector as it is; text or
 * an image through an encoder; an item id by fetching its stored vector from the owning
 * group; a composed query by fetching the reference (when it is an item id) and composing on
 * an encoder. Steps run as backend calls of the event loop.
 *
 *   coord_resolve_start(&s, r, query, &timing, done, arg);
 *   ... done(arg): s.st.rc == CR_OK -> s.vec[0..s.dim), s.truncated; else s.st.msg
 *   coord_resolve_free(&s);
 *
 * Loop thread only. `query` and `timing` are borrowed until done runs.
 */
#ifndef COORD_RESOLVE_H
#define COORD_RESOLVE_H

#include "coordinator/qcache.h"
#include "coordinator/request.h"

typedef struct coord_resolve {
    /* results */
    float *vec; /* owned; freed by coord_resolve_free */
    size_t dim;
    int truncated; /* the caption was cut to the text tower's context */
    coord_status st;
    /* state */
    coord_rq *r;
    const Cirrus__V1__Query *q;
    Cirrus__V1__Timing *t;
    coord_one one;
    const char *what; /* the step in flight, for its error message */
    coord_call idle; /* completes steps that need no backend */
    uint64_t t0;
    float *refvec;
    size_t refdim;
    coord_qkey key; /* of a composed query (qcache.h) */
    coord_call_fn done;
    void *arg;
} coord_resolve;

/* Starts resolving q; done(arg) runs exactly once, later, from the loop. */
void coord_resolve_start(coord_resolve *s, coord_rq *r, const Cirrus__V1__Query *q,
                         Cirrus__V1__Timing *t, coord_call_fn done, void *arg);
/* Cancels what is in flight and frees the results. */
void coord_resolve_free(coord_resolve *s);

#endif
