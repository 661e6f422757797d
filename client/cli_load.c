/* cirrus load | verify — bulk upsert from a vector file, and the check that every
 * acknowledged write is stored exactly. Ids are PREFIX + row number. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "common/attrs_json.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/progress.h"
#include "common/vecfile.h"

#define LOAD_MAX_WINDOW 64

typedef struct load_opts {
    const char *vectors, *prefix, *attrs, *acked;
    long long batch, window, limit;
} load_opts;

typedef struct inflight {
    uint64_t req_id;
    size_t first, count; /* rows */
} inflight;

static int usage_load(FILE *out)
{
    fprintf(out, "Usage: cirrus load --vectors FILE(.fvecs|.npy) [--id-prefix P] "
                 "[--attrs FILE.jsonl]\n"
                 "                   [--batch N] [--window N] [--limit N] [--acked FILE]\n"
                 "Upserts row i as id P<i>. --acked appends each id once its write is "
                 "acknowledged (durable).\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int load_parse(load_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"vectors", required_argument, 0, 'v'}, {"id-prefix", required_argument, 0, 'p'},
        {"attrs", required_argument, 0, 'a'},   {"acked", required_argument, 0, 'A'},
        {"batch", required_argument, 0, 'b'},   {"window", required_argument, 0, 'w'},
        {"limit", required_argument, 0, 'l'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    o->prefix = "";
    o->batch = 256;
    o->window = 4;
    o->limit = -1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'v': o->vectors = optarg; break;
        case 'p': o->prefix = optarg; break;
        case 'a': o->attrs = optarg; break;
        case 'A': o->acked = optarg; break;
        case 'b':
        case 'w':
        case 'l':
            if (cr_parse_ll(optarg, 1, c == 'w' ? LOAD_MAX_WINDOW : 100000000,
                            c == 'b' ? &o->batch : c == 'w' ? &o->window : &o->limit)) {
                cli_error("load", "%s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'h': return usage_load(stdout);
        default: return usage_load(stderr);
        }
    }
    if (!o->vectors) {
        cli_error("load", "--vectors is required");
        return usage_load(stderr);
    }
    return -1;
}

/* Reads line `row` of the attrs file into attributes (the file is read sequentially). */
static cr_err next_attrs(FILE *f, size_t row, Cirrus__V1__Attribute ***attrs, size_t *n)
{
    char *line = NULL;
    size_t cap = 0;
    json_error_t err;
    json_t *j;
    cr_err rc;
    ssize_t len = getline(&line, &cap, f);
    *attrs = NULL;
    *n = 0;
    if (len <= 0) {
        free(line);
        return cr_error_set(CR_ERR_INVALID, "attrs file ends before row %zu", row);
    }
    j = json_loads(line, 0, &err);
    free(line);
    if (!j)
        return cr_error_set(CR_ERR_INVALID, "attrs line %zu: %s", row + 1, err.text);
    rc = cr_attrs_from_json(j, attrs, n);
    json_decref(j);
    return rc ? cr_error_wrap(rc, "attrs line %zu", row + 1) : CR_OK;
}

static void free_items(Cirrus__V1__Item **items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i]->id);
        free(items[i]->vector->values);
        free(items[i]->vector);
        cr_attrs_free(items[i]->attributes, items[i]->n_attributes);
        free(items[i]);
    }
}

static cr_err send_batch(cli_ctx *ctx, const load_opts *o, cr_vecfile *vf, FILE *af,
                         size_t first, size_t count, uint64_t *req_id)
{
    Cirrus__V1__Item **items = calloc(count, sizeof *items);
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    size_t dim = cr_vecfile_dim(vf), made = 0;
    cirrus_client *c;
    cr_err rc = CR_OK;

    if (!items)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (; made < count && !rc; made++) {
        Cirrus__V1__Item *it = malloc(sizeof *it);
        Cirrus__V1__Vector *v = malloc(sizeof *v);
        char id[300];
        if (!it || !v) {
            free(it);
            free(v);
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        cirrus__v1__item__init(it);
        cirrus__v1__vector__init(v);
        snprintf(id, sizeof id, "%s%zu", o->prefix, first + made);
        it->id = strdup(id);
        v->n_values = dim;
        v->values = malloc(dim * sizeof(float));
        it->vector = v;
        items[made] = it;
        if (!it->id || !v->values) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            made++;
            break;
        }
        cr_vecfile_row_f32(vf, first + made, v->values);
        if (af)
            rc = next_attrs(af, first + made, &it->attributes, &it->n_attributes);
    }
    if (!rc)
        rc = cli_client(ctx, &c);
    if (!rc) {
        up.items = items;
        up.n_items = count;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        req.deadline_ms = ctx->timeout_ms;
        rc = cirrus_client_send(c, &req, req_id);
    }
    free_items(items, made);
    free(items);
    return rc;
}

