#include "offline/rebalance_state.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonfile.h"
#include "offline/build_state.h"

static const char *const phase_names[] = {"copy", "switch", "final", "done"};

const char *offline_rebal_phase_name(offline_rebal_phase p)
{
    return p >= OFFLINE_REBAL_COPY && p <= OFFLINE_REBAL_DONE ? phase_names[p] : "?";
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void offline_rebal_state_free(offline_rebal_state *st)
{
    free(st->cursor);
    free(st->old_json);
    free(st->new_json);
    memset(st, 0, sizeof *st);
}

cr_err offline_rebal_state_cursor(offline_rebal_state *st, const char *cursor)
{
    char *c = dup_str(cursor ? cursor : "");
    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    free(st->cursor);
    st->cursor = c;
    return CR_OK;
}

static uint64_t get_u64(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

cr_err offline_rebal_state_load(const char *path, offline_rebal_state *st)
{
    json_t *j = NULL, *secs;
    const char *phase, *cursor, *oldj, *newj;
    cr_err rc;
    memset(st, 0, sizeof *st);
    if (access(path, F_OK) != 0)
        return CR_NOTFOUND;
    if ((rc = cr_json_load_file(path, &j)))
        return rc;
    phase = json_string_value(json_object_get(j, "phase"));
    cursor = json_string_value(json_object_get(j, "cursor"));
    oldj = json_string_value(json_object_get(j, "old_map"));
    newj = json_string_value(json_object_get(j, "new_map"));
    rc = cr_error_set(CR_ERR_INVALID, "%s: not a rebalance state (phase, cursor, old_map, "
                                      "new_map)", path);
    for (int p = 0; phase && p <= OFFLINE_REBAL_DONE; p++)
        if (strcmp(phase, phase_names[p]) == 0) {
            st->phase = (offline_rebal_phase)p;
            rc = CR_OK;
        }
    if (!rc && (!cursor || !oldj || !newj))
        rc = cr_error_set(CR_ERR_INVALID, "%s: not a rebalance state", path);
    if (!rc && (!(st->cursor = dup_str(cursor)) || !(st->old_json = dup_str(oldj)) ||
                !(st->new_json = dup_str(newj))))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc) {
        st->group = (int)get_u64(j, "group");
        st->activated = json_is_true(json_object_get(j, "activated"));
        st->scanned = get_u64(j, "scanned");
        st->copied = get_u64(j, "copied");
        st->deleted = get_u64(j, "deleted");
        secs = json_object_get(j, "seconds");
        for (int p = 0; p < 3; p++)
            st->seconds[p] = json_number_value(json_array_get(secs, (size_t)p));
    }
    json_decref(j);
    if (rc)
        offline_rebal_state_free(st);
    return rc;
}

cr_err offline_rebal_state_save(const char *path, const offline_rebal_state *st)
{
    json_t *j = json_pack("{sssisssbsIsIsIsssss[fff]}", "phase",
                          offline_rebal_phase_name(st->phase), "group", st->group, "cursor",
                          st->cursor ? st->cursor : "", "activated", st->activated, "scanned",
                          (json_int_t)st->scanned, "copied", (json_int_t)st->copied, "deleted",
                          (json_int_t)st->deleted, "old_map", st->old_json, "new_map",
                          st->new_json, "seconds", st->seconds[0], st->seconds[1],
                          st->seconds[2]);
    cr_err rc;
    if (!j)
        return cr_error_set(CR_ERR_NOMEM, "rebalance state: cannot encode");
    rc = offline_json_save(path, j);
    json_decref(j);
    return rc;
}
