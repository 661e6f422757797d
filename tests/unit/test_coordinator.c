/* coordinator/: cluster map validation, placement stability, and merging (metric order,
 * group_by, offset, duplicates). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/test.h"
#include "coordinator/clustermap.h"
#include "coordinator/merge.h"

static void test_map(void)
{
    coord_map *m = malloc(sizeof *m);
    const char *good = "{\"bind\":\"tcp://127.0.0.1:7700\",\"groups\":[[\"tcp://a:1\",\"tcp://b:1\"],"
                       "[\"tcp://c:1\"]],\"encoders\":[\"tcp://e:1\"],\"metric\":\"l2\","
                       "\"write_quorum\":1,\"hedge_ms\":20,\"default_method\":\"combiner\"}";
    CR_CHECK(coord_map_parse(good, m) == CR_OK);
    CR_CHECK(m->n_groups == 2 && m->n_replicas[0] == 2 && m->n_replicas[1] == 1);
    CR_CHECK(m->n_encoders == 1 && m->metric_l2 == 1 && m->write_quorum == 1);
    CR_CHECK(m->hedge_ms == 20 && m->default_method == 2);
    CR_CHECK(strcmp(m->replicas[0][1], "tcp://b:1") == 0);
    static const char *const bad[] = {
        "not json", "[]", "{\"groups\":[]}", "{\"groups\":[[]]}", "{\"groups\":[[\"http://x\"]]}",
        "{\"groups\":[[\"tcp://a:1\"]],\"metric\":\"cos\"}",
        "{\"groups\":[[\"tcp://a:1\"]],\"hedge_ms\":0}",
        "{\"groups\":[[\"tcp://a:1\"]],\"typo\":1}",
        "{\"groups\":[[\"tcp://a:1\"]],\"default_method\":\"magic\"}",
        "{\"groups\":[[1]]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CR_CHECK_MSG(coord_map_parse(bad[i], m) == CR_ERR_INVALID, "%s", bad[i]);
        CR_CHECK(strstr(cr_error_message(), "cluster map") != NULL);
    }
    free(m);
}

static void test_placement(void)
{
    /* Growing from 4 to 5 groups moves about 1/5 of the ids, all to the new group; the same
     * id always lands in the same group. */
    int moved = 0, to_new = 0, counts[4] = {0};
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "sku-%d", i);
        uint64_t h = coord_fnv1a64(id, strlen(id));
        int a = coord_jump_hash(h, 4), b = coord_jump_hash(h, 5);
        CR_CHECK(a >= 0 && a < 4);
        counts[a]++;
        if (a != b) {
            moved++;
            to_new += b == 4;
        }
        CR_CHECK(coord_jump_hash(h, 4) == a);
    }
    CR_CHECK_MSG(moved > 1500 && moved < 2500, "moved %d", moved);
    CR_CHECK(moved == to_new);
    for (int g = 0; g < 4; g++)
        CR_CHECK_MSG(counts[g] > 2200 && counts[g] < 2800, "group %d holds %d", g, counts[g]);
}

static Cirrus__V1__Hit *hit(const char *id, float score, const char *product)
{
    Cirrus__V1__Hit *h = calloc(1, sizeof *h);
    cirrus__v1__hit__init(h);
    h->id = strdup(id);
    h->score = score;
    if (product) {
        Cirrus__V1__Attribute *a = calloc(1, sizeof *a);
        Cirrus__V1__AttrValue *v = calloc(1, sizeof *v);
        cirrus__v1__attribute__init(a);
        cirrus__v1__attr_value__init(v);
        a->name = strdup("product");
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v->s = strdup(product);
        a->value = v;
        h->attributes = calloc(1, sizeof *h->attributes);
        h->attributes[0] = a;
        h->n_attributes = 1;
    }
    return h;
}

static void test_merge(void)
{
    Cirrus__V1__SearchResult r1 = CIRRUS__V1__SEARCH_RESULT__INIT,
                             r2 = CIRRUS__V1__SEARCH_RESULT__INIT, out;
    Cirrus__V1__Hit *a[3] = {hit("a", 0.9f, "p1"), hit("b", 0.7f, "p1"), hit("c", 0.5f, "p2")};
    Cirrus__V1__Hit *b[3] = {hit("d", 0.8f, "p3"), hit("e", 0.6f, "p1"), hit("a", 0.9f, "p1")};
    const Cirrus__V1__SearchResult *parts[2] = {&r1, &r2};
    coord_merge_params p = {0, 4, 0, NULL, 0};
    r1.hits = a;
    r1.n_hits = 3;
    r2.hits = b;
    r2.n_hits = 3;

    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 4);
    CR_CHECK(strcmp(out.hits[0]->id, "a") == 0 && strcmp(out.hits[1]->id, "d") == 0);
    CR_CHECK(strcmp(out.hits[2]->id, "b") == 0 && strcmp(out.hits[3]->id, "e") == 0);
    free(out.hits);

    p.offset = 2; /* page 2 */
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 3 && strcmp(out.hits[0]->id, "b") == 0);
    free(out.hits);

    p.offset = 0; /* one hit per product */
    p.group_by = "product";
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 3);
    CR_CHECK(strcmp(out.hits[0]->id, "a") == 0 && strcmp(out.hits[1]->id, "d") == 0 &&
             strcmp(out.hits[2]->id, "c") == 0);
    free(out.hits);

    p.group_size = 2;
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 4 && strcmp(out.hits[2]->id, "b") == 0);
    free(out.hits);

    p.group_by = NULL; /* L2: smaller first */
    p.metric_l2 = 1;
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(strcmp(out.hits[0]->id, "c") == 0);
    free(out.hits);

    CR_CHECK(coord_merge_fetch_k(10, 0, NULL, 0) == 10);
    CR_CHECK(coord_merge_fetch_k(10, 5, "product", 1) == 60);
    CR_CHECK(coord_merge_fetch_k(900, 0, "product", 2) == 1000);
    for (int i = 0; i < 3; i++) {
        cirrus__v1__hit__free_unpacked(a[i], NULL);
        cirrus__v1__hit__free_unpacked(b[i], NULL);
    }
}

int main(void)
{
    CR_TEST_BEGIN();
    test_map();
    test_placement();
    test_merge();
    return CR_TEST_END();
}
