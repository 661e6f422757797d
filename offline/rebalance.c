/* The steps of a move (rebalance.h): load or start the state, then for each remaining step
 * write and activate its map, and run its pass over the old groups. */
#include "offline/rebalance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/log.h"
#include "offline/build_state.h"
#include "offline/rebalance_impl.h"

offline_rebal_opts offline_rebal_default_opts(void)
{
    offline_rebal_opts o = {0};
    o.batch = 2048;
    o.timeout_ms = 30000;
    o.drain_ms = 60000;
    return o;
}

static cr_err read_text(const char *path, char **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char *s;
    cr_err rc = cr_file_read(path, &data, &len);
    if (rc)
        return rc;
    if (!(s = malloc(len + 1))) {
        free(data);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    memcpy(s, data, len);
    s[len] = 0;
    free(data);
    *out = s;
    return CR_OK;
}

/* Writes text to path atomically (tmp file, fsync, rename). */
static cr_err write_text(const char *path, const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    cr_err rc;
    if (!j)
        return cr_error_set(CR_ERR_INVALID, "map text: %s", jerr.text);
    rc = offline_json_save(path, j);
    json_decref(j);
    return rc;
}

/* The state: the one a crashed run left (for the same new map), or a new one. */
static cr_err state_open(rebal_run *R)
{
    char *new_text = NULL;
    cr_err rc = read_text(R->o->new_map_path, &new_text);
    if (rc)
        return rc;
    rc = offline_rebal_state_load(R->state_path, &R->st);
    if (rc == CR_OK) {
        R->sum->resumed = 1;
        if (strcmp(R->st.new_json, new_text) != 0)
            rc = cr_error_set(CR_ERR_INVALID, "%s belongs to a move to another map than %s "
                                              "(finish that one, or remove the file)",
                              R->state_path, R->o->new_map_path);
        free(new_text);
        return rc;
    }
    if (rc != CR_NOTFOUND) {
        free(new_text);
        return rc;
    }
    R->st.new_json = new_text;
    rc = read_text(R->o->map_path, &R->st.old_json);
    if (!rc)
        rc = offline_rebal_state_cursor(&R->st, "");
    return rc;
}

static cr_err maps_parse(rebal_run *R)
{
    cr_err rc;
    if (!(R->old_map = malloc(sizeof *R->old_map)) || !(R->new_map = malloc(sizeof *R->new_map)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if ((rc = coord_map_parse(R->st.old_json, R->old_map)))
        return cr_error_wrap(rc, "old map");
    if ((rc = coord_map_parse(R->st.new_json, R->new_map)))
        return cr_error_wrap(rc, "new map");
    if ((rc = offline_rebal_plan_make(&R->plan, R->old_map, R->new_map)))
        return rc;
    R->sum->old_groups = R->plan.old_groups;
    R->sum->new_groups = R->plan.new_groups;
    snprintf(R->sum->old_placement, sizeof R->sum->old_placement, "%s",
             coord_placement_name(R->plan.old_placement));
    snprintf(R->sum->new_placement, sizeof R->sum->new_placement, "%s",
             coord_placement_name(R->plan.new_placement));
    return CR_OK;
}

/* Items in the old groups now: the total of a stage's progress bar (0 when unknown). */
static uint64_t old_items(rebal_run *R)
{
    uint64_t total = 0, n;
    for (int g = 0; g < R->plan.old_groups; g++)
        if (offline_rebal_count(R->net, R->old_map, g, &n) == CR_OK)
            total += n;
    return total;
}

static void stage_begin(rebal_run *R, const char *stage)
{
    memset(&R->rep, 0, sizeof R->rep);
    R->rep.stage = stage;
    if (R->ev && R->ev->begin)
        R->ev->begin(R->ev->ctx, stage, old_items(R));
}

static void stage_end(rebal_run *R, uint64_t t0_us)
{
    R->rep.seconds = (double)(cr_clock_mono_us() - t0_us) / 1e6;
    if (R->ev && R->ev->end)
        R->ev->end(R->ev->ctx, &R->rep);
}

/* The map coordinators run during a phase. */
static cr_err phase_map(rebal_run *R, char **out)
{
    size_t n;
    if (R->st.phase != OFFLINE_REBAL_FINAL)
        return offline_rebal_map_json(R->st.new_json, &R->plan,
                                      R->st.phase == OFFLINE_REBAL_SWITCH, out);
    n = strlen(R->st.new_json) + 1;
    if (!(*out = malloc(n)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    memcpy(*out, R->st.new_json, n);
    return CR_OK;
}

/* Writes the phase's map to --map and has every coordinator run it. Done again on a resume
 * (a coordinator may have restarted since): both are idempotent. */
static cr_err activate(rebal_run *R)
{
    char *text = NULL;
    cr_err rc = phase_map(R, &text);
    if (!rc)
        rc = write_text(R->o->map_path, text);
    if (!rc)
        rc = offline_rebal_reload(R->net, R->o->coordinators, R->o->n_coordinators, text,
                                  R->o->drain_ms);
    free(text);
    if (!rc && !R->st.activated) {
        R->st.activated = 1;
        rc = offline_rebal_state_save(R->state_path, &R->st);
    }
    CR_INFO("rebalance", "%s: map active on %zu coordinator(s)",
            offline_rebal_phase_name(R->st.phase), R->o->n_coordinators);
    return rc;
}

/* One step: its map, its pass, then the state moves to the next step. */
static cr_err phase_run(rebal_run *R)
{
    uint64_t t0 = cr_clock_mono_us();
    int p = R->st.phase;
    cr_err rc = activate(R);
    if (rc)
        return rc;
    stage_begin(R, offline_rebal_phase_name(R->st.phase));
    rc = rebal_pass(R);
    R->st.seconds[p] += (double)(cr_clock_mono_us() - t0) / 1e6;
    if (!rc) {
        R->st.phase = (offline_rebal_phase)(p + 1);
        R->st.group = 0;
        R->st.activated = 0;
        rc = offline_rebal_state_cursor(&R->st, "");
    }
    if (!rc)
        rc = offline_rebal_state_save(R->state_path, &R->st);
    else
        (void)offline_rebal_state_save(R->state_path, &R->st); /* the time spent */
    stage_end(R, t0);
    return rc;
}

static void summarize(rebal_run *R)
{
    R->sum->scanned = R->st.scanned;
    R->sum->copied = R->st.copied;
    R->sum->deleted = R->st.deleted;
    for (int p = 0; p < 3; p++)
        R->sum->seconds[p] = R->st.seconds[p];
}

static cr_err check_opts(const offline_rebal_opts *o)
{
    if (!o->map_path || !o->new_map_path)
        return cr_error_set(CR_ERR_INVALID, "rebalance: --map and --new-map are required");
    if (!o->dry_run && !o->n_coordinators)
        return cr_error_set(CR_ERR_INVALID, "rebalance: no coordinator to reload (--coordinator "
                                            "EP, or a \"bind\" in the map)");
    if (!o->batch || o->batch > 8192)
        return cr_error_set(CR_ERR_INVALID, "rebalance: --batch must be 1..8192");
    return CR_OK;
}

cr_err offline_rebalance(const offline_rebal_opts *o, const offline_rebal_events *ev,
                         offline_rebal_summary *sum)
{
    rebal_run R = {0};
    cr_err rc = check_opts(o);
    memset(sum, 0, sizeof *sum);
    R.o = o;
    R.ev = ev;
    R.sum = sum;
    if (!rc)
        snprintf(R.state_path, sizeof R.state_path, "%s",
                 o->state_path ? o->state_path : o->new_map_path);
    if (!rc && !o->state_path)
        strncat(R.state_path, ".rebalance", sizeof R.state_path - strlen(R.state_path) - 1);
    if (!rc)
        rc = state_open(&R);
    if (!rc)
        rc = maps_parse(&R);
    if (!rc)
        rc = offline_rebal_net_open(&R.net, o->timeout_ms);
    if (!rc && o->dry_run) {
        uint64_t t0 = cr_clock_mono_us();
        stage_begin(&R, "count");
        rc = rebal_count(&R);
        stage_end(&R, t0);
        goto out;
    }
    if (!rc && R.st.phase == OFFLINE_REBAL_DONE)
        sum->finished_before = 1;
    if (!rc && !sum->resumed)
        rc = offline_rebal_state_save(R.state_path, &R.st); /* before anything changes */
    while (!rc && R.st.phase != OFFLINE_REBAL_DONE)
        rc = phase_run(&R);
out:
    summarize(&R);
    offline_rebal_net_close(&R.net);
    offline_rebal_state_free(&R.st);
    free(R.old_map);
    free(R.new_map);
    return rc;
}
