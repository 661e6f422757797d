#include "coordinator/clustermap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cirrus.pb-c.h"
#include "common/curve.h"

int coord_map_group_of(const coord_map *m, const char *ext_id)
{
    if (m->move_groups && !m->move_reads_new)
        return coord_placement_group(m->move_placement, ext_id, m->move_groups);
    return coord_placement_group(m->placement, ext_id, m->n_groups);
}

int coord_map_write_groups(const coord_map *m, const char *ext_id, int out[2])
{
    out[0] = coord_placement_group(m->placement, ext_id, m->n_groups);
    if (!m->move_groups)
        return 1;
    out[1] = coord_placement_group(m->move_placement, ext_id, m->move_groups);
    return out[1] == out[0] ? 1 : 2;
}

/* "moving_from": {"groups": N, "placement": P, "reads": "old"|"new"} (see clustermap.h). */
static cr_err parse_moving(const json_t *v, coord_map *m)
{
    const json_t *g = json_object_get(v, "groups"), *p = json_object_get(v, "placement");
    const json_t *r = json_object_get(v, "reads");
    const char *reads = r ? json_string_value(r) : "old";
    cr_err rc;
    if (!json_is_object(v) || !json_is_integer(g) || json_integer_value(g) < 1 ||
        json_integer_value(g) > m->n_groups)
        return cr_error_set(CR_ERR_INVALID, "cluster map: moving_from must be an object whose "
                                            "'groups' is 1..%d (this map's groups)", m->n_groups);
    if (json_object_size(v) != (size_t)(1 + (p != NULL) + (r != NULL)))
        return cr_error_set(CR_ERR_INVALID, "cluster map: moving_from holds only groups, "
                                            "placement and reads");
    m->move_placement = COORD_PLACEMENT_LEGACY;
    if (p && (rc = coord_placement_parse(json_string_value(p), &m->move_placement)))
        return cr_error_wrap(rc, "cluster map: moving_from.placement");
    if (!reads || (strcmp(reads, "old") != 0 && strcmp(reads, "new") != 0))
        return cr_error_set(CR_ERR_INVALID, "cluster map: moving_from.reads must be \"old\" or "
                                            "\"new\"");
    m->move_reads_new = strcmp(reads, "new") == 0;
    m->move_groups = (int)json_integer_value(g);
    return CR_OK;
}

static cr_err endpoint_copy(char *dst, const json_t *v, const char *what)
{
    const char *s = json_string_value(v);
    if (!s || !*s)
        return cr_error_set(CR_ERR_INVALID, "cluster map: %s must be a non-empty string", what);
    if (strlen(s) >= COORD_MAX_ENDPOINT)
        return cr_error_set(CR_ERR_INVALID, "cluster map: %s is too long", what);
    if (strncmp(s, "tcp://", 6) != 0 && strncmp(s, "inproc://", 9) != 0 &&
        strncmp(s, "ipc://", 6) != 0)
        return cr_error_set(CR_ERR_INVALID, "cluster map: %s '%s' is not a tcp://, ipc:// or "
                                            "inproc:// endpoint", what, s);
    memcpy(dst, s, strlen(s) + 1);
    return CR_OK;
}

/* A node is its endpoint, or {"endpoint": EP, "curve_pub": Z85}: the CURVE public key the
 * coordinator expects of it (docs/operations.md). */
static cr_err node_copy(char *ep, char *pub, const json_t *v, const char *what)
{
    const json_t *k;
    const char *key, *s;
    json_t *val;
    if (!json_is_object(v))
        return endpoint_copy(ep, v, what);
    json_object_foreach((json_t *)v, key, val)
        if (strcmp(key, "endpoint") != 0 && strcmp(key, "curve_pub") != 0)
            return cr_error_set(CR_ERR_INVALID, "cluster map: %s: unknown field '%s'", what, key);
    cr_err rc = endpoint_copy(ep, json_object_get(v, "endpoint"), what);
    if (rc)
        return rc;
    k = json_object_get(v, "curve_pub");
    s = k ? json_string_value(k) : NULL;
    if (k && !cr_curve_key_valid(s))
        return cr_error_set(CR_ERR_INVALID, "cluster map: %s: curve_pub must be a Z85 public "
                                            "key (40 characters, as in a .pub file)", what);
    if (s)
        memcpy(pub, s, CR_CURVE_KEY_LEN + 1);
    return CR_OK;
}

