#include "coordinator/coord.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/handlers.h"
#include "coordinator/http.h"

coord_server_opts coord_server_default_opts(void)
{
    coord_server_opts o;
    memset(&o, 0, sizeof o);
    o.workers = 8;
    o.spin_us = 0; /* measured no gain on 2 shared cores; see docs/operations.md */
    o.default_deadline_ms = 10000;
    o.backend_timeout_ms = 5000;
    o.version_skew_ms = CR_HLC_MAX_SKEW_MS;
    return o;
}

typedef struct reloader {
    coord_app *app;
    volatile sig_atomic_t *stop;
    pthread_t tid;
} reloader;

/* SIGHUP: load and validate the map file; a bad map is refused and the old one stays. */
static void *reload_main(void *arg)
{
    reloader *rl = arg;
    const coord_server_opts *o = &rl->app->o;
    while (!*rl->stop) {
        cr_clock_sleep_ms(100);
        if (!o->reload || !*o->reload || !o->map_path)
            continue;
        *o->reload = 0;
        coord_map *m = malloc(sizeof *m);
        if (!m)
            continue;
        if (coord_map_load(o->map_path, m)) {
            CR_ERROR("coordinator", "reload refused, keeping the current map: %s",
                     cr_error_message());
        } else {
            coord_io_set_map(rl->app->io, m);
        }
        free(m);
    }
    return NULL;
}

cr_err coord_server_run(const coord_server_opts *o, volatile sig_atomic_t *stop)
{
    coord_app *app = calloc(1, sizeof *app);
    coord_io_opts io = {0};
    reloader rl = {0};
    coord_http *http = NULL;
    int reloading = 0;
    cr_err rc;

    if (!app)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    app->o = *o;
    /* Seeded from the shards' highest versions before the first write (handlers.c). */
    cr_hlc_init(&app->hlc);
    coord_metrics_init(&app->metrics);
    io.bind = o->map->bind;
    io.zmq_ctx = o->zmq_ctx;
    io.workers = o->workers;
    io.spin_us = o->spin_us;
    io.worker_main = coord_worker_main;
    io.worker_arg = app;
    rc = coord_io_new(&app->io, o->map, &io);
    if (!rc)
        rc = coord_repair_start(app, &app->repair);
    if (rc)
        goto out;
    /* The I/O thread reports returning replicas to the repair thread. */
    coord_io_set_up_hook(app->io, coord_repair_enqueue, app->repair);
    if (o->http_bind && (rc = coord_http_start(&http, o->http_bind, o->map->bind, app)))
        goto out;
    rl.app = app;
    rl.stop = stop;
    reloading = pthread_create(&rl.tid, NULL, reload_main, &rl) == 0;
    rc = coord_io_run(app->io, stop);
out:
    coord_http_stop(&http);
    if (reloading)
        pthread_join(rl.tid, NULL);
    coord_repair_stop(&app->repair);
    coord_io_free(&app->io);
    free(app);
    return rc;
}
