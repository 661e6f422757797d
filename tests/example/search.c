/* search.c — a program written only against the installed libcirrus (<cirrus/cirrus.h>).
 *
 *     cc search.c $(pkg-config --cflags --libs cirrus) -o search
 *     ./search tcp://127.0.0.1:7700
 *
 * Against a `cirrus serve --model ...` node it loads a small catalog, then runs a vector, an
 * item, a text and a composed search (with a filter and group_by), reads and deletes items,
 * and checks what it gets. Exit status 0 when every step worked; otherwise it prints the
 * handle's error message and exits 1. tests/integration/test_libcirrus_install.sh runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cirrus/cirrus.h>

#define N_ITEMS 30

static int failures;

static void check(int ok, const char *what, const cirrus *c)
{
    if (ok)
        return;
    failures++;
    fprintf(stderr, "FAIL: %s (%s)\n", what, cirrus_errmsg(c));
}

static void vector_of(int i, float *v, size_t dim)
{
    unsigned s = 2654435761u * (unsigned)(i + 1);
    for (size_t d = 0; d < dim; d++) {
        s = s * 1664525u + 1013904223u;
        v[d] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static void print_result(const char *title, const cirrus_result *r)
{
    printf("%s:", title);
    for (size_t i = 0; i < cirrus_result_count(r); i++)
        printf(" %s(%.3f)", cirrus_result_id(r, i), cirrus_result_score(r, i));
    printf("%s\n", cirrus_result_partial(r) ? " [partial]" : "");
}

/* The catalog's dimension, through the raw escape hatch (a Stats request). */
static size_t catalog_dim(cirrus *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    size_t dim = 0;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    if (cirrus_call(c, &req, &resp) == CIRRUS_OK)
        dim = resp->stats->dim;
    cirrus_response_free(resp);
    return dim;
}

static void load(cirrus *c, size_t dim, float *vecs)
{
    static const char *const colors[] = {"red", "blue", "green"};
    cirrus_item items[N_ITEMS];
    cirrus_item_status status[N_ITEMS];
    cirrus_attr attrs[N_ITEMS][3];
    char ids[N_ITEMS][16], products[N_ITEMS][16], uris[N_ITEMS][48];
    int ok = 1;

    memset(items, 0, sizeof items);
    for (int i = 0; i < N_ITEMS; i++) {
        vector_of(i, vecs + (size_t)i * dim, dim);
        snprintf(ids[i], sizeof ids[i], "sku-%d", i);
        snprintf(products[i], sizeof products[i], "p%d", i / 2);
        snprintf(uris[i], sizeof uris[i], "https://img.example/sku-%d.jpg", i);
        attrs[i][0] = cirrus_attr_string("color", colors[i % 3]);
        attrs[i][1] = cirrus_attr_double("price", 20.0 + 3.0 * i);
        attrs[i][2] = cirrus_attr_string("product", products[i]);
        items[i].id = ids[i];
        items[i].vector = vecs + (size_t)i * dim;
        items[i].dim = dim;
        items[i].attrs = attrs[i];
        items[i].n_attrs = 3;
        items[i].image_uri = uris[i];
    }
    check(cirrus_upsert(c, items, N_ITEMS, status) == CIRRUS_OK, "upsert", c);
    for (int i = 0; i < N_ITEMS; i++)
        ok &= status[i].code == CIRRUS_OK;
    check(ok, "per-item upsert status", c);
}

int main(int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:7700";
    cirrus_options o = cirrus_default_options();
    cirrus *c = NULL;
    cirrus_query q;
    cirrus_result *r = NULL;
    float *vecs;
    size_t dim;
    int ready = 0;

    o.timeout_ms = 20000;
    if (cirrus_open(&c, endpoint, &o) != CIRRUS_OK) {
        fprintf(stderr, "open %s: %s\n", endpoint, cirrus_errmsg(NULL));
        return 1;
    }
    check(cirrus_health(c, &ready) == CIRRUS_OK && ready, "health", c);
    dim = catalog_dim(c);
    check(dim > 0, "stats: catalog dimension", c);
    if (!dim) {
        cirrus_close(&c);
        return 1;
    }
    vecs = malloc(N_ITEMS * dim * sizeof *vecs);
    if (!vecs)
        return 1;
    load(c, dim, vecs);

    /* a vector search: the item's own vector finds it first */
    q = cirrus_query_default();
    q.vector = vecs + 4 * dim;
    q.dim = dim;
    q.k = 5;
    check(cirrus_search(c, &q, &r) == CIRRUS_OK, "vector search", c);
    print_result("vector", r);
    check(cirrus_result_count(r) == 5 && strcmp(cirrus_result_id(r, 0), "sku-4") == 0,
          "vector search: sku-4 first", c);
    check(cirrus_result_image_uri(r, 0) &&
              strcmp(cirrus_result_image_uri(r, 0), "https://img.example/sku-4.jpg") == 0,
          "vector search: image_uri", c);
    cirrus_result_free(&r);

    /* more like this item */
    q = cirrus_query_default();
    q.item_id = "sku-9";
    q.k = 3;
    check(cirrus_search(c, &q, &r) == CIRRUS_OK, "item search", c);
    print_result("item", r);
    check(cirrus_result_count(r) == 3 && strcmp(cirrus_result_id(r, 0), "sku-9") == 0,
          "item search: sku-9 first", c);
    cirrus_result_free(&r);

    /* a text query, filtered */
    q = cirrus_query_default();
    q.text = "a red dress";
    q.filter = "price < 50";
    check(cirrus_search(c, &q, &r) == CIRRUS_OK, "text search", c);
    print_result("text", r);
    check(cirrus_result_count(r) == 10, "text search: 10 hits (price < 50: sku-0..9)", c);
    for (size_t i = 0; i < cirrus_result_count(r); i++) {
        cirrus_attr price;
        check(cirrus_result_attr_find(r, i, "price", &price) == CIRRUS_OK && price.d < 50,
              "text search: filter", c);
    }
    cirrus_result_free(&r);

    /* a composed query: like sku-3, but as the caption says; one hit per product */
    q = cirrus_query_default();
    q.ref_item_id = "sku-3";
    q.caption = "is red and striped";
    q.method = CIRRUS_METHOD_SEARLE;
    q.group_by = "product";
    check(cirrus_search(c, &q, &r) == CIRRUS_OK, "composed search", c);
    print_result("composed", r);
    check(cirrus_result_count(r) == 10, "composed search: 10 hits", c);
    cirrus_result_free(&r);

    /* an error on the handle */
    q = cirrus_query_default();
    q.text = "dress";
    q.filter = "price <";
    check(cirrus_search(c, &q, &r) == CIRRUS_ERR_INVALID && strstr(cirrus_errmsg(c), "filter"),
          "a bad filter is refused", c);
    printf("bad filter: %s\n", cirrus_errmsg(c));

    /* read and delete */
    {
        const char *ids[] = {"sku-1", "sku-2"};
        check(cirrus_get(c, ids, 2, 1, &r) == CIRRUS_OK && cirrus_result_count(r) == 2, "get",
              c);
        cirrus_result_free(&r);
        check(cirrus_delete(c, ids, 1) == CIRRUS_OK, "delete", c);
        check(cirrus_get(c, ids, 2, 0, &r) == CIRRUS_NOTFOUND &&
                  cirrus_result_missing_count(r) == 1,
              "get after delete", c);
        cirrus_result_free(&r);
    }

    free(vecs);
    cirrus_close(&c);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
