#include "offline/rebalance_plan.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int same_replicas(const coord_map *a, const coord_map *b, int g)
{
    if (a->n_replicas[g] != b->n_replicas[g])
        return 0;
    for (int r = 0; r < a->n_replicas[g]; r++)
        if (strcmp(a->replicas[g][r], b->replicas[g][r]) != 0)
            return 0;
    return 1;
}

cr_err offline_rebal_plan_make(offline_rebal_plan *p, const coord_map *old_map,
                               const coord_map *new_map)
{
    if (old_map->move_groups || new_map->move_groups)
        return cr_error_set(CR_ERR_INVALID, "rebalance: a map with \"moving_from\" is a move's "
                                            "own map; give the maps before and after the move");
    if (new_map->n_groups < old_map->n_groups)
        return cr_error_set(CR_ERR_INVALID, "rebalance: the new map has %d groups, fewer than "
                                            "the %d of the old one (shrinking is not supported)",
                            new_map->n_groups, old_map->n_groups);
    for (int g = 0; g < old_map->n_groups; g++)
        if (!same_replicas(old_map, new_map, g))
            return cr_error_set(CR_ERR_INVALID, "rebalance: group %d lists other replicas in "
                                                "the new map (the old groups must come first, "
                                                "unchanged)", g);
    if (old_map->metric_l2 != new_map->metric_l2)
        return cr_error_set(CR_ERR_INVALID, "rebalance: the maps have different metrics");
    if (old_map->n_groups == new_map->n_groups && old_map->placement == new_map->placement)
        return cr_error_set(CR_ERR_INVALID, "rebalance: the maps place every item alike "
                                            "(same groups, same placement): nothing to move");
    p->old_groups = old_map->n_groups;
    p->new_groups = new_map->n_groups;
    p->old_placement = old_map->placement;
    p->new_placement = new_map->placement;
    return CR_OK;
}

int offline_rebal_target(const offline_rebal_plan *p, const char *ext_id, int g)
{
    int to = coord_placement_group(p->new_placement, ext_id, p->new_groups);
    return to == g ? -1 : to;
}

uint64_t offline_rebal_plan_count(const offline_rebal_plan *p, const char *const *ids, size_t n,
                             int g, uint64_t *moved)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int to = offline_rebal_target(p, ids[i], g);
        if (to >= 0) {
            moved[to]++;
            total++;
        }
    }
    return total;
}

cr_err offline_rebal_map_json(const char *new_json, const offline_rebal_plan *p, int reads_new,
                              char **out)
{
    json_error_t jerr;
    json_t *root = json_loads(new_json, 0, &jerr);
    json_t *mv;
    char *text;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cr_error_set(CR_ERR_INVALID, "new map: not a JSON object");
    }
    mv = json_pack("{sissss}", "groups", p->old_groups, "placement",
                   coord_placement_name(p->old_placement), "reads", reads_new ? "new" : "old");
    if (!mv || json_object_set_new(root, "moving_from", mv) != 0) {
        json_decref(root);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2));
    json_decref(root);
    if (!text)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    *out = text;
    return CR_OK;
}
