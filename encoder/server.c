#include "encoder/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/service.h"
#include "common/validate.h"
#include "common/wire.h"

#define RUN_SLICE_MS 50 /* enc_server_run's check of its stop flag */

struct enc_server {
    enc_service *svc;
    enc_server_opts o;
    cr_service *core;
    uint64_t start_ms;
};

/* A request from the network: a job plus what its reply needs. The inference thread builds
 * the reply in it, sends it through the kept call and frees it; nothing here refers to the
 * enc_server, which may be closed by then (close waits for jobs only drain_ms). */
typedef struct net_job {
    enc_job j; /* first: the batcher sees a job */
    enc_service *svc;
    cr_svc_call *call; /* kept; its request (whose strings compose uses) lives in it */
    uint64_t id;
    Cirrus__V1__Response__ResultCase result_case;
    Cirrus__V1__Response resp;
    Cirrus__V1__Status st;
    Cirrus__V1__Embeddings emb;
    Cirrus__V1__Vector *vecs;
    Cirrus__V1__Vector **vecp;
    protobuf_c_boolean *trunc;
} net_job;

enc_server_opts enc_server_default_opts(void)
{
    enc_server_opts o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.default_deadline_ms = 30000;
    o.drain_ms = 30000;
    return o;
}

static void reply_status(cr_svc_call *call, uint64_t id, cr_err code, const char *msg)
{
    cr_svc_reply_error(call, id, code, msg); /* a failed send is logged there */
}

static void net_job_free(net_job *nj)
{
    if (!nj)
        return;
    enc_job_clear(&nj->j);
    cr_svc_call_release(&nj->call);
    free(nj->vecs);
    free(nj->vecp);
    free(nj->trunc);
    free(nj);
}

/* Inference thread: builds the reply, sends it (the front thread forwards it), frees. */
static void net_done(enc_job *j)
{
    net_job *nj = (net_job *)j;
    size_t n = (size_t)j->n, d = (size_t)enc_service_embed_dim(nj->svc);

    cirrus__v1__response__init(&nj->resp);
    cirrus__v1__embeddings__init(&nj->emb);
    nj->resp.id = nj->id;
    nj->resp.status = &nj->st;
    if (!j->rc) {
        nj->vecs = calloc(n, sizeof *nj->vecs);
        nj->vecp = calloc(n, sizeof *nj->vecp);
        nj->trunc = calloc(n, sizeof *nj->trunc);
        if (!nj->vecs || !nj->vecp || !nj->trunc)
            enc_job_fail(j, CR_ERR_NOMEM, "out of memory for the reply");
    }
    if (j->rc) {
        cr_wire_status_set(&nj->st, j->rc, j->msg);
    } else {
        cr_wire_status_set(&nj->st, CR_OK, "");
        for (size_t i = 0; i < n; i++) {
            cirrus__v1__vector__init(&nj->vecs[i]);
            nj->vecs[i].values = j->out + i * d;
            nj->vecs[i].n_values = d;
            nj->vecp[i] = &nj->vecs[i];
            nj->trunc[i] = j->truncated[i] != 0;
        }
        nj->emb.vectors = nj->vecp;
        nj->emb.n_vectors = n;
        if (j->kind != ENC_JOB_IMAGE) {
            nj->emb.truncated = nj->trunc;
            nj->emb.n_truncated = n;
        }
        nj->resp.result_case = nj->result_case;
        if (j->kind == ENC_JOB_IMAGE)
            nj->resp.encode_image = &nj->emb;
        else if (j->kind == ENC_JOB_TEXT)
            nj->resp.encode_text = &nj->emb;
        else
            nj->resp.compose = &nj->emb;
    }
    cr_svc_reply(nj->call, &nj->resp);
    net_job_free(nj);
}

