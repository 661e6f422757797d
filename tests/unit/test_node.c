/* node/node.h: a whole node (coordinator + shards, no model) opened in-process, used through
 * libcirrus on its public endpoint the moment node_open returns (no sleeps, no polling for
 * readiness); writes survive close and reopen; bad options and a taken endpoint fail cleanly
 * and leave nothing running (the same directory opens right after). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "client/cirrus.h"
#include "common/log.h"
#include "common/test.h"
#include "node/node.h"

#define DIM 8
#define N_ITEMS 40

static void vec_of(int i, float *v)
{
    for (int d = 0; d < DIM; d++)
        v[d] = (float)((i * 7 + d * 3) % 11) - 5.0f + (d == i % DIM ? 9.0f : 0.0f);
}

static node_opts opts_for(const char *dir, const char *bind)
{
    node_opts o = node_default_opts();
    o.data = dir;
    o.bind = bind;
    o.shards = 2;
    o.dim = DIM;
    o.index = "Flat";
    return o;
}

static void upsert_all(cirrus *c)
{
    float vecs[N_ITEMS][DIM];
    char ids[N_ITEMS][16];
    cirrus_item items[N_ITEMS];
    cirrus_item_status st[N_ITEMS];
    memset(items, 0, sizeof items);
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(ids[i], sizeof ids[i], "sku-%d", i);
        vec_of(i, vecs[i]);
        items[i].id = ids[i];
        items[i].vector = vecs[i];
        items[i].dim = DIM;
    }
    CR_CHECK_MSG(cirrus_upsert(c, items, N_ITEMS, st) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    for (int i = 0; i < N_ITEMS; i++)
        CR_CHECK(st[i].code == CIRRUS_OK && st[i].version > 0);
}

/* Every item finds itself first (Flat, exact), across both shards. */
static void search_all(cirrus *c)
{
    int found = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        float v[DIM];
        char id[16];
        cirrus_query q = cirrus_query_default();
        cirrus_result *r = NULL;
        vec_of(i, v);
        snprintf(id, sizeof id, "sku-%d", i);
        q.vector = v;
        q.dim = DIM;
        q.k = 3;
        if (cirrus_search(c, &q, &r) != CIRRUS_OK)
            continue;
        found += cirrus_result_count(r) > 0 && strcmp(cirrus_result_id(r, 0), id) == 0 &&
                 !cirrus_result_partial(r);
        cirrus_result_free(&r);
    }
    CR_CHECK_MSG(found == N_ITEMS, "%d of %d items found themselves", found, N_ITEMS);
}

static cirrus *connect_to(const char *ep)
{
    cirrus *c = NULL;
    CR_CHECK_MSG(cirrus_open(&c, ep, NULL) == CIRRUS_OK, "%s", cirrus_errmsg(NULL));
    return c;
}

static void test_serve_and_reopen(const char *dir, const char *ep)
{
    node_opts o = opts_for(dir, ep);
    node *n = NULL;
    cirrus *c;
    int ready = 0;
    CR_CHECK_MSG(node_open(&n, &o) == CR_OK, "%s", cr_error_message());
    if (!n)
        return;
    CR_CHECK(strcmp(node_endpoint(n), ep) == 0);
    c = connect_to(ep);
    if (c) {
        CR_CHECK(cirrus_health(c, &ready) == CIRRUS_OK && ready);
        upsert_all(c);
        search_all(c);
        cirrus_close(&c);
    }
    CR_CHECK(node_close(&n) == CR_OK && n == NULL);

    /* Reopened: the shards keep their dimension and index, and every acknowledged write. */
    o.dim = 0;
    o.index = NULL;
    CR_CHECK_MSG(node_open(&n, &o) == CR_OK, "%s", cr_error_message());
    if (!n)
        return;
    c = connect_to(ep);
    if (c) {
        search_all(c);
        cirrus_close(&c);
    }
    CR_CHECK(node_close(&n) == CR_OK);
}

static void test_bad_options(const char *dir, const char *ep)
{
    node_opts o = opts_for(dir, ep);
    node *n = NULL;
    o.data = NULL;
    CR_CHECK(node_open(&n, &o) == CR_ERR_INVALID && n == NULL);
    o = opts_for(dir, ep);
    o.shards = NODE_MAX_SHARDS + 1;
    CR_CHECK(node_open(&n, &o) == CR_ERR_INVALID && n == NULL);
    o = opts_for(dir, ep);
    o.metric = "cosine";
    CR_CHECK(node_open(&n, &o) != CR_OK && n == NULL);
    o = opts_for(dir, ep);
    o.model = "/nonexistent/model.safetensors";
    CR_CHECK(node_open(&n, &o) != CR_OK && n == NULL);
    /* A new catalog needs a dimension. */
    {
        char fresh[4200];
        snprintf(fresh, sizeof fresh, "%s/fresh", dir);
        o = opts_for(fresh, ep);
        o.dim = 0;
        CR_CHECK(node_open(&n, &o) != CR_OK && n == NULL);
        CR_CHECK_MSG(strstr(cr_error_message(), "--dim") != NULL, "%s", cr_error_message());
    }
}

/* A free loopback TCP port (ipc:// would not do: ZeroMQ takes an ipc path over). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A second node on a taken endpoint fails to open and releases its shards: the first keeps
 * serving, and after it closes the same directory opens again. */
static void test_endpoint_taken(const char *dir)
{
    char dir2[4200], ep[64];
    node_opts o, o2;
    node *n = NULL, *n2 = NULL;
    cirrus *c;
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", free_port());
    o = opts_for(dir, ep);
    snprintf(dir2, sizeof dir2, "%s/second", dir);
    o2 = opts_for(dir2, ep);
    CR_CHECK(node_open(&n, &o) == CR_OK);
    CR_CHECK(node_open(&n2, &o2) != CR_OK && n2 == NULL);
    c = connect_to(ep);
    if (c) {
        search_all(c);
        cirrus_close(&c);
    }
    CR_CHECK(node_close(&n) == CR_OK);
    o2.bind = ep;
    CR_CHECK_MSG(node_open(&n2, &o2) == CR_OK, "%s", cr_error_message());
    CR_CHECK(node_close(&n2) == CR_OK);
}

int main(void)
{
    char dir[] = "/tmp/cirrus-test-node-XXXXXX", ep[128], cmd[200];
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    CR_CHECK(mkdtemp(dir) != NULL);
    snprintf(ep, sizeof ep, "ipc://%s/node.sock", dir);
    test_serve_and_reopen(dir, ep);
    test_bad_options(dir, ep);
    test_endpoint_taken(dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return CR_TEST_END();
}
