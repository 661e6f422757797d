/* build.c — offline_build_run: the plan, train, index and map stages, and what they share
 * (build_write.c writes the records, build_encode.c encodes a catalog). */
#include "offline/build_impl.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "offline/train.h"

#define BUILD_MAX_GROUPS 256

offline_build_opts offline_build_default_opts(void)
{
    offline_build_opts o = {0};
    o.group = -1;
    o.id_prefix = "";
    o.checkpoint = 50000;
    return o;
}

void offline_build_errors_path(const char *out, int group, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/.build/group-%d.errors", out, group);
}

/* ---- shared by the stages ------------------------------------------------------------------ */

void build_stage_begin(build_run *b, const char *stage, uint64_t total)
{
    if (b->ev && b->ev->begin)
        b->ev->begin(b->ev->ctx, stage, total);
}

void build_stage_advance(build_run *b, uint64_t n)
{
    if (b->ev && b->ev->advance && n)
        b->ev->advance(b->ev->ctx, n);
}

void build_stage_end(build_run *b, offline_stage_report *r, uint64_t t0_us)
{
    r->seconds = (double)(cr_clock_mono_us() - t0_us) / 1e6;
    if (b->ev && b->ev->end)
        b->ev->end(b->ev->ctx, r);
}

cr_err build_record_bad(build_run *b, build_group *bg, uint64_t line, const char *id,
                        const char *why)
{
    if (b->ev && b->ev->bad)
        b->ev->bad(b->ev->ctx, line, id, why);
    bg->st.errors++;
    if (fprintf(bg->errf, "line %llu (%s): %s\n", (unsigned long long)line, id ? id : "?",
                why) < 0)
        return cr_error_set(CR_ERR_IO, "%s: %s", bg->err_path, strerror(errno));
    return CR_OK;
}

void build_fault_point(build_run *b)
{
    if (b->kill_after_puts > 0 && --b->kill_after_puts == 0)
        raise(SIGKILL); /* tests: a crash at a chosen commit, as kill -9 would */
}

static void faults_load(build_run *b)
{
    const char *f = getenv("CIRRUS_BUILD_FAULTS"), *p;
    if (f && (p = strstr(f, "kill-after-puts=")))
        b->kill_after_puts = strtol(p + strlen("kill-after-puts="), NULL, 10);
}

/* ---- plan ---------------------------------------------------------------------------------- */

static cr_err check_opts(const offline_build_opts *o)
{
    if (!o->out || !o->factory)
        return cr_error_set(CR_ERR_INVALID, "--out and --index are required");
    if (strlen(o->out) + 16 >= OFFLINE_DIR_MAX)
        return cr_error_set(CR_ERR_INVALID, "--out: path too long");
    if (o->groups < 1 || o->groups > BUILD_MAX_GROUPS)
        return cr_error_set(CR_ERR_INVALID, "--groups must be 1..%d", BUILD_MAX_GROUPS);
    if (o->group < -1 || o->group >= o->groups)
        return cr_error_set(CR_ERR_INVALID, "--group must be 0..%d", o->groups - 1);
    if (!o->vectors == !o->catalog)
        return cr_error_set(CR_ERR_INVALID, "give either --vectors or --catalog");
    if (o->catalog && (!o->model || !o->images))
        return cr_error_set(CR_ERR_INVALID, "--catalog needs --images and --model");
    if (o->train_size < 0 || o->checkpoint < 1)
        return cr_error_set(CR_ERR_INVALID, "--train-size and --checkpoint must be positive");
    return CR_OK;
}

