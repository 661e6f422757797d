/* coordinator/placement: standard FNV-1a 64 against the published test vectors (Fowler, Noll,
 * Vo: "" "a" "foobar"), the jump hash against the values other implementations publish
 * (ClickHouse's jumpConsistentHash tests), the legacy hash kept readable, names, and the
 * cluster map's "placement" key (absent = legacy). */
#include <string.h>

#include "common/test.h"
#include "coordinator/clustermap.h"
#include "coordinator/placement.h"

static void test_fnv1a64(void)
{
    CR_CHECK(coord_fnv1a64("", 0) == 0xcbf29ce484222325ull);
    CR_CHECK(coord_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
    CR_CHECK(coord_fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
    /* The legacy function starts one digit short of the offset basis: not FNV-1a. */
    CR_CHECK(coord_legacy_fnv64("", 0) == 1469598103934665603ull);
    CR_CHECK(coord_legacy_fnv64("a", 1) != coord_fnv1a64("a", 1));
}

static void test_jump(void)
{
    CR_CHECK(coord_jump_hash(1, 1) == 0);
    CR_CHECK(coord_jump_hash(42, 57) == 43);
    CR_CHECK(coord_jump_hash(256, 1024) == 520);
    CR_CHECK(coord_jump_hash(3735883980ull, 1) == 0);
    CR_CHECK(coord_jump_hash(3735883980ull, 666) == 361);
    CR_CHECK(coord_jump_hash(16045690984833335023ull, 255) == 237);
}

static void test_groups(void)
{
    /* Pinned values (docs/operations.md shows them for other implementations to check). */
    static const struct { const char *id; int fnv[3], legacy[3]; } cases[] = {
        {"sku-0", {1, 1, 3}, {0, 0, 3}},
        {"sku-1", {1, 1, 3}, {0, 0, 0}},
        {"sku-42", {1, 1, 1}, {0, 0, 3}},
        {"v17", {0, 0, 3}, {1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int g = 2; g <= 4; g++) {
            const char *id = cases[i].id;
            CR_CHECK_MSG(coord_placement_group(COORD_PLACEMENT_FNV1A64_JUMP, id, g) ==
                             cases[i].fnv[g - 2], "%s in %d groups", id, g);
            CR_CHECK_MSG(coord_placement_group(COORD_PLACEMENT_LEGACY, id, g) ==
                             cases[i].legacy[g - 2], "%s in %d groups (legacy)", id, g);
        }
}

static void test_names(void)
{
    coord_placement p = COORD_PLACEMENT_LEGACY;
    CR_CHECK(coord_placement_parse("fnv1a64-jump", &p) == CR_OK && p == COORD_PLACEMENT_FNV1A64_JUMP);
    CR_CHECK(coord_placement_parse("legacy-fnv-jump", &p) == CR_OK && p == COORD_PLACEMENT_LEGACY);
    CR_CHECK(coord_placement_parse("fnv1a64", &p) == CR_ERR_INVALID);
    CR_CHECK(coord_placement_parse(NULL, &p) == CR_ERR_INVALID);
    CR_CHECK(strcmp(coord_placement_name(COORD_PLACEMENT_FNV1A64_JUMP), "fnv1a64-jump") == 0);
    CR_CHECK(strcmp(coord_placement_name(COORD_PLACEMENT_LEGACY), "legacy-fnv-jump") == 0);
}

static void test_map_key(void)
{
    static coord_map m;
    const char *none = "{\"groups\":[[\"tcp://a:1\"],[\"tcp://b:1\"],[\"tcp://c:1\"]]}";
    const char *std = "{\"groups\":[[\"tcp://a:1\"],[\"tcp://b:1\"],[\"tcp://c:1\"]],"
                      "\"placement\":\"fnv1a64-jump\"}";
    CR_CHECK(coord_map_parse(none, &m) == CR_OK && m.placement == COORD_PLACEMENT_LEGACY);
    /* "v17" is in group 1 of 3 by the legacy hash, group 0 by FNV-1a: routing follows the map. */
    CR_CHECK(coord_map_group_of(&m, "v17") == 1);
    CR_CHECK(coord_map_parse(std, &m) == CR_OK && m.placement == COORD_PLACEMENT_FNV1A64_JUMP);
    CR_CHECK(coord_map_group_of(&m, "v17") == 0);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://a:1\"]],\"placement\":\"md5\"}", &m) ==
             CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "placement") != NULL);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://a:1\"]],\"placement\":1}", &m) ==
             CR_ERR_INVALID);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_fnv1a64();
    test_jump();
    test_groups();
    test_names();
    test_map_key();
    return CR_TEST_END();
}