static cr_err map_preprocess(Cirrus__V1__Preprocess p, int *out)
{
    switch (p) {
    case CIRRUS__V1__PREPROCESS__PREPROCESS_DEFAULT: *out = ENC_SERVICE_PREPROCESS_DEFAULT; break;
    case CIRRUS__V1__PREPROCESS__PREPROCESS_CLIP: *out = ENC_PREPROCESS_CLIP; break;
    case CIRRUS__V1__PREPROCESS__PREPROCESS_TARGETPAD: *out = ENC_PREPROCESS_TARGETPAD; break;
    case CIRRUS__V1__PREPROCESS__PREPROCESS_SQUAREPAD: *out = ENC_PREPROCESS_SQUAREPAD; break;
    default: return cr_error_set(CR_ERR_INVALID, "unknown preprocess value %d", (int)p);
    }
    return CR_OK;
}

static cr_err map_method(Cirrus__V1__ComposeMethod m, size_t i, int *out)
{
    if ((int)m < 0 || (int)m > ENC_COMPOSE_IMAGE)
        return cr_error_set(CR_ERR_INVALID, "query %zu: unknown compose method %d", i, (int)m);
    *out = (int)m; /* the proto values equal enc_compose_method; 0 = default */
    return CR_OK;
}

/* Prepares the job of an EncodeImage / EncodeText / Compose request. */
static cr_err prep_net_job(enc_server *srv, net_job *nj, const Cirrus__V1__Request *req)
{
    enc_service *s = srv->svc;
    int pp = ENC_SERVICE_PREPROCESS_DEFAULT;
    cr_err rc;

    switch (req->op_case) {
    case CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE: {
        const Cirrus__V1__EncodeImageRequest *r = req->encode_image;
        enc_blob *b;
        size_t n = r ? r->n_images : 0;
        nj->result_case = CIRRUS__V1__RESPONSE__RESULT_ENCODE_IMAGE;
        if (n == 0)
            return cr_error_set(CR_ERR_INVALID, "EncodeImage without images");
        if (n > ENC_SERVICE_MAX_IMAGES)
            return cr_error_set(CR_ERR_INVALID, "%zu images in one request (at most %d)", n,
                                ENC_SERVICE_MAX_IMAGES);
        rc = map_preprocess(r->preprocess, &pp);
        if (rc)
            return rc;
        b = calloc(n, sizeof *b);
        if (!b)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            b[i].data = r->images[i].data;
            b[i].len = r->images[i].len;
        }
        nj->j.normalize = r->normalize;
        rc = enc_service_prep_images(s, &nj->j, b, n, pp);
        free(b);
        return rc;
    }
    case CIRRUS__V1__REQUEST__OP_ENCODE_TEXT: {
        const Cirrus__V1__EncodeTextRequest *r = req->encode_text;
        nj->result_case = CIRRUS__V1__RESPONSE__RESULT_ENCODE_TEXT;
        if (!r || r->n_texts == 0)
            return cr_error_set(CR_ERR_INVALID, "EncodeText without texts");
        nj->j.normalize = r->normalize;
        return enc_service_prep_texts(s, &nj->j, (const char *const *)r->texts, r->n_texts);
    }
    case CIRRUS__V1__REQUEST__OP_COMPOSE: {
        const Cirrus__V1__ComposeRequest *r = req->compose;
        enc_service_query *q;
        size_t n = r ? r->n_queries : 0;
        nj->result_case = CIRRUS__V1__RESPONSE__RESULT_COMPOSE;
        if (n == 0)
            return cr_error_set(CR_ERR_INVALID, "Compose without queries");
        if (n > ENC_SERVICE_MAX_QUERIES)
            return cr_error_set(CR_ERR_INVALID, "%zu queries in one request (at most %d)", n,
                                ENC_SERVICE_MAX_QUERIES);
        rc = map_preprocess(r->preprocess, &pp);
        if (rc)
            return rc;
        q = calloc(n, sizeof *q);
        if (!q)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n && !rc; i++) {
            const Cirrus__V1__Composed *c = r->queries[i];
            const Cirrus__V1__Reference *ref = c->reference;
            rc = map_method(c->method, i, &q[i].method);
            if (rc)
                break;
            if (!ref || ref->ref_case == CIRRUS__V1__REFERENCE__REF__NOT_SET) {
                rc = cr_error_set(CR_ERR_INVALID, "query %zu has no reference", i);
            } else if (ref->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID) {
                rc = cr_error_set(CR_ERR_INVALID,
                                  "query %zu: item ids are resolved by the coordinator; send "
                                  "the reference as image bytes or a vector", i);
            } else if (ref->ref_case == CIRRUS__V1__REFERENCE__REF_IMAGE) {
                if (ref->image.len == 0)
                    rc = cr_error_set(CR_ERR_INVALID, "query %zu: empty reference image", i);
                q[i].image.data = ref->image.data;
                q[i].image.len = ref->image.len;
            } else {
                char what[64];
                snprintf(what, sizeof what, "reference vector of query %zu", i);
                rc = cr_validate_vector(ref->vector, (uint32_t)enc_service_embed_dim(s), what);
                if (!rc)
                    q[i].ref = ref->vector->values;
            }
            q[i].caption = c->caption;
            q[i].caption2 = c->caption2;
            q[i].prompt_template = c->prompt_template;
        }
        if (!rc)
            rc = enc_service_prep_compose(s, &nj->j, q, n, pp);
        free(q);
        return rc;
    }
    default:
        return cr_error_set(CR_ERR_INTERNAL, "not an encoder job");
    }
}

