/* cirrus load | verify — bulk upsert from a vector file, and the check that every
 * acknowledged write is stored exactly. Ids are PREFIX + row number.
 *
 * load keeps up to --window batches in flight on one connection. A write that fails with a
 * retryable status (timeout, unavailable, overloaded, deadline exceeded: a replica that hangs
 * until it is declared down, a busy server) is sent again, only its failed rows, with
 * exponential backoff, for up to --retry-ms after its first failure; any other failure is
 * final. Upserts are idempotent, so a retry of a write that did land is harmless. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "gateway/attrs_json.h"
#include "common/clock.h"
#include "common/config.h"
#include "cli/progress.h"
#include "offline/vecfile.h"

#define LOAD_MAX_WINDOW 64
#define LOAD_BACKOFF_MIN_MS 50
#define LOAD_BACKOFF_MAX_MS 1000
/* How long past a request's deadline its reply is still awaited: the server answers at the
 * deadline (with what it has), and that answer says more than the client's own timeout. */
#define LOAD_REPLY_GRACE_MS 500

typedef struct load_opts {
    const char *vectors, *prefix, *attrs, *acked;
    long long batch, window, limit, retry_ms; /* retry_ms < 0: --timeout */
} load_opts;

/* One batch of rows, built once (the attrs file is read in order) and sent until every row is
 * acknowledged or has failed for good. */
typedef struct batch {
    Cirrus__V1__Item **items; /* count items, owned */
    size_t first, count;      /* rows first .. first + count - 1 */
    Cirrus__V1__Item **send;  /* count slots: the items of one request */
    size_t *todo, n_todo;     /* indexes into items of the rows still to acknowledge */
    uint64_t req_id;
    uint32_t deadline_ms;    /* of the request in flight */
    int sent;                /* waiting for the reply to req_id, else for retry_at_ms */
    uint64_t wait_until_ms;  /* sent: the reply is given up then */
    uint64_t retry_at_ms;    /* not sent: sent again then */
    uint64_t retry_until_ms; /* 0 until the first retryable failure; no retry after it */
    unsigned attempts;
} batch;

typedef struct load_run {
    cli_ctx *ctx;
    const load_opts *o;
    FILE *acked;
    cr_progress prog;
    uint32_t retry_ms;
    unsigned seed;
    size_t done, acked_rows, failed, retries;
} load_run;

