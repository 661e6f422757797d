/* build.h — `cirrus build` as a library: an input (vectors + attributes, or a catalog of
 * images encoded in-process) into ready shard directories, without servers (DESIGN §7d).
 *
 *     offline_build_opts o = offline_build_default_opts();
 *     o.out = "built"; o.groups = 4; o.factory = "IVF1024,PQ32"; o.vectors = "v.fvecs";
 *     offline_build_summary s;
 *     rc = offline_build_run(&o, &events, &s);   // CR_OK also when some records were bad:
 *                                                // s.failed counts them
 *
 * Output: OUT/group-G/ (a shard directory for `cirrus-shard --dir`), OUT/cluster.json (a map
 * template: placeholder endpoints, the metric and the placement), OUT/.build/ (what a resumed
 * run needs: build_state.h). Each item goes to group coord_placement_group(placement, id, G),
 * the coordinator's own function, with version = its input line number (so a later line of
 * the same id wins, and a replay after a crash stores nothing twice).
 *
 * Stages, each reported through the events: plan (input and earlier progress), train (the
 * shared template, for indexes that need training), encode (catalogs: images to vectors,
 * in-process), write (records into the shards, in input order), index (every group's index
 * completed and snapshotted), map. kill -9 at any point and the same call continues from the
 * last progress record; the finished directories hold the same items, versions and
 * attributes, in the same internal order, as an uninterrupted build. `group` >= 0 builds that
 * group only (the same call for every group, e.g. from a Kubernetes Indexed Job): the groups
 * so built are the groups one call would build. */
#ifndef OFFLINE_BUILD_H
#define OFFLINE_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct offline_build_opts {
    const char *out;       /* output directory (made when missing) */
    int groups;            /* 1..256 */
    int group;             /* -1: every group; else only this one */
    const char *factory;   /* FAISS factory string */
    int metric_l2;         /* 0: ip, 1: l2 */
    const char *placement; /* NULL: "fnv1a64-jump" */
    /* vectors: */
    const char *vectors;   /* .fvecs / .npy */
    const char *attrs;     /* JSONL, line i + 1 = row i's attributes; may be NULL */
    const char *id_prefix; /* ids are PREFIX + row number (default "") */
    /* or a catalog: {"id": ..., "image": relative path, "attributes": {...}} per line */
    const char *catalog, *images, *model, *phi, *preprocess;
    int64_t train_size;         /* 0: the index's default */
    const char *template_path;  /* a trained template to use instead of training */
    int threads;                /* training and encoding threads (0: all cores) */
    uint64_t checkpoint;        /* records between progress records (default 50,000) */
} offline_build_opts;

offline_build_opts offline_build_default_opts(void);

typedef struct offline_stage_report {
    const char *stage;   /* "plan", "train", "encode", "write", "index", "map" */
    uint64_t items;      /* records / vectors / groups the stage handled */
    uint64_t failed;     /* encode, write: bad records in this run */
    uint64_t resumed_at; /* encode, write: first record of this run (0 = from the start) */
    int skipped;         /* nothing to do (finished by an earlier run, or not needed) */
    double seconds;
} offline_stage_report;

/* Every callback may be NULL. `begin` gives the stage's total units (0: unknown), `advance`
 * how many more are done, `bad` one bad record (its input line, id when known, why). */
typedef struct offline_build_events {
    void *ctx;
    void (*begin)(void *ctx, const char *stage, uint64_t total);
    void (*advance)(void *ctx, uint64_t n);
    void (*end)(void *ctx, const offline_stage_report *r);
    void (*bad)(void *ctx, uint64_t line, const char *id, const char *why);
} offline_build_events;

typedef struct offline_build_summary {
    uint64_t records;   /* in the input */
    uint64_t items;     /* live items in the groups built */
    uint64_t failed;    /* bad records, this run and earlier runs of the same build */
    int groups_built;
} offline_build_summary;

/* Runs (or resumes) the build. CR_OK when every group is finished, bad records included;
 * CR_ERR_INVALID for bad options or a directory holding a build with other parameters;
 * store, index, I/O and model errors otherwise (a rerun resumes). */
cr_err offline_build_run(const offline_build_opts *o, const offline_build_events *ev,
                         offline_build_summary *sum);

/* OUT/.build/group-G.errors: the group's bad records, "line N (id): why" each. */
void offline_build_errors_path(const char *out, int group, char *buf, size_t cap);

#endif