static cr_err parse_groups(const json_t *groups, coord_map *m)
{
    size_t gi;
    json_t *g;
    char what[64];
    if (!json_is_array(groups) || json_array_size(groups) == 0 ||
        json_array_size(groups) > COORD_MAX_GROUPS)
        return cr_error_set(CR_ERR_INVALID, "cluster map: 'groups' must be a list of 1..%d "
                                            "replica lists", COORD_MAX_GROUPS);
    json_array_foreach(groups, gi, g)
    {
        size_t ri;
        json_t *r;
        if (!json_is_array(g) || json_array_size(g) == 0 ||
            json_array_size(g) > COORD_MAX_REPLICAS)
            return cr_error_set(CR_ERR_INVALID, "cluster map: group %zu must list 1..%d replica "
                                                "endpoints", gi, COORD_MAX_REPLICAS);
        json_array_foreach(g, ri, r)
        {
            snprintf(what, sizeof what, "groups[%zu][%zu]", gi, ri);
            cr_err rc = node_copy(m->replicas[gi][ri], m->replica_pub[gi][ri], r, what);
            if (rc)
                return rc;
        }
        m->n_replicas[gi] = (int)json_array_size(g);
    }
    m->n_groups = (int)json_array_size(groups);
    return CR_OK;
}

static cr_err parse_method(const char *s, int *out)
{
    static const char *const names[] = {"default", "searle", "combiner", "sum", "text", "image"};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return CR_OK;
        }
    return cr_error_set(CR_ERR_INVALID, "cluster map: unknown default_method '%s'", s);
}

cr_err coord_map_parse(const char *text, coord_map *out)
{
    static coord_map zero;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr), *v;
    coord_map *m = NULL;
    cr_err rc = CR_OK;
    const char *key;

    if (!root)
        return cr_error_set(CR_ERR_INVALID, "cluster map: line %d: %s", jerr.line, jerr.text);
    if (!json_is_object(root)) {
        rc = cr_error_set(CR_ERR_INVALID, "cluster map: expected a JSON object");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        static const char *const known[] = {"bind",     "groups",       "encoders",
                                            "metric",   "write_quorum", "hedge_ms",
                                            "default_method", "placement",
                                            "moving_from", "jobs"};
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: unknown field '%s'", key);
            goto out;
        }
    }
    *out = zero;
    m = out;
    m->hedge_ms = 30;
    m->default_method = CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SEARLE;
    v = json_object_get(root, "bind");
    if (v && (rc = endpoint_copy(m->bind, v, "bind")))
        goto out;
    rc = parse_groups(json_object_get(root, "groups"), m);
    if (rc)
        goto out;
    v = json_object_get(root, "encoders");
    if (v) {
        size_t i;
        json_t *e;
        if (!json_is_array(v) || json_array_size(v) > COORD_MAX_ENCODERS) {
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: 'encoders' must be a list of up to "
                                              "%d endpoints", COORD_MAX_ENCODERS);
            goto out;
        }
        json_array_foreach(v, i, e)
        {
            char what[32];
            snprintf(what, sizeof what, "encoders[%zu]", i);
            if ((rc = node_copy(m->encoders[i], m->encoder_pub[i], e, what)))
                goto out;
        }
        m->n_encoders = (int)json_array_size(v);
    }
    v = json_object_get(root, "jobs");
    if (v && (rc = node_copy(m->jobs, m->jobs_pub, v, "jobs")))
        goto out;
    v = json_object_get(root, "metric");
    if (v) {
        const char *s = json_string_value(v);
        if (!s || (strcmp(s, "ip") != 0 && strcmp(s, "l2") != 0)) {
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: metric must be \"ip\" or \"l2\"");
            goto out;
        }
        m->metric_l2 = strcmp(s, "l2") == 0;
    }
    v = json_object_get(root, "write_quorum");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > COORD_MAX_REPLICAS) {
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: write_quorum must be 0..%d",
                              COORD_MAX_REPLICAS);
            goto out;
        }
        m->write_quorum = (int)json_integer_value(v);
    }
    v = json_object_get(root, "hedge_ms");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 60000) {
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: hedge_ms must be 1..60000");
            goto out;
        }
        m->hedge_ms = (int)json_integer_value(v);
    }
    v = json_object_get(root, "default_method");
    if (v && (!json_is_string(v) || (rc = parse_method(json_string_value(v), &m->default_method)))) {
        if (!rc)
            rc = cr_error_set(CR_ERR_INVALID, "cluster map: default_method must be a string");
        goto out;
    }
    v = json_object_get(root, "placement");
    if (v && (rc = coord_placement_parse(json_string_value(v), &m->placement))) {
        rc = cr_error_wrap(rc, "cluster map: placement");
        goto out;
    }
    v = json_object_get(root, "moving_from");
    if (v && (rc = parse_moving(v, m)))
        goto out;
out:
    json_decref(root);
    return rc;
}

cr_err coord_map_load(const char *path, coord_map *out)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    char *text;
    cr_err rc;
    if (!root)
        return cr_error_set(CR_ERR_INVALID, "cluster map %s: line %d: %s", path, jerr.line,
                            jerr.text);
    text = json_dumps(root, 0);
    json_decref(root);
    if (!text)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = coord_map_parse(text, out);
    free(text);
    return rc ? cr_error_wrap(rc, "%s", path) : CR_OK;
}
