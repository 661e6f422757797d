/* build_write.c — the write stage: every record, in input order, into its group's shard in
 * batches of one synced commit each; a progress record per group every `checkpoint` records,
 * written after the commits it covers. */
#include "offline/build_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "gateway/attrs_json.h"

#define BATCH_VECTORS_TOTAL 65536 /* vectors buffered across all groups */
#define BATCH_MIN 32
#define BATCH_MAX 1024

/* The error log as of the progress record: lines logged after it are logged again. */
static cr_err errors_open(build_group *bg)
{
    if (access(bg->err_path, F_OK) == 0 && truncate(bg->err_path, (off_t)bg->st.errors_bytes))
        return cr_error_set(CR_ERR_IO, "%s: %s", bg->err_path, strerror(errno));
    bg->errf = fopen(bg->err_path, "ab");
    if (!bg->errf)
        return cr_error_set(CR_ERR_IO, "%s: %s", bg->err_path, strerror(errno));
    return CR_OK;
}

static cr_err group_open(build_run *b, build_group *bg)
{
    offline_shard_params p = {b->dim, b->o->metric_l2, b->o->factory,
                              b->template_path[0] ? b->template_path : NULL};
    char dir[OFFLINE_PATH_MAX];
    size_t cap = BATCH_VECTORS_TOTAL / (size_t)b->n_groups;
    cr_err rc;
    cap = cap < BATCH_MIN ? BATCH_MIN : cap > BATCH_MAX ? BATCH_MAX : cap;
    bg->cap = cap;
    bg->items = calloc(cap, sizeof *bg->items);
    bg->res = calloc(cap, sizeof *bg->res);
    bg->vecs = malloc(cap * (size_t)b->dim * sizeof *bg->vecs);
    bg->ids = malloc(cap * sizeof *bg->ids);
    bg->lines = malloc(cap * sizeof *bg->lines);
    if (!bg->items || !bg->res || !bg->vecs || !bg->ids || !bg->lines)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = errors_open(bg);
    if (rc)
        return rc;
    snprintf(dir, sizeof dir, "%s/group-%d", b->o->out, bg->g);
    return offline_shard_open(&bg->sh, dir, &p);
}

static void batch_clear(build_group *bg)
{
    for (size_t i = 0; i < bg->n; i++)
        cr_attrs_free(bg->items[i].attrs, bg->items[i].n_attrs);
    bg->n = 0;
}

static cr_err group_flush(build_run *b, build_group *bg)
{
    cr_err rc;
    if (bg->n == 0)
        return CR_OK;
    rc = offline_shard_put(bg->sh, bg->items, bg->n, bg->res);
    for (size_t i = 0; !rc && i < bg->n; i++) {
        if (bg->res[i].status == OFFLINE_PUT_INVALID)
            rc = build_record_bad(b, bg, bg->lines[i], bg->ids[i], bg->res[i].message);
        else
            bg->st.stored++;
    }
    batch_clear(bg);
    if (rc)
        return cr_error_wrap(rc, "group %d", bg->g);
    build_fault_point(b);
    return CR_OK;
}

/* Every record below `next` is committed (or logged as bad): say so, group by group. */
static cr_err checkpoint(build_run *b, uint64_t next, uint64_t side_offset)
{
    for (int i = 0; i < b->n_groups; i++) {
        build_group *bg = &b->groups[i];
        off_t len;
        cr_err rc = group_flush(b, bg);
        if (rc)
            return rc;
        if (bg->st.done || next <= bg->st.next)
            continue;
        if (fflush(bg->errf) != 0 || fsync(fileno(bg->errf)) != 0 ||
            (len = ftello(bg->errf)) < 0)
            return cr_error_set(CR_ERR_IO, "%s: %s", bg->err_path, strerror(errno));
        bg->st.next = next;
        bg->st.side_offset = side_offset;
        bg->st.errors_bytes = (uint64_t)len;
        rc = offline_state_save(bg->state_path, &bg->st);
        if (rc)
            return rc;
    }
    return CR_OK;
}

/* The built group owning record `id` that still needs record `index`, or NULL. */
static build_group *owner(build_run *b, const offline_record *rec)
{
    int g = coord_placement_group(b->placement, rec->id, b->o->groups);
    int i = b->o->group >= 0 ? (g == b->o->group ? 0 : -1) : g;
    build_group *bg = i >= 0 ? &b->groups[i] : NULL;
    return bg && !bg->st.done && rec->index >= bg->st.next ? bg : NULL;
}

/* Reads the record into bg's batch; a bad one is logged instead. */
static cr_err take(build_run *b, build_group *bg, const offline_record *rec)
{
    size_t k = bg->n;
    offline_item *it = &bg->items[k];
    cr_err rc = offline_input_load(b->in, bg->vecs + k * (size_t)b->dim, &it->attrs,
                                   &it->n_attrs);
    if (rc)
        return build_record_bad(b, bg, rec->line, rec->id, cr_error_message());
    snprintf(bg->ids[k], sizeof bg->ids[k], "%s", rec->id);
    bg->lines[k] = rec->line;
    it->id = bg->ids[k];
    it->vector = bg->vecs + k * (size_t)b->dim;
    it->version = rec->line;
    bg->n++;
    return bg->n == bg->cap ? group_flush(b, bg) : CR_OK;
}

/* The first record some group still needs, and the side-file offset there. */
static void resume_point(const build_run *b, uint64_t *next, uint64_t *offset)
{
    *next = UINT64_MAX;
    *offset = 0;
    for (int i = 0; i < b->n_groups; i++) {
        const offline_group_state *st = &b->groups[i].st;
        if (!st->done && st->next < *next) {
            *next = st->next;
            *offset = st->side_offset;
        }
    }
}

cr_err build_write_stage(build_run *b)
{
    offline_stage_report r = {.stage = "write"};
    uint64_t t0 = cr_clock_mono_us(), from, offset, before = 0;
    offline_record rec;
    cr_err rc = CR_OK;

    for (int i = 0; i < b->n_groups; i++) {
        before += b->groups[i].st.errors;
        if (!b->groups[i].st.done && (rc = group_open(b, &b->groups[i])))
            return cr_error_wrap(rc, "group %d", b->groups[i].g);
    }
    resume_point(b, &from, &offset);
    if (!b->in) /* a catalog without a line for the groups built */
        from = offset = 0;
    else if ((rc = offline_input_seek(b->in, from, offset)))
        return rc;
    r.resumed_at = from;
    build_stage_begin(b, "write", b->records - from);
    while (!rc && b->in && (rc = offline_input_next(b->in, &rec)) == CR_OK) {
        build_group *bg = owner(b, &rec);
        if (bg)
            rc = take(b, bg, &rec);
        if (!rc && (rec.index + 1) % b->o->checkpoint == 0)
            rc = checkpoint(b, rec.index + 1, offline_input_offset(b->in));
        r.items++;
        build_stage_advance(b, 1);
    }
    if (rc == CR_NOTFOUND || !b->in)
        rc = checkpoint(b, b->records, b->in ? offline_input_offset(b->in) : 0);
    if (rc)
        return rc;
    for (int i = 0; i < b->n_groups; i++)
        r.failed += b->groups[i].st.errors;
    r.failed -= before;
    build_stage_end(b, &r, t0);
    return CR_OK;
}
