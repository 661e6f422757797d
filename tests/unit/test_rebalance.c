/* offline/rebalance_plan and the cluster map's "moving_from": which maps may replace which,
 * what moves (growing 2 -> 3 groups moves about a third, all to the new group, and nothing
 * between old groups; legacy -> fnv1a64-jump on the same groups moves about half), the map a
 * move runs (reads old, then new; writes to both owners), and the state file's round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/test.h"
#include "coordinator/clustermap.h"
#include "offline/rebalance_plan.h"
#include "offline/rebalance_state.h"

static coord_map maps[4]; /* large: static */

static const char *map_text(int groups, const char *placement, char *buf, size_t cap)
{
    static const char *const eps[] = {"[\"tcp://h:1\",\"tcp://h:2\"]", "[\"tcp://h:3\"]",
                                      "[\"tcp://h:4\"]", "[\"tcp://h:5\"]"};
    int n = snprintf(buf, cap, "{\"placement\":\"%s\",\"groups\":[", placement);
    for (int g = 0; g < groups; g++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%s", g ? "," : "", eps[g]);
    snprintf(buf + n, cap - (size_t)n, "]}");
    return buf;
}

static void test_plan_checks(void)
{
    char a[512], b[512];
    offline_rebal_plan p;
    CR_CHECK(coord_map_parse(map_text(2, "fnv1a64-jump", a, sizeof a), &maps[0]) == CR_OK);
    CR_CHECK(coord_map_parse(map_text(3, "fnv1a64-jump", b, sizeof b), &maps[1]) == CR_OK);
    CR_CHECK(offline_rebal_plan_make(&p, &maps[0], &maps[1]) == CR_OK);
    CR_CHECK(p.old_groups == 2 && p.new_groups == 3);
    /* shrinking, no change, other replicas in an old group, another metric */
    CR_CHECK(offline_rebal_plan_make(&p, &maps[1], &maps[0]) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "shrinking") != NULL);
    CR_CHECK(offline_rebal_plan_make(&p, &maps[0], &maps[0]) == CR_ERR_INVALID);
    maps[2] = maps[1];
    snprintf(maps[2].replicas[1][0], COORD_MAX_ENDPOINT, "tcp://other:3");
    CR_CHECK(offline_rebal_plan_make(&p, &maps[0], &maps[2]) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "group 1") != NULL);
    maps[2] = maps[1];
    maps[2].metric_l2 = 1;
    CR_CHECK(offline_rebal_plan_make(&p, &maps[0], &maps[2]) == CR_ERR_INVALID);
    maps[2] = maps[1];
    maps[2].move_groups = 2;
    CR_CHECK(offline_rebal_plan_make(&p, &maps[0], &maps[2]) == CR_ERR_INVALID);
}

static void counts(const offline_rebal_plan *p, int n, uint64_t moved_from[2][4])
{
    char id[32];
    const char *ids[1] = {id};
    for (int i = 0; i < n; i++) {
        int g;
        snprintf(id, sizeof id, "item-%d", i);
        g = coord_placement_group(p->old_placement, id, p->old_groups);
        offline_rebal_plan_count(p, ids, 1, g, moved_from[g]);
        /* an item that moves goes to its new owner; one that stays is owned where it is */
        int to = offline_rebal_target(p, id, g);
        CR_CHECK(to == -1 ? coord_placement_group(p->new_placement, id, p->new_groups) == g
                          : coord_placement_group(p->new_placement, id, p->new_groups) == to);
    }
}