static cr_err mkdir_p(const char *dir)
{
    char tmp[OFFLINE_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return cr_error_set(CR_ERR_INVALID, "%s: path too long", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return cr_error_set(CR_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return cr_error_set(CR_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
    return CR_OK;
}

/* What a resumed run must agree on: everything that decides the content. */
static json_t *manifest_new(const build_run *b)
{
    const offline_build_opts *o = b->o;
    json_t *m = json_pack("{sisssssiss}", "format", 1, "index", o->factory, "metric",
                          o->metric_l2 ? "l2" : "ip", "groups", o->groups, "placement",
                          coord_placement_name(b->placement));
    if (!m)
        return NULL;
    if (o->vectors) {
        json_object_set_new(m, "vectors", json_string(o->vectors));
        json_object_set_new(m, "attrs", o->attrs ? json_string(o->attrs) : json_null());
        json_object_set_new(m, "id_prefix", json_string(o->id_prefix ? o->id_prefix : ""));
    } else {
        json_object_set_new(m, "catalog", json_string(o->catalog));
        json_object_set_new(m, "model", json_string(o->model));
        json_object_set_new(m, "phi", o->phi ? json_string(o->phi) : json_null());
        json_object_set_new(m, "preprocess",
                            o->preprocess ? json_string(o->preprocess) : json_null());
    }
    json_object_set_new(m, "train_size", json_integer((json_int_t)o->train_size));
    return m;
}

static cr_err groups_open_state(build_run *b)
{
    int first = b->o->group >= 0 ? b->o->group : 0;
    b->n_groups = b->o->group >= 0 ? 1 : b->o->groups;
    b->groups = calloc((size_t)b->n_groups, sizeof *b->groups);
    if (!b->groups)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int i = 0; i < b->n_groups; i++) {
        build_group *bg = &b->groups[i];
        cr_err rc;
        bg->g = first + i;
        snprintf(bg->state_path, sizeof bg->state_path, "%s/group-%d.json", b->build_dir, bg->g);
        offline_build_errors_path(b->o->out, bg->g, bg->err_path, sizeof bg->err_path);
        rc = offline_state_load(bg->state_path, &bg->st);
        if (rc < 0)
            return rc;
    }
    return CR_OK;
}

static cr_err plan_stage(build_run *b)
{
    const offline_build_opts *o = b->o;
    offline_stage_report r = {.stage = "plan"};
    uint64_t t0 = cr_clock_mono_us();
    json_t *m = NULL;
    cr_err rc;

    build_stage_begin(b, "plan", 0);
    rc = check_opts(o);
    if (!rc)
        rc = coord_placement_parse(o->placement ? o->placement : COORD_PLACEMENT_STANDARD_NAME,
                                   &b->placement);
    if (rc)
        return rc;
    snprintf(b->build_dir, sizeof b->build_dir, "%s/.build", o->out);
    rc = mkdir_p(b->build_dir);
    if (!rc && !(m = manifest_new(b)))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc) {
        char path[OFFLINE_PATH_MAX];
        snprintf(path, sizeof path, "%s/build.json", b->build_dir);
        rc = offline_manifest_check(path, m);
        if (rc)
            rc = cr_error_wrap(rc, "%s", o->out);
    }
    json_decref(m);
    if (!rc)
        rc = groups_open_state(b);
    if (rc)
        return rc;
    r.items = (uint64_t)b->n_groups;
    for (int i = 0; i < b->n_groups; i++)
        r.resumed_at += b->groups[i].st.next > 0 || b->groups[i].st.done;
    build_stage_end(b, &r, t0);
    return CR_OK;
}

static int all_done(const build_run *b)
{
    for (int i = 0; i < b->n_groups; i++)
        if (!b->groups[i].st.done)
            return 0;
    return 1;
}

/* ---- train --------------------------------------------------------------------------------- */

/* An evenly drawn sample of the input's rows; rows a shard would refuse are left out. */
static cr_err sample_rows(build_run *b, uint64_t want, float *x, uint64_t *got)
{
    uint64_t records = b->records;
    size_t dim = (size_t)b->dim;
    *got = 0;
    for (uint64_t i = 0; i < want; i++) {
        float *v = x + *got * dim;
        double s = 0;
        int finite = 1;
        offline_input_row(b->in, offline_train_pick(i, records, want), v);
        for (size_t d = 0; d < dim; d++) {
            finite &= v[d] == v[d] && v[d] - v[d] == 0;
            s += (double)v[d] * v[d];
        }
        if (finite && (b->o->metric_l2 || s > 0))
            (*got)++;
        build_stage_advance(b, 1);
    }
    return CR_OK;
}

static cr_err train_stage(build_run *b)
{
    const offline_build_opts *o = b->o;
    offline_stage_report r = {.stage = "train"};
    uint64_t t0 = cr_clock_mono_us(), want = 0, got = 0;
    float *x = NULL;
    bool needs = false;
    cr_err rc;

    b->template_path[0] = 0;
    rc = offline_train_plan(b->dim, o->metric_l2, o->factory, o->train_size, b->records,
                            &needs, &want);
    if (rc || !needs)
        return rc;
    if (o->template_path) {
        snprintf(b->template_path, sizeof b->template_path, "%s", o->template_path);
        r.skipped = 1;
        build_stage_end(b, &r, t0);
        return CR_OK;
    }
    snprintf(b->template_path, sizeof b->template_path, "%s/template.faiss", b->build_dir);
    if (access(b->template_path, F_OK) == 0 || all_done(b)) {
        r.skipped = 1; /* trained by an earlier run: the same sample gives the same template */
        build_stage_end(b, &r, t0);
        return CR_OK;
    }
    build_stage_begin(b, "train", want);
    if (!(x = malloc((size_t)(want ? want : 1) * (size_t)b->dim * sizeof *x)))
        return cr_error_set(CR_ERR_NOMEM, "training sample of %llu vectors",
                            (unsigned long long)want);
    rc = o->catalog ? build_encode_sample(b, want, x, &got) : sample_rows(b, want, x, &got);
    if (!rc && got == 0)
        rc = cr_error_set(CR_ERR_INVALID, "no valid vector to train the index on");
    if (!rc)
        rc = offline_train_write(b->dim, o->metric_l2, o->factory, got, x, o->threads,
                                 b->template_path);
    free(x);
    if (rc)
        return rc;
    r.items = got;
    build_stage_end(b, &r, t0);
    return CR_OK;
}

/* ---- index and map ------------------------------------------------------------------------- */

static cr_err index_stage(build_run *b)
{
    offline_stage_report r = {.stage = "index"};
    uint64_t t0 = cr_clock_mono_us();
    build_stage_begin(b, "index", (uint64_t)b->n_groups);
    for (int i = 0; i < b->n_groups; i++) {
        build_group *bg = &b->groups[i];
        cr_err rc = CR_OK;
        if (!bg->st.done) {
            rc = offline_shard_finish(bg->sh);
            if (!rc)
                rc = offline_shard_count(bg->sh, &bg->st.items);
            bg->st.done = 1;
            if (!rc)
                rc = offline_state_save(bg->state_path, &bg->st);
            if (rc)
                return cr_error_wrap(rc, "group %d", bg->g);
            r.items++;
        }
        offline_shard_close(&bg->sh);
        build_stage_advance(b, 1);
    }
    r.skipped = r.items == 0;
    build_stage_end(b, &r, t0);
    return CR_OK;
}

/* OUT/cluster.json: a map for the built groups, endpoints to fill in. */
static cr_err map_stage(build_run *b)
{
    const offline_build_opts *o = b->o;
    offline_stage_report r = {.stage = "map", .items = (uint64_t)o->groups};
    uint64_t t0 = cr_clock_mono_us();
    char path[OFFLINE_PATH_MAX];
    json_t *m = json_object(), *groups = json_array();
    cr_err rc;
    if (!m || !groups) {
        json_decref(m);
        json_decref(groups);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (int g = 0; g < o->groups; g++) {
        char ep[128];
        snprintf(ep, sizeof ep, "tcp://cirrus-group-%d-replica-0:7701", g);
        json_array_append_new(groups, json_pack("[s]", ep));
    }
    json_object_set_new(m, "groups", groups);
    json_object_set_new(m, "metric", json_string(o->metric_l2 ? "l2" : "ip"));
    json_object_set_new(m, "placement", json_string(coord_placement_name(b->placement)));
    snprintf(path, sizeof path, "%s/cluster.json", o->out);
    rc = offline_json_save(path, m);
    json_decref(m);
    if (!rc)
        build_stage_end(b, &r, t0);
    return rc;
}

/* ---- the run ------------------------------------------------------------------------------- */

static cr_err open_input(build_run *b)
{
    if (b->o->catalog)
        return build_encode_open(b);
    cr_err rc = offline_input_open(&b->in, b->o->vectors, b->o->attrs, b->o->id_prefix, 0);
    if (!rc) {
        b->dim = offline_input_dim(b->in);
        b->records = offline_input_records(b->in);
    }
    return rc;
}

static void run_free(build_run *b)
{
    for (int i = 0; b->groups && i < b->n_groups; i++) {
        build_group *bg = &b->groups[i];
        offline_shard_close(&bg->sh);
        if (bg->errf)
            fclose(bg->errf);
        free(bg->items);
        free(bg->res);
        free(bg->vecs);
        free(bg->ids);
        free(bg->lines);
    }
    free(b->groups);
    offline_input_close(&b->in);
    build_encode_close(b);
}

static void summarize(build_run *b)
{
    b->sum->groups_built = b->n_groups;
    for (int i = 0; i < b->n_groups; i++) {
        b->sum->items += b->groups[i].st.items;
        b->sum->failed += b->groups[i].st.errors;
    }
}

cr_err offline_build_run(const offline_build_opts *o, const offline_build_events *ev,
                         offline_build_summary *sum)
{
    build_run b = {.o = o, .ev = ev, .sum = sum};
    cr_err rc;
    memset(sum, 0, sizeof *sum);
    faults_load(&b);
    rc = plan_stage(&b);
    if (!rc)
        rc = open_input(&b);
    if (!rc) {
        sum->records = b.records;
        rc = train_stage(&b);
    }
    if (!rc && o->catalog && !all_done(&b))
        rc = build_encode_stage(&b);
    if (!rc && !all_done(&b))
        rc = build_write_stage(&b);
    if (!rc)
        rc = index_stage(&b);
    if (!rc)
        rc = map_stage(&b);
    if (!rc) {
        summarize(&b);
        build_encode_cleanup(&b);
    }
    run_free(&b);
    return rc;
}