/* Pool thread: prepares an encode / compose request and queues it; the reply comes from the
 * inference thread through the kept call. */
static void submit_net_job(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    enc_server *srv = arg;
    net_job *nj = calloc(1, sizeof *nj);
    uint64_t recv_us = cr_svc_call_recv_us(call);
    uint32_t dl = req->deadline_ms ? req->deadline_ms : srv->o.default_deadline_ms;
    cr_err rc;

    if (!nj) {
        reply_status(call, req->id, CR_ERR_NOMEM, "out of memory");
        return;
    }
    /* The deadline holds from the request's receipt: preparing the images counts against it. */
    nj->j.start_us = recv_us;
    nj->j.deadline_us = recv_us + (uint64_t)dl * 1000u;
    nj->j.cancel = cr_svc_call_cancel(call);
    rc = prep_net_job(srv, nj, req);
    if (rc) {
        reply_status(call, req->id, rc, cr_error_message());
        net_job_free(nj);
        return;
    }
    nj->svc = srv->svc;
    nj->id = req->id;
    nj->j.done = net_done;
    /* Kept before the submit: the inference thread may answer before submit returns. */
    nj->call = cr_svc_call_keep(call);
    rc = enc_service_submit(srv->svc, &nj->j);
    if (rc) {
        reply_status(call, req->id, rc, cr_error_message());
        net_job_free(nj);
    }
}

static void do_stats(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    enc_server *srv = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__StatsResult r = CIRRUS__V1__STATS_RESULT__INIT;
    Cirrus__V1__EncoderStats e = CIRRUS__V1__ENCODER_STATS__INIT;
    enc_service_stats ss;
    char *methods[ENC_COMPOSE_IMAGE];
    size_t nm = 0;

    enc_service_stats_get(srv->svc, &ss);
    for (int m = ENC_COMPOSE_SEARLE; m <= ENC_COMPOSE_IMAGE; m++)
        if (enc_service_has_method(srv->svc, (enc_compose_method)m))
            methods[nm++] = (char *)enc_compose_method_name((enc_compose_method)m);
    e.model = (char *)enc_service_model_name(srv->svc);
    e.embed_dim = ss.embed_dim;
    e.queue_depth = ss.queue_depth;
    e.batches = ss.batches;
    e.requests = ss.requests;
    e.mean_batch_size = ss.mean_batch_size;
    e.p50_ms = ss.p50_ms;
    e.p99_ms = ss.p99_ms;
    e.preprocess = (char *)enc_preprocess_name(enc_service_preprocess(srv->svc));
    e.methods = methods;
    e.n_methods = nm;
    r.role = "encoder";
    r.dim = ss.embed_dim;
    r.uptime_s = (cr_clock_mono_ms() - srv->start_ms) / 1000;
    r.encoder = &e;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
    resp.stats = &r;
    cr_svc_reply_ok(call, req->id, &resp); /* a failed send is logged there */
}

