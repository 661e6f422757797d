/* build_impl.h — the state of one offline_build_run, shared by its stages (build.c: plan,
 * train, index, map; build_write.c: write; build_encode.c: a catalog's encode stage). */
#ifndef OFFLINE_BUILD_IMPL_H
#define OFFLINE_BUILD_IMPL_H

#include <stdio.h>

#include "coordinator/placement.h"
#include "offline/build.h"
#include "offline/build_input.h"
#include "offline/build_state.h"
#include "offline/shard_writer.h"

#define OFFLINE_PATH_MAX 4096
#define OFFLINE_DIR_MAX 3072 /* --out and the directories in it: room for the file names */

typedef struct build_group {
    int g;
    offline_shard *sh;
    offline_group_state st;
    char state_path[OFFLINE_PATH_MAX], err_path[OFFLINE_PATH_MAX];
    FILE *errf;
    /* the batch being filled */
    size_t n, cap;
    offline_item *items;
    offline_put_result *res;
    float *vecs;
    char (*ids)[320];
    uint64_t *lines;
} build_group;

typedef struct build_run {
    const offline_build_opts *o;
    const offline_build_events *ev;
    offline_build_summary *sum;
    coord_placement placement;
    offline_input *in;      /* what the write stage reads (a catalog's: after encode) */
    uint64_t records;       /* input records (vector rows, catalog lines) */
    int dim;
    struct build_encoder *enc; /* catalog builds: the in-process encoder */
    char build_dir[OFFLINE_DIR_MAX];
    char template_path[OFFLINE_PATH_MAX]; /* "" when the index needs none */
    build_group *groups; /* the groups built: all, or the one asked for */
    int n_groups;
    long kill_after_puts; /* CIRRUS_BUILD_FAULTS=kill-after-puts=N (tests): SIGKILL */
} build_run;

/* Stage helpers (build.c). */
void build_stage_begin(build_run *b, const char *stage, uint64_t total);
void build_stage_advance(build_run *b, uint64_t n);
void build_stage_end(build_run *b, offline_stage_report *r, uint64_t t0_us);
/* A record's failure: into the group's error log (and the `bad` event). */
cr_err build_record_bad(build_run *b, build_group *bg, uint64_t line, const char *id,
                        const char *why);
/* Called after each shard commit and each encode progress record: the test fault hook
 * (CIRRUS_BUILD_FAULTS=kill-after-puts=N: SIGKILL at the N-th). */
void build_fault_point(build_run *b);

/* The write stage (build_write.c). */
cr_err build_write_stage(build_run *b);

/* A catalog build (build_encode.c). open: loads the model, counts the catalog's lines (sets
 * b->dim and b->records). sample: encodes `want` lines drawn evenly across the catalog into
 * x (*got valid ones, bad lines left out). stage: encodes every line of the groups built
 * into the spill OUT/.build/encoded[-G].{fvecs,jsonl} (resumable) and opens it as b->in in
 * items mode. close: frees what open made (NULL-safe). */
cr_err build_encode_open(build_run *b);
cr_err build_encode_sample(build_run *b, uint64_t want, float *x, uint64_t *got);
cr_err build_encode_stage(build_run *b);
void build_encode_close(build_run *b);
/* Removes the spill once every group built is finished. */
void build_encode_cleanup(build_run *b);

#endif
