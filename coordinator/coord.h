/* coord.h — the coordinator: one public endpoint in front of shard groups and encoders.
 *
 *   coord_server_opts o = coord_server_default_opts();
 *   o.map = &map;                                  // see clustermap.h
 *   rc = coord_server_run(&o, &stop_flag);         // returns when *stop
 *
 * It answers every Request kind: vector, text, image, item-id and composed queries (encode or
 * fetch the reference vector, compose, scatter to one replica of every group, merge, group,
 * page), writes (routed by id, written to every replica of the owning group, acknowledged
 * after the write quorum is durable, versions from a hybrid logical clock), gets, stats and
 * health; encoder ops are passed through to an encoder. A group with no live replica makes a
 * search `partial`, listing the missing groups.
 */
#ifndef COORD_COORD_H
#define COORD_COORD_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hlc.h"
#include "coordinator/clustermap.h"
#include "coordinator/io.h"

typedef struct coord_server_opts {
    const coord_map *map;
    void *zmq_ctx;               /* shared context for inproc backends; NULL = own */
    int workers;                 /* request threads (default 8) */
    uint32_t default_deadline_ms;/* for requests without one (default 10000) */
    uint32_t backend_timeout_ms; /* per backend call when the deadline allows (default 5000) */
    const char *map_path;        /* reloaded on SIGHUP when set */
    volatile sig_atomic_t *reload; /* set by the SIGHUP handler; cleared after reloading */
    const char *http_bind;       /* "HOST:PORT" for the HTTP/JSON API and /metrics; NULL = off */
    unsigned spin_us;            /* busy-poll after traffic before sleeping (default 0) */
    uint64_t version_skew_ms;    /* how far a client-chosen item version may lead the clock
                                    (default CR_HLC_MAX_SKEW_MS); later ones are rejected */
} coord_server_opts;

coord_server_opts coord_server_default_opts(void);

cr_err coord_server_run(const coord_server_opts *o, volatile sig_atomic_t *stop);

#endif
