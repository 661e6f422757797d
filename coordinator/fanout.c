#include "coordinator/fanout.h"

#include <stdlib.h>

static void fanout_free(void *p)
{
    coord_fanout *f = p;
    coord_loop_call_cancel(f->r->loop, &f->call);
    for (size_t i = 0; f->subs && i < f->n; i++)
        coord_sub_free(&f->subs[i]);
    for (size_t i = 0; f->bodies && i < f->n_bodies; i++)
        free(f->bodies[i]);
    for (size_t g = 0; f->per && g < f->n_groups; g++)
        free(f->per[g]);
    if (f->ext_free)
        f->ext_free(f->ext);
    free(f->per);
    free(f->cnt);
    free(f->bodies);
    free(f->subs);
    free(f);
}

coord_fanout *coord_fanout_new(coord_rq *r, size_t max_subs, size_t n_bodies)
{
    coord_fanout *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->r = r;
    f->subs = calloc(max_subs ? max_subs : 1, sizeof *f->subs);
    f->bodies = calloc(n_bodies ? n_bodies : 1, sizeof *f->bodies);
    f->n_bodies = n_bodies;
    if (!f->subs || !f->bodies) {
        fanout_free(f);
        return NULL;
    }
    r->state = f;
    r->state_free = fanout_free;
    return f;
}

cr_err coord_fanout_to_groups(coord_fanout *f, const Cirrus__V1__Request *req,
                              void (*done)(void *))
{
    size_t ng = (size_t)f->r->map->n_groups, len;
    cr_err rc = coord_pack(&req->base, &f->bodies[0], &len);
    for (size_t g = 0; !rc && g < ng; g++)
        coord_sub_init(&f->subs[f->n++], COORD_TO_GROUP, (int)g, 0, f->bodies[0], len,
                       coord_rq_sub_timeout(f->r), 1);
    if (!rc)
        rc = coord_loop_call(f->r->loop, &f->call, f->subs, f->n, done, f);
    return rc;
}