/* Handles one reply: appends acknowledged ids, counts per-item failures. */
static cr_err take_reply(const load_opts *o, const Cirrus__V1__Response *resp,
                         const inflight *b, FILE *acked, size_t *failed)
{
    cr_err rc = cirrus_response_error(resp);
    if (rc)
        return rc;
    if (!resp->upsert || resp->upsert->n_items != b->count)
        return cr_error_set(CR_ERR_PROTO, "reply does not list the %zu items", b->count);
    for (size_t i = 0; i < b->count; i++) {
        const Cirrus__V1__ItemStatus *st = resp->upsert->items[i];
        int code = st->status ? st->status->code : 0;
        if (code < 0 || code == CR_STALE) {
            if (*failed < 10)
                fprintf(stderr, "cirrus load: %s: %s\n", st->id,
                        st->status ? st->status->message : "");
            (*failed)++;
        } else if (acked) {
            fprintf(acked, "%s%zu\n", o->prefix, b->first + i);
        }
    }
    if (acked && (fflush(acked) != 0))
        return cr_error_set(CR_ERR_IO, "cannot write the acked file");
    return CR_OK;
}

int cli_cmd_load(cli_ctx *ctx, int argc, char **argv)
{
    load_opts o = {0};
    cr_vecfile *vf = NULL;
    FILE *af = NULL, *acked = NULL;
    inflight win[LOAD_MAX_WINDOW];
    size_t nwin = 0, next = 0, rows, failed = 0, done = 0;
    cr_progress prog;
    cr_err rc;
    int ret = load_parse(&o, argc, argv);

    if (ret >= 0)
        return ret;
    ret = CLI_FAIL;
    if (cr_vecfile_open(&vf, o.vectors)) {
        cli_error("load", "%s", cr_error_message());
        return CLI_FAIL;
    }
    rows = cr_vecfile_rows(vf);
    if (o.limit >= 0 && (size_t)o.limit < rows)
        rows = (size_t)o.limit;
    if (o.attrs && !(af = fopen(o.attrs, "r"))) {
        cli_error("load", "cannot open %s", o.attrs);
        goto out;
    }
    if (o.acked && !(acked = fopen(o.acked, "a"))) {
        cli_error("load", "cannot open %s", o.acked);
        goto out;
    }
    cr_progress_begin(&prog, "load", rows, ctx->json);
    while (done < rows) {
        Cirrus__V1__Response *resp = NULL;
        while (nwin < (size_t)o.window && next < rows) {
            size_t count = rows - next < (size_t)o.batch ? rows - next : (size_t)o.batch;
            rc = send_batch(ctx, &o, vf, af, next, count, &win[nwin].req_id);
            if (rc) {
                cli_error("load", "%s", cr_error_message());
                goto out;
            }
            win[nwin].first = next;
            win[nwin].count = count;
            nwin++;
            next += count;
        }
        rc = cirrus_client_recv(ctx->client, ctx->timeout_ms, &resp);
        if (rc) {
            cli_error("load", "%s after %zu acknowledged rows (server %s)", cr_error_message(),
                      done, ctx->endpoint);
            goto out;
        }
        for (size_t i = 0; i < nwin; i++) {
            if (win[i].req_id != resp->id)
                continue;
            rc = take_reply(&o, resp, &win[i], acked, &failed);
            done += win[i].count;
            cr_progress_add(&prog, win[i].count);
            win[i] = win[--nwin];
            break;
        }
        cirrus_response_free(resp);
        if (rc) {
            cli_error("load", "%s", cr_error_message());
            goto out;
        }
    }
    cr_progress_end(&prog);
    if (ctx->json) {
        json_t *j = json_object();
        json_object_set_new(j, "rows", json_integer((json_int_t)rows));
        json_object_set_new(j, "failed", json_integer((json_int_t)failed));
        json_object_set_new(j, "seconds", json_real((double)(cr_clock_mono_us() - prog.start_us) / 1e6));
        cli_print_json(j);
    } else {
        printf("loaded %zu of %zu rows\n", rows - failed, rows);
    }
    ret = failed ? CLI_FAIL : CLI_OK;
out:
    if (af)
        fclose(af);
    if (acked)
        fclose(acked);
    cr_vecfile_close(&vf);
    return ret;
}