static void do_health(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    (void)arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = "encoder";
    h.version = "0.1.0";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    cr_svc_reply_ok(call, req->id, &resp);
}

static const cr_svc_op enc_ops[] = {
    {CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE, CR_SVC_POOL, submit_net_job, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_ENCODE_TEXT, CR_SVC_POOL, submit_net_job, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_COMPOSE, CR_SVC_POOL, submit_net_job, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_STATS, CR_SVC_POOL, do_stats, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_HEALTH, CR_SVC_FRONT, do_health, NULL, NULL},
};

static const cr_svc_ops enc_table = {
    enc_ops, sizeof enc_ops / sizeof enc_ops[0],
    "operation not served by an encoder (it serves EncodeImage, EncodeText, Compose, Health "
    "and Stats)",
    NULL, NULL, NULL};

cr_err enc_server_open(enc_server **out, enc_service *s, const enc_server_opts *o)
{
    cr_svc_opts so = cr_svc_default_opts();
    enc_server *srv;
    cr_err rc;

    if (!s || !o || !o->bind)
        return cr_error_set(CR_ERR_INVALID, "enc_server_open: missing service or bind");
    srv = calloc(1, sizeof *srv);
    if (!srv)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    srv->svc = s;
    srv->o = *o;
    srv->start_ms = cr_clock_mono_ms();
    if (srv->o.workers < 1 || srv->o.workers > 64)
        srv->o.workers = 2;
    if (!srv->o.default_deadline_ms)
        srv->o.default_deadline_ms = 30000;
    if (!srv->o.drain_ms)
        srv->o.drain_ms = 30000;
    so.name = "encoder";
    so.bind = o->bind;
    so.zmq_ctx = o->zmq_ctx;
    so.curve = o->curve;
    so.workers = srv->o.workers;
    so.default_deadline_ms = srv->o.default_deadline_ms;
    so.max_frame = o->max_frame;
    so.drain_ms = srv->o.drain_ms;
    rc = cr_service_open(&srv->core, &so, &enc_table, srv);
    if (rc) {
        free(srv);
        return rc;
    }
    CR_INFO("encoder", "serving %s on %s with %d workers", enc_service_model_name(s),
            cr_service_endpoint(srv->core), srv->o.workers);
    *out = srv;
    return CR_OK;
}

const char *enc_server_endpoint(const enc_server *srv)
{
    return cr_service_endpoint(srv->core);
}

cr_err enc_server_close(enc_server **pp)
{
    enc_server *srv = pp ? *pp : NULL;
    cr_err rc;
    if (!srv)
        return CR_OK;
    *pp = NULL;
    CR_INFO("encoder", "stopping: finishing queued requests (at most %u ms)", srv->o.drain_ms);
    rc = cr_service_close(&srv->core);
    if (rc == CR_TIMEOUT) {
        /* a worker still decodes with srv: leave it to it */
        CR_ERROR("encoder", "%s", cr_error_message());
        return rc;
    }
    free(srv);
    return rc;
}

cr_err enc_server_run(enc_service *s, const enc_server_opts *o, volatile sig_atomic_t *stop)
{
    enc_server *srv = NULL;
    cr_err rc;
    if (!stop)
        return cr_error_set(CR_ERR_INVALID, "enc_server_run: no stop flag");
    rc = enc_server_open(&srv, s, o);
    if (rc)
        return rc;
    while (!*stop)
        cr_clock_sleep_ms(RUN_SLICE_MS);
    return enc_server_close(&srv);
}
