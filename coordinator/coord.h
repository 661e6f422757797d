/* coord.h — the coordinator: one public endpoint in front of shard groups and encoders.
 *
 *   coord_server_opts o = coord_server_default_opts();
 *   o.map = &map;                                  // see clustermap.h
 *   rc = coord_server_run(&o, &stop_flag);         // returns when *stop
 *
 * or, to know when it is ready (tests, embedded mode):
 *
 *   coord_server *s; rc = coord_server_open(&s, &o);   // returns once bound
 *   rc = coord_server_serve(s, &stop);                 // on the thread that runs the loop
 *   coord_server_close(&s);
 *
 * It answers every Request kind: vector, text, image, item-id and composed queries (encode or
 * fetch the reference vector, compose, scatter to one replica of every group, merge, group,
 * page), writes (routed by id, written to every replica of the owning group, acknowledged
 * after the write quorum is durable, versions from a hybrid logical clock), gets, stats and
 * health; encoder ops are passed through to an encoder. A group with no live replica makes a
 * search `partial`, listing the missing groups. All of it runs on one event-loop thread
 * (loop.h); replica repair and the SIGHUP reload have threads of their own; the HTTP API (gateway/)
 * is a client of the public endpoint, started beside it by node/.
 */
#ifndef COORD_COORD_H
#define COORD_COORD_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hlc.h"
#include "coordinator/clustermap.h"
#include "coordinator/pending.h"

typedef struct coord_server_opts {
    const coord_map *map;
    void *zmq_ctx;               /* shared context for inproc backends; NULL = own */
    int workers;                 /* ignored: requests run on the event loop (kept for the
                                    --workers flag and existing callers) */
    uint32_t default_deadline_ms;/* for requests without one (default 10000) */
    uint32_t backend_timeout_ms; /* per backend call when the deadline allows (default 5000) */
    const char *map_path;        /* reloaded on SIGHUP when set */
    volatile sig_atomic_t *reload; /* set by the SIGHUP handler; cleared after reloading */
    unsigned spin_us;            /* busy-poll after traffic before sleeping (default 0) */
    uint64_t version_skew_ms;    /* how far a client-chosen item version may lead the clock
                                    (default CR_HLC_MAX_SKEW_MS); later ones are rejected */
    const char *jobs_endpoint;   /* a job broker in this process: kept as the map's "jobs"
                                    across reloads; NULL = the map's own */
    const struct cr_curve *curve; /* CURVE key and allow dir for the tcp:// front and the
                                     backends (common/curve.h; borrowed); NULL = plaintext */
    size_t query_cache;          /* composed query vectors cached, LRU (default 1024; 0 = off) */
    size_t query_cache_bytes;    /* and the bytes they may hold (default 64 MiB) */
} coord_server_opts;

coord_server_opts coord_server_default_opts(void);

typedef struct coord_server coord_server;

/* Connects the backends, binds the public endpoint (and the HTTP API), starts the repair
 * thread. *out is written only on success. */
cr_err coord_server_open(coord_server **out, const coord_server_opts *o);
/* Runs the event loop on the calling thread until *stop; requests still in flight after the
 * drain are answered UNAVAILABLE. */
cr_err coord_server_serve(coord_server *s, volatile sig_atomic_t *stop);
void coord_server_close(coord_server **pp);

/* The pending table's counters (call between serves or after serve returned). */
coord_pending_stats coord_server_pending_stats(const coord_server *s);

/* 1 when every shard group has a live replica (/readyz). Any thread. */
int coord_server_ready(coord_server *s);
/* The coordinator's metrics in Prometheus text format, malloc'd (/metrics). Any thread. */
cr_err coord_server_metrics(coord_server *s, char **text, size_t *len);

/* open + serve + close. */
cr_err coord_server_run(const coord_server_opts *o, volatile sig_atomic_t *stop);

#endif