static void test_what_moves(void)
{
    offline_rebal_plan grow = {2, 3, COORD_PLACEMENT_FNV1A64_JUMP, COORD_PLACEMENT_FNV1A64_JUMP};
    offline_rebal_plan place = {2, 2, COORD_PLACEMENT_LEGACY, COORD_PLACEMENT_FNV1A64_JUMP};
    uint64_t m[2][4] = {{0}};
    uint64_t total;
    counts(&grow, 30000, m);
    CR_CHECK(m[0][1] == 0 && m[1][0] == 0 && m[0][0] == 0 && m[1][1] == 0);
    total = m[0][2] + m[1][2];
    CR_CHECK(total > 9300 && total < 10700); /* 1/3 of 30000 */
    memset(m, 0, sizeof m);
    counts(&place, 30000, m);
    total = m[0][1] + m[1][0];
    CR_CHECK(total > 14000 && total < 16000); /* independent hashes: half */
    CR_CHECK(m[0][0] == 0 && m[1][1] == 0);
}

static void test_move_map(void)
{
    char b[512], *text = NULL;
    offline_rebal_plan p = {2, 3, COORD_PLACEMENT_LEGACY, COORD_PLACEMENT_FNV1A64_JUMP};
    coord_map *m = &maps[3];
    int gs[2], two = 0, n = 3000;
    CR_CHECK(offline_rebal_map_json(map_text(3, "fnv1a64-jump", b, sizeof b), &p, 0, &text) ==
             CR_OK);
    CR_CHECK(coord_map_parse(text, m) == CR_OK);
    CR_CHECK(m->move_groups == 2 && m->move_placement == COORD_PLACEMENT_LEGACY &&
             !m->move_reads_new);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "x%d", i);
        int k = coord_map_write_groups(m, id, gs);
        int oldg = coord_placement_group(COORD_PLACEMENT_LEGACY, id, 2);
        int newg = coord_placement_group(COORD_PLACEMENT_FNV1A64_JUMP, id, 3);
        CR_CHECK(gs[0] == newg && (k == 1 ? oldg == newg : gs[1] == oldg));
        CR_CHECK(coord_map_group_of(m, id) == oldg); /* reads: the old owner */
        two += k == 2;
    }
    CR_CHECK(two > n / 2);
    free(text);
    CR_CHECK(offline_rebal_map_json(b, &p, 1, &text) == CR_OK);
    CR_CHECK(coord_map_parse(text, m) == CR_OK && m->move_reads_new);
    CR_CHECK(coord_map_group_of(m, "x1") ==
             coord_placement_group(COORD_PLACEMENT_FNV1A64_JUMP, "x1", 3));
    free(text);
    /* bad moving_from */
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://h:1\"]],\"moving_from\":{\"groups\":2}}", m) ==
             CR_ERR_INVALID);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://h:1\"]],\"moving_from\":{\"groups\":1,"
                             "\"reads\":\"both\"}}", m) == CR_ERR_INVALID);
}

static void test_state(void)
{
    char path[] = "/tmp/test_rebalance_XXXXXX";
    int fd = mkstemp(path);
    offline_rebal_state st = {0}, back;
    CR_CHECK(fd >= 0);
    close(fd);
    unlink(path);
    CR_CHECK(offline_rebal_state_load(path, &back) == CR_NOTFOUND);
    st.phase = OFFLINE_REBAL_SWITCH;
    st.group = 1;
    st.activated = 1;
    st.copied = 12345;
    st.old_json = "{\"a\":1}";
    st.new_json = "{\"b\":2}";
    st.cursor = "item-77";
    CR_CHECK(offline_rebal_state_save(path, &st) == CR_OK);
    CR_CHECK(offline_rebal_state_load(path, &back) == CR_OK);
    CR_CHECK(back.phase == OFFLINE_REBAL_SWITCH && back.group == 1 && back.activated &&
             back.copied == 12345 && strcmp(back.cursor, "item-77") == 0 &&
             strcmp(back.new_json, st.new_json) == 0);
    offline_rebal_state_free(&back);
    FILE *f = fopen(path, "w");
    fputs("{\"phase\":\"nope\"}", f);
    fclose(f);
    CR_CHECK(offline_rebal_state_load(path, &back) == CR_ERR_INVALID);
    unlink(path);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_plan_checks();
    test_what_moves();
    test_move_map();
    test_state();
    return CR_TEST_END();
}