static int usage_load(FILE *out)
{
    fprintf(out, "Usage: cirrus load --vectors FILE(.fvecs|.npy) [--id-prefix P] "
                 "[--attrs FILE.jsonl]\n"
                 "                   [--batch N] [--window N] [--limit N] [--acked FILE]\n"
                 "                   [--retry-ms MS]\n"
                 "Upserts row i as id P<i>. --acked appends each id once its write is "
                 "acknowledged (durable).\n"
                 "Writes that fail with a retryable status (timeout, unavailable, overloaded, "
                 "deadline\n"
                 "exceeded) are retried with backoff for up to --retry-ms after their first "
                 "failure\n"
                 "(default: the --timeout; 0: never).\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int load_parse(cli_ctx *ctx, load_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"vectors", required_argument, 0, 'v'}, {"id-prefix", required_argument, 0, 'p'},
        {"attrs", required_argument, 0, 'a'},   {"acked", required_argument, 0, 'A'},
        {"batch", required_argument, 0, 'b'},   {"window", required_argument, 0, 'w'},
        {"limit", required_argument, 0, 'l'},   {"retry-ms", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    o->prefix = "";
    o->batch = 256;
    o->window = 4;
    o->limit = -1;
    o->retry_ms = -1;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'v': o->vectors = optarg; break;
        case 'p': o->prefix = optarg; break;
        case 'a': o->attrs = optarg; break;
        case 'A': o->acked = optarg; break;
        case 'b':
        case 'w':
        case 'l':
        case 'r':
            if (cr_parse_ll(optarg, c == 'r' ? 0 : 1,
                            c == 'w' ? LOAD_MAX_WINDOW : c == 'b' ? 8192 : c == 'r' ? 3600000
                                                                                  : 100000000,
                            c == 'b' ? &o->batch : c == 'w' ? &o->window
                                                 : c == 'l' ? &o->limit : &o->retry_ms)) {
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
    for (size_t i = 0; items && i < n; i++) {
        if (!items[i])
            continue;
        free(items[i]->id);
        free(items[i]->vector->values);
        free(items[i]->vector);
        cr_attrs_free(items[i]->attributes, items[i]->n_attributes);
        free(items[i]);
    }
    free(items);
}

static void batch_free(batch **pb)
{
    if (*pb) {
        free_items((*pb)->items, (*pb)->count);
        free((*pb)->send);
        free((*pb)->todo);
        free(*pb);
        *pb = NULL;
    }
}

/* Builds the items of rows first .. first + count - 1. */
static cr_err batch_new(const load_opts *o, cr_vecfile *vf, FILE *af, size_t first,
                        size_t count, batch **out)
{
    batch *b = calloc(1, sizeof *b);
    size_t dim = cr_vecfile_dim(vf);
    cr_err rc = CR_OK;

    if (!b)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    b->items = calloc(count, sizeof *b->items);
    b->send = calloc(count, sizeof *b->send);
    b->todo = calloc(count, sizeof *b->todo);
    if (!b->items || !b->send || !b->todo) {
        batch_free(&b);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    b->first = first;
    b->count = count;
    for (size_t i = 0; i < count && !rc; i++) {
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
        snprintf(id, sizeof id, "%s%zu", o->prefix, first + i);
        it->id = strdup(id);
        v->n_values = dim;
        v->values = malloc(dim * sizeof(float));
        it->vector = v;
        b->items[i] = it;
        if (!it->id || !v->values) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        cr_vecfile_row_f32(vf, first + i, v->values);
        if (af)
            rc = next_attrs(af, first + i, &it->attributes, &it->n_attributes);
        b->todo[b->n_todo++] = i;
    }
    if (rc)
        batch_free(&b);
    else
        *out = b;
    return rc;
}

static int retryable(int code)
{
    return code == CR_TIMEOUT || code == CR_ERR_UNAVAILABLE || code == CR_ERR_OVERLOADED ||
           code == CR_ERR_DEADLINE;
}

/* Sends the batch's rows still to acknowledge. A retry's deadline ends with its retry time. */
static cr_err batch_send(load_run *lr, batch *b)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    uint64_t now = cr_clock_mono_ms();
    uint32_t deadline = lr->ctx->timeout_ms;
    cirrus_client *c;
    cr_err rc;

    if (b->retry_until_ms) {
        uint64_t left = b->retry_until_ms > now ? b->retry_until_ms - now : 1;
        if (left < deadline)
            deadline = (uint32_t)left;
    }
    for (size_t i = 0; i < b->n_todo; i++)
        b->send[i] = b->items[b->todo[i]];
    up.items = b->send;
    up.n_items = b->n_todo;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    req.deadline_ms = deadline ? deadline : 1;
    rc = cli_client(lr->ctx, &c);
    if (!rc)
        rc = cirrus_client_send(c, &req, &b->req_id);
    if (rc)
        return rc;
    b->sent = 1;
    b->deadline_ms = req.deadline_ms;
    b->attempts++;
    b->wait_until_ms = now + req.deadline_ms + LOAD_REPLY_GRACE_MS;
    if (b->attempts > 1)
        lr->retries++;
    return CR_OK;
}

/* The rows of b in todo failed for good: counts them and says why (the first ten). */
static void batch_give_up(load_run *lr, batch *b, const char *why)
{
    for (size_t i = 0; i < b->n_todo; i++) {
        if (lr->failed < 10)
            fprintf(stderr, "cirrus load: %s: %s\n", b->items[b->todo[i]]->id, why);
        lr->failed++;
    }
    lr->done += b->n_todo;
    cr_progress_add(&lr->prog, b->n_todo);
    b->n_todo = 0;
}

/* b's rows in todo failed with a retryable status (`why`): schedules the retry, with
 * exponential backoff and jitter, or, past the retry time, fails them. A whole request that
 * failed for good ends the load (the server is gone or refuses every write: going on would
 * only wait out every other batch); rows that failed for good are counted and the load goes
 * on. Returns CR_OK or that fatal error. */
static cr_err batch_failed(load_run *lr, batch *b, int whole, const char *why)
{
    uint64_t now = cr_clock_mono_ms(), delay;
    unsigned shift = b->attempts > 1 ? b->attempts - 1 : 0;

    if (shift > 5)
        shift = 5;
    b->sent = 0;
    if (!b->retry_until_ms)
        b->retry_until_ms = now + lr->retry_ms;
    delay = (uint64_t)LOAD_BACKOFF_MIN_MS << shift;
    if (delay > LOAD_BACKOFF_MAX_MS)
        delay = LOAD_BACKOFF_MAX_MS;
    delay = delay / 2 + (uint64_t)rand_r(&lr->seed) % (delay / 2 + 1);
    if (lr->retry_ms && now + delay < b->retry_until_ms) {
        b->retry_at_ms = now + delay;
        return CR_OK;
    }
    if (whole)
        return cr_error_set(CR_ERR_UNAVAILABLE, "%s; gave up after %u attempts", why,
                            b->attempts);
    batch_give_up(lr, b, why);
    return CR_OK;
}

/* Handles the reply to b's request: acknowledged rows go to the acked file, rows that failed
 * for good are counted, rows that failed with a retryable status stay in b->todo. */
static cr_err take_reply(load_run *lr, batch *b, const Cirrus__V1__Response *resp)
{
    const char *smsg;
    size_t keep = 0;
    char why[256];
    int code;

    b->sent = 0;
    if (!resp->status)
        return cr_error_set(CR_ERR_PROTO, "reply without a status");
    code = resp->status->code;
    smsg = resp->status->message && resp->status->message[0] ? resp->status->message
                                                              : cr_strerror((cr_err)code);
    if (retryable(code))
        return batch_failed(lr, b, 1, smsg);
    if (code < 0)
        return cr_error_set((cr_err)code, "%s", smsg);
    if (!resp->upsert || resp->upsert->n_items != b->n_todo)
        return cr_error_set(CR_ERR_PROTO, "reply does not list the %zu items", b->n_todo);
    why[0] = '\0';
    for (size_t i = 0; i < b->n_todo; i++) {
        const Cirrus__V1__ItemStatus *st = resp->upsert->items[i];
        const char *msg = st->status && st->status->message ? st->status->message : "";
        int c = st->status ? st->status->code : 0;
        size_t idx = b->todo[i];
        if (retryable(c)) {
            b->todo[keep++] = idx;
            if (!why[0])
                snprintf(why, sizeof why, "%s", msg[0] ? msg : cr_strerror((cr_err)c));
            continue;
        }
        if (c < 0 || c == CR_STALE) {
            if (lr->failed < 10)
                fprintf(stderr, "cirrus load: %s: %s\n", b->items[idx]->id, msg);
            lr->failed++;
        } else {
            if (lr->acked)
                fprintf(lr->acked, "%s%zu\n", lr->o->prefix, b->first + idx);
            lr->acked_rows++;
        }
        lr->done++;
        cr_progress_add(&lr->prog, 1);
    }
    b->n_todo = keep;
    if (lr->acked && fflush(lr->acked) != 0)
        return cr_error_set(CR_ERR_IO, "cannot write the acked file");
    return keep ? batch_failed(lr, b, 0, why) : CR_OK;
}

/* Sends what is due: new batches while the window has room, retries whose time has come;
 * fails the requests whose reply is overdue. Returns CR_OK or a fatal error. */
static cr_err load_step(load_run *lr, cr_vecfile *vf, FILE *af, batch **win, size_t *nwin,
                        size_t *next, size_t rows)
{
    const load_opts *o = lr->o;
    cr_err rc = CR_OK;

    while (*nwin < (size_t)o->window && *next < rows && !rc) {
        size_t count = rows - *next < (size_t)o->batch ? rows - *next : (size_t)o->batch;
        batch *b = NULL;
        rc = batch_new(o, vf, af, *next, count, &b);
        if (rc)
            break;
        win[(*nwin)++] = b;
        *next += count;
        rc = batch_send(lr, b);
        if (rc && retryable(rc))
            rc = batch_failed(lr, b, 1, cr_error_message());
    }
    for (size_t i = 0; i < *nwin && !rc; i++) {
        batch *b = win[i];
        uint64_t now = cr_clock_mono_ms();
        char why[64];
        if (!b->sent && b->n_todo && now >= b->retry_at_ms) {
            rc = batch_send(lr, b);
            if (rc && retryable(rc))
                rc = batch_failed(lr, b, 1, cr_error_message());
        } else if (b->sent && now >= b->wait_until_ms) {
            snprintf(why, sizeof why, "no reply within %u ms",
                     b->deadline_ms + LOAD_REPLY_GRACE_MS);
            rc = batch_failed(lr, b, 1, why);
        }
    }
    return rc;
}

/* Waits for the next reply (or until the next send is due) and takes it. */
static cr_err load_wait(load_run *lr, batch **win, size_t *nwin)
{
    uint64_t now = cr_clock_mono_ms(), wake = now + 1000;
    Cirrus__V1__Response *resp = NULL;
    int any_sent = 0;
    cr_err rc;

    for (size_t i = 0; i < *nwin; i++) {
        uint64_t t = win[i]->sent ? win[i]->wait_until_ms : win[i]->retry_at_ms;
        any_sent |= win[i]->sent;
        if (t < wake)
            wake = t;
    }
    if (wake <= now)
        return CR_OK;
    if (!any_sent) {
        cr_clock_sleep_ms(wake - now);
        return CR_OK;
    }
    rc = cirrus_client_recv(lr->ctx->client, (uint32_t)(wake - now), &resp);
    if (rc == CR_TIMEOUT)
        return CR_OK;
    if (rc)
        return rc;
    for (size_t i = 0; i < *nwin; i++) {
        if (!win[i]->sent || win[i]->req_id != resp->id)
            continue; /* else a late reply to a request given up, or a ping's */
        rc = take_reply(lr, win[i], resp);
        break;
    }
    cirrus_response_free(resp);
    return rc;
}

/* After a fatal error: no more sends, but the replies to the requests still in flight are
 * taken until they are due, so that every row the server acknowledged reaches --acked (a
 * full disk fails one batch while the next, already sent, may still commit). */
static void load_drain(load_run *lr, batch **win, size_t nwin)
{
    for (;;) {
        uint64_t now = cr_clock_mono_ms(), until = 0;
        Cirrus__V1__Response *resp = NULL;
        for (size_t i = 0; i < nwin; i++)
            if (win[i]->sent && win[i]->wait_until_ms > until)
                until = win[i]->wait_until_ms;
        if (until <= now || cirrus_client_recv(lr->ctx->client, (uint32_t)(until - now), &resp))
            return;
        for (size_t i = 0; i < nwin; i++)
            if (win[i]->sent && win[i]->req_id == resp->id) {
                (void)take_reply(lr, win[i], resp); /* its error, if any, is not the first */
                win[i]->sent = 0;
                break;
            }
        cirrus_response_free(resp);
    }
}

/* Drops the batches that are done. */
static void load_reap(batch **win, size_t *nwin)
{
    for (size_t i = 0; i < *nwin;) {
        if (win[i]->n_todo) {
            i++;
            continue;
        }
        batch_free(&win[i]);
        win[i] = win[--*nwin];
    }
}

int cli_cmd_load(cli_ctx *ctx, int argc, char **argv)
{
    load_opts o = {0};
    load_run lr;
    cr_vecfile *vf = NULL;
    FILE *af = NULL;
    batch *win[LOAD_MAX_WINDOW];
    size_t nwin = 0, next = 0, rows;
    cr_err rc = CR_OK;
    int ret = load_parse(ctx, &o, argc, argv);

    if (ret >= 0)
        return ret;
    ret = CLI_FAIL;
    memset(&lr, 0, sizeof lr);
    lr.ctx = ctx;
    lr.o = &o;
    lr.retry_ms = o.retry_ms < 0 ? ctx->timeout_ms : (uint32_t)o.retry_ms;
    lr.seed = (unsigned)cr_clock_mono_ns() ^ (unsigned)getpid();
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
    if (o.acked && !(lr.acked = fopen(o.acked, "a"))) {
        cli_error("load", "cannot open %s", o.acked);
        goto out;
    }
    cr_progress_begin(&lr.prog, "load", rows, ctx->json);
    while (lr.done < rows && !rc) {
        rc = load_step(&lr, vf, af, win, &nwin, &next, rows);
        if (!rc)
            rc = load_wait(&lr, win, &nwin);
        load_reap(win, &nwin);
    }
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", cr_error_message());
        load_drain(&lr, win, nwin);
        cli_error("load", "%s after %zu acknowledged rows (server %s)", why, lr.acked_rows,
                  ctx->endpoint);
        goto out;
    }
    cr_progress_end(&lr.prog);
    if (ctx->json) {
        json_t *j = json_object();
        json_object_set_new(j, "rows", json_integer((json_int_t)rows));
        json_object_set_new(j, "failed", json_integer((json_int_t)lr.failed));
        json_object_set_new(j, "retries", json_integer((json_int_t)lr.retries));
        json_object_set_new(j, "seconds",
                            json_real((double)(cr_clock_mono_us() - lr.prog.start_us) / 1e6));
        cli_print_json(j);
    } else if (lr.retries) {
        printf("loaded %zu of %zu rows (%zu requests retried)\n", rows - lr.failed, rows,
               lr.retries);
    } else {
        printf("loaded %zu of %zu rows\n", rows - lr.failed, rows);
    }
    ret = lr.failed ? CLI_FAIL : CLI_OK;
out:
    for (size_t i = 0; i < nwin; i++)
        batch_free(&win[i]);
    if (af)
        fclose(af);
    if (lr.acked)
        fclose(lr.acked);
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

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
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
