#include "coordinator/coord.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/handlers.h"
#include "coordinator/repair.h"

struct coord_server {
    coord_app app;
    pthread_t reload_tid;
    int reloading;
    volatile sig_atomic_t reload_stop;
};

coord_server_opts coord_server_default_opts(void)
{
    coord_server_opts o;
    memset(&o, 0, sizeof o);
    o.workers = 8;
    o.spin_us = 0; /* measured no gain on 2 shared cores; see docs/operations.md */
    o.default_deadline_ms = 10000;
    o.backend_timeout_ms = 5000;
    o.version_skew_ms = CR_HLC_MAX_SKEW_MS;
    o.query_cache = 1024;
    o.query_cache_bytes = (size_t)64 << 20;
    return o;
}

/* SIGHUP: load and validate the map file (off the loop: it reads a file); a bad map is
 * refused and the old one stays. */
static void *reload_main(void *arg)
{
    coord_server *s = arg;
    const coord_server_opts *o = &s->app.o;
    while (!s->reload_stop) {
        cr_clock_sleep_ms(100);
        if (!o->reload || !*o->reload || !o->map_path)
            continue;
        *o->reload = 0;
        coord_map *m = malloc(sizeof *m);
        if (!m)
            continue;
        if (coord_map_load(o->map_path, m))
            CR_ERROR("coordinator", "reload refused, keeping the current map: %s",
                     cr_error_message());
        else {
            if (o->jobs_endpoint)
                snprintf(m->jobs, sizeof m->jobs, "%s", o->jobs_endpoint);
            coord_loop_set_map(s->app.loop, m);
        }
        free(m);
    }
    return NULL;
}

cr_err coord_server_open(coord_server **out, const coord_server_opts *o)
{
    coord_server *s = calloc(1, sizeof *s);
    coord_loop_opts lo = {0};
    cr_err rc;

    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    s->app.o = *o;
    /* Seeded from the shards' highest versions before the first write (write.c). */
    cr_hlc_init(&s->app.hlc);
    coord_metrics_init(&s->app.metrics);
    lo.bind = o->map->bind;
    lo.zmq_ctx = o->zmq_ctx;
    lo.spin_us = o->spin_us;
    lo.curve = o->curve;
    lo.on_request = coord_request_start;
    lo.request_ctx = &s->app;
    rc = coord_qcache_open(&s->app.qcache, o->query_cache, o->query_cache_bytes,
                           &s->app.metrics.qcache);
    if (!rc)
        rc = coord_loop_new(&s->app.loop, o->map, &lo);
    if (!rc)
        rc = coord_repair_start(&s->app, &s->app.repair);
    if (!rc) /* the loop reports returning replicas to the repair thread */
        coord_loop_set_up_hook(s->app.loop, coord_repair_enqueue, s->app.repair);
    if (!rc) {
        s->reloading = pthread_create(&s->reload_tid, NULL, reload_main, s) == 0;
        if (!s->reloading)
            rc = cr_error_set(CR_ERR_INTERNAL, "cannot start the map reload thread");
    }
    if (rc) {
        coord_server_close(&s);
        return rc;
    }
    *out = s;
    return CR_OK;
}

cr_err coord_server_serve(coord_server *s, volatile sig_atomic_t *stop)
{
    cr_err rc = coord_loop_run(s->app.loop, stop);
    coord_requests_abort(&s->app);
    cr_clock_sleep_ms(50); /* let the last replies leave before the sockets close */
    return rc;
}

void coord_server_close(coord_server **pp)
{
    coord_server *s = pp ? *pp : NULL;
    if (!s)
        return;
    s->reload_stop = 1;
    if (s->reloading)
        pthread_join(s->reload_tid, NULL);
    coord_repair_stop(&s->app.repair);
    coord_requests_abort(&s->app);
    coord_loop_free(&s->app.loop);
    coord_qcache_close(&s->app.qcache);
    free(s);
    *pp = NULL;
}

coord_pending_stats coord_server_pending_stats(const coord_server *s)
{
    return coord_loop_pending_stats(s->app.loop);
}

cr_err coord_server_run(const coord_server_opts *o, volatile sig_atomic_t *stop)
{
    coord_server *s = NULL;
    cr_err rc = coord_server_open(&s, o);
    if (rc)
        return rc;
    rc = coord_server_serve(s, stop);
    coord_server_close(&s);
    return rc;
}

int coord_server_ready(coord_server *s)
{
    const coord_map *m = coord_loop_map(s->app.loop);
    for (int g = 0; g < m->n_groups; g++) {
        int any = 0;
        for (int r = 0; r < m->n_replicas[g]; r++)
            any |= coord_loop_replica_live(s->app.loop, g, r);
        if (!any)
            return 0;
    }
    return 1;
}

static int live_of(void *ctx, int g, int r)
{
    return coord_loop_replica_live(ctx, g, r);
}

cr_err coord_server_metrics(coord_server *s, char **text, size_t *len)
{
    if (coord_metrics_render(&s->app.metrics, coord_loop_map(s->app.loop), live_of, s->app.loop,
                             text, len))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}