/* ---- verify -------------------------------------------------------------------------- */

static int verify_batch(cli_ctx *ctx, cr_vecfile *vf, const char *prefix, char **ids, size_t n,
                        size_t *ok)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    size_t dim = cr_vecfile_dim(vf), plen = strlen(prefix);
    float *row = malloc(dim * sizeof *row);

    get.ids = ids;
    get.n_ids = n;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    if (!row || cli_call(ctx, "verify", &req, &resp)) {
        free(row);
        return -1;
    }
    for (size_t i = 0; resp->get && i < resp->get->n_items; i++) {
        const Cirrus__V1__Item *it = resp->get->items[i];
        long long r;
        if (strncmp(it->id, prefix, plen) != 0 ||
            cr_parse_ll(it->id + plen, 0, (long long)cr_vecfile_rows(vf) - 1, &r))
            continue;
        cr_vecfile_row_f32(vf, (size_t)r, row);
        if (it->vector && it->vector->n_values == dim &&
            memcmp(it->vector->values, row, dim * sizeof *row) == 0)
            (*ok)++;
        else
            fprintf(stderr, "cirrus verify: %s: stored vector differs\n", it->id);
    }
    for (size_t i = 0; resp->get && i < resp->get->n_missing && i < 10; i++)
        fprintf(stderr, "cirrus verify: %s: missing\n", resp->get->missing[i]);
    cirrus_response_free(resp);
    free(row);
    return 0;
}

int cli_cmd_verify(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"vectors", required_argument, 0, 'v'},
                                         {"id-prefix", required_argument, 0, 'p'},
                                         {"acked", required_argument, 0, 'A'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *vectors = NULL, *prefix = "", *acked_path = NULL;
    cr_vecfile *vf = NULL;
    FILE *acked = NULL;
    char *line = NULL, *ids[256];
    size_t cap = 0, n = 0, total = 0, ok = 0;
    int c, ret = CLI_FAIL;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'v') vectors = optarg;
        else if (c == 'p') prefix = optarg;
        else if (c == 'A') acked_path = optarg;
        else {
            printf("Usage: cirrus verify --vectors FILE --acked FILE [--id-prefix P]\n");
            return c == 'h' ? CLI_OK : CLI_USAGE;
        }
    }
    if (!vectors || !acked_path) {
        cli_error("verify", "--vectors and --acked are required");
        return CLI_USAGE;
    }
    if (cr_vecfile_open(&vf, vectors)) {
        cli_error("verify", "%s", cr_error_message());
        return CLI_FAIL;
    }
    if (!(acked = fopen(acked_path, "r"))) {
        cli_error("verify", "cannot open %s", acked_path);
        goto out;
    }
    for (;;) {
        ssize_t len = getline(&line, &cap, acked);
        if (len > 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = '\0';
            if (len == 0)
                continue;
            ids[n++] = strdup(line);
            total++;
        }
        if (n == 256 || (len <= 0 && n)) {
            int bad = verify_batch(ctx, vf, prefix, ids, n, &ok);
            for (size_t i = 0; i < n; i++)
                free(ids[i]);
            n = 0;
            if (bad)
                goto out;
        }
        if (len <= 0)
            break;
    }
    if (ctx->json) {
        json_t *j = json_object();
        json_object_set_new(j, "verified", json_integer((json_int_t)ok));
        json_object_set_new(j, "acked", json_integer((json_int_t)total));
        cli_print_json(j);
    } else {
        printf("verified %zu of %zu\n", ok, total);
    }
    ret = ok == total ? CLI_OK : CLI_FAIL;
out:
    free(line);
    if (acked)
        fclose(acked);
    cr_vecfile_close(&vf);
    return ret;
}
