/* The encoder service in-process and over inproc ZeroMQ sockets, with the clip-tiny fixture:
 * parity of EncodeImage / EncodeText / Compose with direct forwards and the reference outputs,
 * dynamic batching under concurrent clients, overload, bad inputs, Health and Stats. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stb/stb_image_write.h>
#include <zlib.h>
#include <zmq.h>

#include "client/client.h"
#include "common/log.h"
#include "common/test.h"
#include "common/wire.h"
#include "encoder/image.h"
#include "encoder/safetensors.h"
#include "encoder/server.h"

#define DIM 64
#define NPNG 5

static char fix[1024];
static const char *png_names[NPNG] = {"img0_40x30_rgb.png", "img1_32x32_rgb.png",
                                      "img2_23x57_rgb.png", "img3_80x64_rgba.png",
                                      "img4_33x33_l.png"};
static const char *captions[] = {"is red and has short sleeves",
                                 "has a v-neck, isn't striped; costs $20!!",
                                 "  multiple   spaces\tand\nnewlines  ",
                                 "Café crème brûlée colour, naïve façade",
                                 "日本のTシャツ with 漢字 print",
                                 "👗 dress with 🌸 flowers"};

typedef struct srv {
    void *ctx;
    enc_service *svc;
    enc_server_opts o;
    enc_server *h;
} srv;

/* Returns once the server serves: no wait for readiness. */
static void srv_open(srv *s)
{
    CR_CHECK_MSG(enc_server_open(&s->h, s->svc, &s->o) == CR_OK, "%s", cr_error_message());
    CR_CHECK(s->h && strcmp(enc_server_endpoint(s->h), s->o.bind) == 0);
}

static void srv_start(srv *s, void *ctx, enc_service *svc, const char *ep)
{
    s->ctx = ctx;
    s->svc = svc;
    s->o = enc_server_default_opts();
    s->o.bind = ep;
    s->o.zmq_ctx = ctx;
    srv_open(s);
}

static void srv_stop(srv *s)
{
    CR_CHECK_MSG(enc_server_close(&s->h) == CR_OK, "%s", cr_error_message());
    CR_CHECK(s->h == NULL);
}

typedef struct blob {
    uint8_t *data;
    size_t len;
} blob;

static blob read_blob(const char *name)
{
    char path[1200];
    blob b = {0};
    FILE *f;
    long n;
    snprintf(path, sizeof path, "%s/images/%s", fix, name);
    f = fopen(path, "rb");
    if (!f)
        return b;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc((size_t)n);
    b.len = fread(b.data, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static float *expected(const char *name)
{
    char path[1200];
    enc_st *st = NULL;
    int64_t any[2] = {-1, -1};
    float *f = NULL;
    snprintf(path, sizeof path, "%s/expected.safetensors", fix);
    if (enc_st_open(&st, path) == CR_OK)
        enc_st_get_f32(st, name, 2, any, &f);
    enc_st_close(&st);
    return f;
}

static double rel_err(const float *a, const float *b, int d)
{
    double num = 0, den = 0;
    for (int i = 0; i < d; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void normalize(float *v, int d)
{
    double ss = 0;
    for (int i = 0; i < d; i++)
        ss += (double)v[i] * v[i];
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(ss));
}

static Cirrus__V1__Response *call(cirrus_client *c, Cirrus__V1__Request *req)
{
    Cirrus__V1__Response *resp = NULL;
    req->deadline_ms = 0;
    CR_CHECK_MSG(cirrus_client_call(c, req, 10000, &resp) == CR_OK, "%s", cr_error_message());
    return resp;
}

static Cirrus__V1__Response *encode_images(cirrus_client *c, const blob *b, size_t n, int norm)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeImageRequest r = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
    ProtobufCBinaryData imgs[8];
    for (size_t i = 0; i < n; i++) {
        imgs[i].data = b[i].data;
        imgs[i].len = b[i].len;
    }
    r.images = imgs;
    r.n_images = n;
    r.normalize = norm;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
    req.encode_image = &r;
    return call(c, &req);
}

static Cirrus__V1__Response *encode_texts(cirrus_client *c, const char **t, size_t n, int norm)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeTextRequest r = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
    r.texts = (char **)t;
    r.n_texts = n;
    r.normalize = norm;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
    req.encode_text = &r;
    return call(c, &req);
}

/* One composed query: a vector reference (ref != NULL) or image bytes. */
static Cirrus__V1__Response *compose1(cirrus_client *c, const float *ref, size_t ref_dim,
                                      const blob *img, const char *item, const char *caption,
                                      Cirrus__V1__ComposeMethod m)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ComposeRequest r = CIRRUS__V1__COMPOSE_REQUEST__INIT;
    Cirrus__V1__Composed q = CIRRUS__V1__COMPOSED__INIT, *qs[1] = {&q};
    Cirrus__V1__Reference rf;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    cirrus__v1__reference__init(&rf);
    if (ref) {
        v.values = (float *)ref;
        v.n_values = ref_dim;
        rf.ref_case = CIRRUS__V1__REFERENCE__REF_VECTOR;
        rf.vector = &v;
    } else if (img) {
        rf.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
        rf.image.data = img->data;
        rf.image.len = img->len;
    } else if (item) {
        rf.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
        rf.item_id = (char *)item;
    }
    q.reference = &rf;
    q.caption = (char *)caption;
    q.method = m;
    r.queries = qs;
    r.n_queries = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
    req.compose = &r;
    return call(c, &req);
}

static int code_of(const Cirrus__V1__Response *r)
{
    return r && r->status ? r->status->code : -1000;
}

static const char *msg_of(const Cirrus__V1__Response *r)
{
    return r && r->status && r->status->message ? r->status->message : "";
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_images(cirrus_client *c, enc_service *svc, blob *pngs)
{
    const enc_clip *m = enc_service_model(svc);
    int S = enc_clip_image_size(m);
    float *px = malloc((size_t)NPNG * 3 * S * S * sizeof *px), direct[NPNG * DIM];
    float *ref = expected("image_embeds");
    Cirrus__V1__Response *r;

    for (int i = 0; i < NPNG; i++) {
        enc_image *img = NULL;
        CR_CHECK(enc_image_decode(pngs[i].data, pngs[i].len, 0, &img) == CR_OK);
        CR_CHECK(enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, px + (size_t)i * 3 * S * S) ==
                 CR_OK);
        enc_image_free(&img);
    }
    CR_CHECK(enc_clip_encode_images(m, px, NPNG, direct) == CR_OK);
    r = encode_images(c, pngs, NPNG, 0);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    if (code_of(r) == 0) {
        CR_CHECK(r->result_case == CIRRUS__V1__RESPONSE__RESULT_ENCODE_IMAGE);
        CR_CHECK(r->encode_image->n_vectors == NPNG);
        for (int i = 0; i < NPNG && i < (int)r->encode_image->n_vectors; i++) {
            CR_CHECK(r->encode_image->vectors[i]->n_values == DIM);
            CR_CHECK_MSG(rel_err(r->encode_image->vectors[i]->values, direct + i * DIM, DIM) <
                             1e-5, "image %d vs direct", i);
            if (ref)
                CR_CHECK_MSG(rel_err(r->encode_image->vectors[i]->values, ref + i * DIM, DIM) <
                                 1e-3, "image %d vs reference", i);
        }
    }
    cirrus_response_free(r);
    /* normalize flag */
    r = encode_images(c, pngs + 1, 1, 1);
    CR_CHECK(code_of(r) == 0);
    if (code_of(r) == 0) {
        float v[DIM];
        memcpy(v, direct + DIM, sizeof v);
        normalize(v, DIM);
        CR_CHECK(rel_err(r->encode_image->vectors[0]->values, v, DIM) < 1e-5);
    }
    cirrus_response_free(r);
    /* the in-process call gives the same */
    {
        enc_blob b[NPNG];
        float out[NPNG * DIM];
        for (int i = 0; i < NPNG; i++) {
            b[i].data = pngs[i].data;
            b[i].len = pngs[i].len;
        }
        CR_CHECK(enc_service_embed_images(svc, b, NPNG, ENC_SERVICE_PREPROCESS_DEFAULT, 0, out) ==
                 CR_OK);
        CR_CHECK(rel_err(out, direct, NPNG * DIM) < 1e-5);
    }
    free(px);
    free(ref);
}

static void test_texts(cirrus_client *c, enc_service *svc)
{
    char long_text[1024] = ""; /* 90 words: past 77 tokens */
    const char *texts[7];
    int32_t tok[7 * ENC_TOKENIZER_CONTEXT];
    float direct[7 * DIM], *ref = expected("caption_embeds"), out[7 * DIM];
    int trunc[7];
    Cirrus__V1__Response *r;

    for (size_t i = 0, off = 0; i < 10; i++)
        off += (size_t)snprintf(long_text + off, sizeof long_text - off, "%s",
                                "the quick brown fox jumps over the lazy dog ");
    for (int i = 0; i < 6; i++)
        texts[i] = captions[i];
    texts[6] = long_text;
    for (int i = 0; i < 7; i++)
        CR_CHECK(enc_tokenizer_encode(enc_service_tokenizer(svc), texts[i],
                                      tok + i * ENC_TOKENIZER_CONTEXT, NULL, NULL) == CR_OK);
    CR_CHECK(enc_clip_encode_tokens(enc_service_model(svc), tok, 7, direct) == CR_OK);
    r = encode_texts(c, texts, 7, 0);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    if (code_of(r) == 0) {
        CR_CHECK(r->encode_text->n_vectors == 7 && r->encode_text->n_truncated == 7);
        for (int i = 0; i < 7 && i < (int)r->encode_text->n_vectors; i++) {
            CR_CHECK_MSG(rel_err(r->encode_text->vectors[i]->values, direct + i * DIM, DIM) < 1e-5,
                         "text %d", i);
            if (ref && i < 6)
                CR_CHECK_MSG(rel_err(r->encode_text->vectors[i]->values, ref + i * DIM, DIM) <
                                 1e-4, "text %d vs reference", i);
            CR_CHECK(r->encode_text->truncated[i] == (i == 6));
        }
    }
    cirrus_response_free(r);
    CR_CHECK(enc_service_embed_texts(svc, texts, 7, 0, out, trunc) == CR_OK);
    CR_CHECK(rel_err(out, direct, 7 * DIM) < 1e-5);
    CR_CHECK(trunc[6] == 1 && trunc[0] == 0);
    free(ref);
}

static void test_compose(cirrus_client *c, blob *pngs)
{
    float *img = expected("image_embeds"), *sum = expected("sum_out"),
          *searle = expected("composed_searle"), *comb = expected("combiner_out");
    Cirrus__V1__Response *r, *ri;

    if (!img || !sum || !searle || !comb) {
        CR_CHECK(!"expected tensors");
        goto out;
    }
    r = compose1(c, img, DIM, NULL, NULL, captions[0], CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SUM);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    if (code_of(r) == 0)
        CR_CHECK(rel_err(r->compose->vectors[0]->values, sum, DIM) < 1e-4);
    cirrus_response_free(r);
    r = compose1(c, img + 2 * DIM, DIM, NULL, NULL, captions[2],
                 CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SEARLE);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    if (code_of(r) == 0) {
        normalize(searle + 2 * DIM, DIM);
        CR_CHECK(rel_err(r->compose->vectors[0]->values, searle + 2 * DIM, DIM) < 1e-4);
    }
    cirrus_response_free(r);
    r = compose1(c, img + DIM, DIM, NULL, NULL, captions[1],
                 CIRRUS__V1__COMPOSE_METHOD__COMPOSE_COMBINER);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    if (code_of(r) == 0)
        CR_CHECK(rel_err(r->compose->vectors[0]->values, comb + DIM, DIM) < 1e-4);
    cirrus_response_free(r);

    /* From image bytes == from that image's raw embedding (default method: searle). */
    ri = encode_images(c, pngs + 1, 1, 0);
    r = compose1(c, NULL, 0, pngs + 1, NULL, "is darker", 0);
    CR_CHECK_MSG(code_of(r) == 0 && code_of(ri) == 0, "%s", msg_of(r));
    if (code_of(r) == 0 && code_of(ri) == 0) {
        Cirrus__V1__Response *rv = compose1(c, ri->encode_image->vectors[0]->values, DIM, NULL,
                                            NULL, "is darker", 0);
        CR_CHECK(code_of(rv) == 0);
        if (code_of(rv) == 0)
            CR_CHECK(rel_err(r->compose->vectors[0]->values, rv->compose->vectors[0]->values,
                             DIM) < 1e-5);
        cirrus_response_free(rv);
    }
    cirrus_response_free(r);
    cirrus_response_free(ri);

    /* Bad references. */
    r = compose1(c, NULL, 0, NULL, "sku-1", "red", 0);
    CR_CHECK(code_of(r) == CR_ERR_INVALID &&
             strstr(msg_of(r), "item ids are resolved by the coordinator"));
    cirrus_response_free(r);
    r = compose1(c, img, DIM - 1, NULL, NULL, "red", 0);
    CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "63 dimensions, expected 64"),
                 "%s", msg_of(r));
    cirrus_response_free(r);
    r = compose1(c, NULL, 0, NULL, NULL, "red", 0);
    CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "no reference"));
    cirrus_response_free(r);
    {
        float bad[DIM];
        memcpy(bad, img, sizeof bad);
        bad[5] = NAN;
        r = compose1(c, bad, DIM, NULL, NULL, "red", 0);
        CR_CHECK(code_of(r) == CR_ERR_INVALID);
        cirrus_response_free(r);
    }
    r = compose1(c, img, DIM, NULL, NULL, "red", (Cirrus__V1__ComposeMethod)42);
    CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "unknown compose method"));
    cirrus_response_free(r);
out:
    free(img);
    free(sum);
    free(searle);
    free(comb);
}

static void test_bad_inputs(cirrus_client *c, blob *pngs)
{
    blob two[2] = {pngs[0], {(uint8_t *)"\x89PNG\r\n\x1a\nthis is not a png", 26}};
    blob pdf = {(uint8_t *)"%PDF-1.4 not an image at all", 28};
    Cirrus__V1__Response *r;

    r = encode_images(c, two, 2, 0);
    CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "image 1"), "%s", msg_of(r));
    cirrus_response_free(r);
    r = encode_images(c, &pdf, 1, 0);
    CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "image 0") &&
                     strstr(msg_of(r), "unsupported image format"),
                 "%s", msg_of(r));
    cirrus_response_free(r);
    r = encode_images(c, pngs, 0, 0);
    CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "without images"));
    cirrus_response_free(r);
    r = encode_texts(c, NULL, 0, 0);
    CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "without texts"));
    cirrus_response_free(r);
    {
        const char *t[2] = {"ok", "bad \xff\xfe utf-8"};
        r = encode_texts(c, t, 2, 0);
        CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "text 1"), "%s",
                     msg_of(r));
        cirrus_response_free(r);
    }
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
        req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
        req.compose = &cr;
        r = call(c, &req);
        CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "without queries"));
        cirrus_response_free(r);
    }
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        r = call(c, &req);
        CR_CHECK(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "without an operation"));
        cirrus_response_free(r);
    }
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__SnapshotRequest sn = CIRRUS__V1__SNAPSHOT_REQUEST__INIT;
        req.op_case = CIRRUS__V1__REQUEST__OP_SNAPSHOT;
        req.snapshot = &sn;
        r = call(c, &req);
        CR_CHECK(code_of(r) == CR_ERR_UNSUPPORTED);
        cirrus_response_free(r);
    }
}

/* A malformed frame from a raw DEALER gets a PROTO reply, not silence. */
static void test_raw_frame(void *ctx, const char *ep)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    char buf[4096];
    int n, linger = 0, to = 5000;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &to, sizeof to);
    CR_CHECK(zmq_connect(d, ep) == 0);
    zmq_send(d, "\xff\xff\xff\xff garbage", 12, 0);
    n = zmq_recv(d, buf, sizeof buf, 0);
    CR_CHECK(n > 0);
    if (n > 0) {
        Cirrus__V1__Response *r =
            cirrus__v1__response__unpack(NULL, (size_t)n, (const uint8_t *)buf);
        CR_CHECK(r && r->status && r->status->code == CR_ERR_PROTO);
        if (r)
            cirrus__v1__response__free_unpacked(r, NULL);
    }
    zmq_close(d);
}

typedef struct hammer {
    void *ctx;
    const char *ep;
    int ok, failed;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    cirrus_client_opts co = cirrus_client_default_opts();
    cirrus_client *c = NULL;
    co.zmq_ctx = h->ctx;
    if (cirrus_client_open(&c, h->ep, &co))
        return NULL;
    for (int i = 0; i < 12; i++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__EncodeTextRequest r = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
        Cirrus__V1__Response *resp = NULL;
        char *t[1] = {(char *)captions[i % 6]};
        r.texts = t;
        r.n_texts = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
        req.encode_text = &r;
        if (cirrus_client_call(c, &req, 10000, &resp) == CR_OK && resp->status->code == 0 &&
            resp->encode_text->n_vectors == 1)
            h->ok++;
        else
            h->failed++;
        cirrus_response_free(resp);
    }
    cirrus_client_close(&c);
    return NULL;
}

static void test_concurrency(void *ctx, const char *ep, enc_service *svc)
{
    hammer h[6];
    pthread_t t[6];
    enc_service_stats before, after;
    int ok = 0, failed = 0;
    enc_service_stats_get(svc, &before);
    for (int i = 0; i < 6; i++) {
        memset(&h[i], 0, sizeof h[i]);
        h[i].ctx = ctx;
        h[i].ep = ep;
        pthread_create(&t[i], NULL, hammer_main, &h[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ok += h[i].ok;
        failed += h[i].failed;
    }
    enc_service_stats_get(svc, &after);
    CR_CHECK(ok == 72 && failed == 0);
    {
        uint64_t batches = after.batches - before.batches, items = after.items - before.items;
        double mean = batches ? (double)items / (double)batches : 0;
        printf("concurrency: 72 single-text requests from 6 clients in %llu forward passes "
               "(mean batch %.2f)\n", (unsigned long long)batches, mean);
        CR_CHECK_MSG(mean > 1.0, "mean batch %.2f", mean);
    }
}

static void test_stats_health(cirrus_client *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__HealthRequest hr = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *r;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    r = call(c, &req);
    CR_CHECK(code_of(r) == 0 && r->stats && r->stats->encoder);
    if (code_of(r) == 0 && r->stats && r->stats->encoder) {
        const Cirrus__V1__EncoderStats *e = r->stats->encoder;
        int has_searle = 0, has_comb = 0;
        CR_CHECK(strcmp(r->stats->role, "encoder") == 0);
        CR_CHECK(r->stats->dim == DIM && e->embed_dim == DIM);
        CR_CHECK(strcmp(e->model, "clip-openai-names.safetensors") == 0);
        CR_CHECK(strcmp(e->preprocess, "clip") == 0);
        CR_CHECK(e->batches > 0 && e->requests >= e->batches / 2);
        CR_CHECK(e->mean_batch_size > 1.0);
        CR_CHECK(e->p50_ms > 0 && e->p99_ms >= e->p50_ms);
        for (size_t i = 0; i < e->n_methods; i++) {
            has_searle |= strcmp(e->methods[i], "searle") == 0;
            has_comb |= strcmp(e->methods[i], "combiner") == 0;
        }
        CR_CHECK(has_searle && has_comb && e->n_methods == 5);
        printf("stats: %llu requests, %llu batches, mean batch %.2f, p50 %.3f ms, p99 %.3f ms\n",
               (unsigned long long)e->requests, (unsigned long long)e->batches,
               e->mean_batch_size, e->p50_ms, e->p99_ms);
    }
    cirrus_response_free(r);
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &hr;
    r = call(c, &req);
    CR_CHECK(code_of(r) == 0 && r->health && r->health->ready &&
             strcmp(r->health->role, "encoder") == 0);
    cirrus_response_free(r);
}

/* A second service: tiny pixel limit, a queue of 2 and a long batch wait (so requests stay
 * queued): the third pipelined request is refused as overloaded. */
static void test_limits(void *ctx, const char *model, blob *pngs)
{
    enc_service_opts o = enc_service_default_opts();
    enc_service *svc = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    cirrus_client *c = NULL;
    srv s;
    Cirrus__V1__Response *r;
    int ok = 0, over = 0, other = 0;

    o.model = model;
    o.threads = 1;
    o.max_pixels = 1000; /* img0 is 40x30 = 1200 pixels */
    o.queue = 2;
    o.max_batch = 100;
    o.batch_wait_ms = 300;
    CR_CHECK_MSG(enc_service_open(&svc, &o) == CR_OK, "%s", cr_error_message());
    if (!svc)
        return;
    srv_start(&s, ctx, svc, "inproc://encoder-limits");
    co.zmq_ctx = ctx;
    CR_CHECK(cirrus_client_open(&c, "inproc://encoder-limits", &co) == CR_OK);

    r = encode_images(c, pngs, 1, 0);
    CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "image 0"), "%s", msg_of(r));
    printf("pixel limit: %s\n", msg_of(r));
    cirrus_response_free(r);
    r = encode_images(c, pngs + 1, 1, 0); /* 32x32 = 1024 > 1000 too */
    CR_CHECK(code_of(r) == CR_ERR_INVALID);
    cirrus_response_free(r);

    for (int i = 0; i < 8; i++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__EncodeTextRequest tr = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
        char *t[1] = {(char *)captions[0]};
        uint64_t id;
        tr.texts = t;
        tr.n_texts = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
        req.encode_text = &tr;
        CR_CHECK(cirrus_client_send(c, &req, &id) == CR_OK);
    }
    for (int i = 0; i < 8; i++) {
        r = NULL;
        if (cirrus_client_recv(c, 5000, &r) != CR_OK) {
            other++;
            continue;
        }
        if (code_of(r) == 0)
            ok++;
        else if (code_of(r) == CR_ERR_OVERLOADED && strstr(msg_of(r), "overloaded"))
            over++;
        else
            other++;
        cirrus_response_free(r);
    }
    printf("overload: %d served, %d refused as overloaded, %d other\n", ok, over, other);
    CR_CHECK(ok >= 2 && over >= 1 && other == 0 && ok + over == 8);
    {
        enc_service_stats st;
        enc_service_stats_get(svc, &st);
        CR_CHECK(st.rejected == (uint64_t)over);
    }
    cirrus_client_close(&c);
    srv_stop(&s);
    enc_service_close(&svc);
    CR_CHECK(svc == NULL);
}

/* ---- issue 10: the work a request may cost, deadlines, allowed preprocessing, drain ---- */

static void to_blob(void *ctx, void *data, int size)
{
    blob *b = ctx;
    uint8_t *p = realloc(b->data, b->len + (size_t)size);
    if (!p)
        abort();
    memcpy(p + b->len, data, (size_t)size);
    b->data = p;
    b->len += (size_t)size;
}

/* A black w x h PNG (channels 1 or 3). */
static blob black_png(int w, int h, int channels)
{
    blob b = {0};
    uint8_t *px = calloc((size_t)w * (size_t)h, (size_t)channels);
    if (px)
        stbi_write_png_to_func(to_blob, &b, w, h, channels, px, w * channels);
    free(px);
    return b;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* A black 8-bit gray w x h PNG, compressed with zlib (stb's writer makes it 10x larger,
 * and large frames are slow under sanitizers). */
static blob black_png_small(int w, int h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t raw_n = (size_t)h * ((size_t)w + 1);
    uint8_t *raw = calloc(raw_n, 1), ihdr[13] = {0};
    uLongf zn = compressBound((uLong)raw_n);
    blob b = {malloc(8 + 25 + 12 + zn + 12), 0};
    const char *types[3] = {"IHDR", "IDAT", "IEND"};
    uint8_t *z = malloc(zn);
    if (!raw || !z || !b.data || compress2(z, &zn, raw, (uLong)raw_n, 9) != Z_OK)
        abort();
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8; /* depth; color type 0 = gray */
    memcpy(b.data, sig, 8);
    b.len = 8;
    for (int c = 0; c < 3; c++) {
        const uint8_t *d = c == 0 ? ihdr : z;
        size_t n = c == 0 ? 13 : c == 1 ? zn : 0;
        uLong crc = crc32(0, (const Bytef *)types[c], 4);
        put_be32(b.data + b.len, (uint32_t)n);
        memcpy(b.data + b.len + 4, types[c], 4);
        if (n)
            memcpy(b.data + b.len + 8, d, n);
        crc = crc32(crc, d, (uInt)n);
        put_be32(b.data + b.len + 8 + n, (uint32_t)crc);
        b.len += 12 + n;
    }
    free(raw);
    free(z);
    return b;
}

/* A 1 x 1 PNG whose header claims w x h: decoding it fails, reading its header does not. */
static blob header_only_png(uint32_t w, uint32_t h)
{
    blob b = black_png(1, 1, 3);
    for (int k = 0; b.data && k < 4; k++) {
        b.data[16 + k] = (uint8_t)(w >> (24 - 8 * k));
        b.data[20 + k] = (uint8_t)(h >> (24 - 8 * k));
    }
    return b;
}

/* A 24-bit BMP header claiming w x h, cut at `total` bytes (stb reads the rest as zeros). */
static blob short_bmp(int w, int h, size_t total)
{
    blob b = {calloc(1, total), total};
    uint32_t v[] = {(uint32_t)total, 0, 54, 40, (uint32_t)w, (uint32_t)h};
    if (!b.data)
        return b;
    b.data[0] = 'B';
    b.data[1] = 'M';
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++)
            b.data[2 + 4 * i + k] = (uint8_t)(v[i] >> (8 * k));
    b.data[26] = 1;
    b.data[28] = 24;
    return b;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* EncodeImage of n images (the same blob when `same`), with a preprocessing and deadline. */
static Cirrus__V1__Response *encode_images_pp(cirrus_client *c, const blob *b, size_t n,
                                              int same, Cirrus__V1__Preprocess pp,
                                              uint32_t deadline_ms)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeImageRequest r = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
    ProtobufCBinaryData *imgs = calloc(n, sizeof *imgs);
    Cirrus__V1__Response *resp = NULL;
    for (size_t i = 0; imgs && i < n; i++) {
        imgs[i].data = b[same ? 0 : i].data;
        imgs[i].len = b[same ? 0 : i].len;
    }
    r.images = imgs;
    r.n_images = n;
    r.preprocess = pp;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
    req.encode_image = &r;
    req.deadline_ms = deadline_ms;
    CR_CHECK_MSG(cirrus_client_call(c, &req, 20000, &resp) == CR_OK, "%s", cr_error_message());
    free(imgs);
    return resp;
}

typedef struct svc_srv {
    enc_service *svc;
    srv s;
    cirrus_client *c;
} svc_srv;

static int svc_srv_open(svc_srv *x, void *ctx, const enc_service_opts *o, const char *ep,
                        uint32_t drain_ms)
{
    cirrus_client_opts co = cirrus_client_default_opts();
    memset(x, 0, sizeof *x);
    CR_CHECK_MSG(enc_service_open(&x->svc, o) == CR_OK, "%s", cr_error_message());
    if (!x->svc)
        return -1;
    x->s.ctx = ctx;
    x->s.svc = x->svc;
    x->s.o = enc_server_default_opts();
    x->s.o.bind = ep;
    x->s.o.zmq_ctx = ctx;
    if (drain_ms)
        x->s.o.drain_ms = drain_ms;
    srv_open(&x->s);
    if (!x->s.h)
        return -1;
    co.zmq_ctx = ctx;
    CR_CHECK(cirrus_client_open(&x->c, ep, &co) == CR_OK);
    return x->c ? 0 : -1;
}

static void svc_srv_close(svc_srv *x)
{
    cirrus_client_close(&x->c);
    if (x->s.h)
        srv_stop(&x->s);
    enc_service_close(&x->svc);
}

/* Limits on decoded pixels, per-image work and per-request work, all checked from the image
 * headers before anything is decoded. */
static void test_work_limits(void *ctx, const char *model, blob *pngs)
{
    enc_service_opts o = enc_service_default_opts();
    svc_srv x;
    Cirrus__V1__Response *r;
    enc_service_stats before, after;
    blob big = header_only_png(8000, 8000), bmp = short_bmp(32272, 16, 150);
    uint64_t t0;

    o.model = model;
    o.threads = 1;
    o.allow_preprocess = (1u << ENC_PREPROCESS_TARGETPAD) | (1u << ENC_PREPROCESS_SQUAREPAD);
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-work", 0) == 0) {
        /* 256 images of 8000 x 8000 (each under the pixel limit): refused as a whole before
         * image 0 is decoded (decoding it would say "corrupt"). */
        enc_service_stats_get(x.svc, &before);
        t0 = now_ms();
        r = encode_images_pp(x.c, &big, 256, 1, 0, 0);
        printf("256 x 8000x8000: %s (%llu ms)\n", msg_of(r),
               (unsigned long long)(now_ms() - t0));
        CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "max-request-work") &&
                         !strstr(msg_of(r), "corrupt"), "%d %s", code_of(r), msg_of(r));
        CR_CHECK(now_ms() - t0 < 1000);
        cirrus_response_free(r);
        /* the 150-byte BMP of 32272 x 16, squarepad and targetpad: cheap now */
        for (int k = 0; k < 2; k++) {
            t0 = now_ms();
            r = encode_images_pp(x.c, &bmp, 1, 1,
                                 k ? CIRRUS__V1__PREPROCESS__PREPROCESS_TARGETPAD
                                   : CIRRUS__V1__PREPROCESS__PREPROCESS_SQUAREPAD, 0);
            printf("150-byte BMP 32272x16 %s: code %d (%llu ms)\n", k ? "targetpad" : "squarepad",
                   code_of(r), (unsigned long long)(now_ms() - t0));
            CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
            CR_CHECK_MSG(now_ms() - t0 < 2000, "%llu ms", (unsigned long long)(now_ms() - t0));
            cirrus_response_free(r);
        }
        enc_service_stats_get(x.svc, &after);
        CR_CHECK(after.batches - before.batches == 2);
    }
    svc_srv_close(&x);

    /* a per-image limit below what img0 (40 x 30) costs */
    o.max_image_work = 2000;
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-work2", 0) == 0) {
        r = encode_images_pp(x.c, pngs, 1, 1, 0, 0);
        CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "image 0") &&
                         strstr(msg_of(r), "max-image-work"), "%d %s", code_of(r), msg_of(r));
        printf("per-image limit: %s\n", msg_of(r));
        cirrus_response_free(r);
    }
    svc_srv_close(&x);

    /* a per-request limit: one img0 (1200 decoded pixels, well under 30000 in all) fits,
     * 26 of them (at least 26 x 1200 = 31200) do not */
    o.max_image_work = 0;
    o.max_request_work = 30000;
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-work3", 0) == 0) {
        r = encode_images_pp(x.c, pngs, 1, 1, 0, 0);
        CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
        cirrus_response_free(r);
        r = encode_images_pp(x.c, pngs, 26, 1, 0, 0);
        CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "max-request-work"),
                     "%d %s", code_of(r), msg_of(r));
        printf("per-request limit: %s\n", msg_of(r));
        cirrus_response_free(r);
        /* the same for the reference images of a Compose */
        {
            Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
            Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
            Cirrus__V1__Composed q[26], *qs[26];
            Cirrus__V1__Reference rf;
            cirrus__v1__reference__init(&rf);
            rf.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
            rf.image.data = pngs[0].data;
            rf.image.len = pngs[0].len;
            for (int i = 0; i < 26; i++) {
                cirrus__v1__composed__init(&q[i]);
                q[i].reference = &rf;
                q[i].caption = "is red";
                q[i].method = CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SUM;
                qs[i] = &q[i];
            }
            cr.queries = qs;
            cr.n_queries = 26;
            req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
            req.compose = &cr;
            r = call(x.c, &req);
            CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "max-request-work") &&
                             strstr(msg_of(r), "reference image of query"),
                         "%d %s", code_of(r), msg_of(r));
            cirrus_response_free(r);
            cr.n_queries = 1;
            r = call(x.c, &req);
            CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
            cirrus_response_free(r);
        }
    }
    svc_srv_close(&x);
    free(big.data);
    free(bmp.data);
}

/* A request whose deadline passes while its images are being prepared is answered
 * DEADLINE_EXCEEDED at once, without preparing the rest and without a forward pass. Under
 * TSan, large inproc frames take minutes to unpack (race-report scans in protobuf's
 * memcpy) and each image ~1 s: 8 images there, and a bound scaled to match. */
#if defined(__SANITIZE_THREAD__)
#define DL_IMAGES 8
#define DL_LIMIT_MS 4000
#else
#define DL_IMAGES 128
#define DL_LIMIT_MS 1200
#endif
static void test_deadline(void *ctx, const char *model)
{
    enc_service_opts o = enc_service_default_opts();
    svc_srv x;
    blob png = black_png_small(4000, 4000);
    Cirrus__V1__Response *r;
    enc_service_stats before, after;
    uint64_t t0, ms;

    o.model = model;
    o.threads = 1;
    o.max_image_work = (uint64_t)1 << 40;
    o.max_request_work = (uint64_t)1 << 40;
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-deadline", 0) == 0) {
        enc_image *img = NULL;
        float *px = malloc(sizeof(float) * 3 * 32 * 32);
        t0 = now_ms();
        CR_CHECK(enc_image_decode(png.data, png.len, 0, &img) == CR_OK);
        CR_CHECK(px && enc_image_preprocess(img, ENC_PREPROCESS_CLIP, 32, px) == CR_OK);
        ms = now_ms() - t0;
        printf("one 4000x4000 image: %llu ms to decode and preprocess\n",
               (unsigned long long)ms);
        enc_image_free(&img);
        free(px);
        enc_service_stats_get(x.svc, &before);
        t0 = now_ms();
        r = encode_images_pp(x.c, &png, DL_IMAGES, 1, 0, 300);
        ms = now_ms() - t0;
        enc_service_stats_get(x.svc, &after);
        printf("%d x 4000x4000 (%zu bytes each), deadline 300 ms: code %d '%s' after %llu ms\n",
               DL_IMAGES, png.len, code_of(r), msg_of(r), (unsigned long long)ms);
        CR_CHECK_MSG(code_of(r) == CR_ERR_DEADLINE && strstr(msg_of(r), "deadline"), "%d %s",
                     code_of(r), msg_of(r));
        CR_CHECK_MSG(ms < DL_LIMIT_MS, "answered after %llu ms", (unsigned long long)ms);
        CR_CHECK(after.batches == before.batches);
        cirrus_response_free(r);
    }
    svc_srv_close(&x);
    free(png.data);
}

/* A request larger than max_batch runs as several forward passes, its deadline checked
 * before each: 1024 texts at one per pass, with a 150 ms deadline, stop part way. */
static void test_deadline_forwards(void *ctx, const char *model)
{
    enc_service_opts o = enc_service_default_opts();
    svc_srv x;
    const char **texts = malloc(1024 * sizeof *texts);
    uint64_t t0, ms;

    o.model = model;
    o.threads = 1;
    o.max_batch = 1;
    for (int i = 0; texts && i < 1024; i++)
        texts[i] = captions[i % 6];
    if (texts && svc_srv_open(&x, ctx, &o, "inproc://encoder-deadline2", 0) == 0) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__EncodeTextRequest tr = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
        Cirrus__V1__Response *r = NULL;
        tr.texts = (char **)texts;
        tr.n_texts = 1024;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
        req.encode_text = &tr;
        req.deadline_ms = 150;
        t0 = now_ms();
        r = NULL;
        CR_CHECK(cirrus_client_call(x.c, &req, 20000, &r) == CR_OK);
        ms = now_ms() - t0;
        printf("1024 texts, one per forward, deadline 150 ms: code %d '%s' after %llu ms\n",
               code_of(r), msg_of(r), (unsigned long long)ms);
        CR_CHECK_MSG(code_of(r) == CR_ERR_DEADLINE, "%d %s", code_of(r), msg_of(r));
        cirrus_response_free(r);
        /* without a tight deadline the same request completes */
        req.deadline_ms = 60000;
        t0 = now_ms();
        r = NULL;
        CR_CHECK(cirrus_client_call(x.c, &req, 60000, &r) == CR_OK);
        printf("the same with a 60 s deadline: code %d after %llu ms\n", code_of(r),
               (unsigned long long)(now_ms() - t0));
        CR_CHECK_MSG(code_of(r) == 0 && r->encode_text && r->encode_text->n_vectors == 1024,
                     "%s", msg_of(r));
        cirrus_response_free(r);
    }
    svc_srv_close(&x);
    free(texts);
}

/* By default a server accepts only its own preprocessing. */
static void test_allowed_preprocess(cirrus_client *c, void *ctx, const char *model, blob *pngs)
{
    enc_service_opts o = enc_service_default_opts();
    svc_srv x;
    Cirrus__V1__Response *r;

    r = encode_images_pp(c, pngs, 1, 1, CIRRUS__V1__PREPROCESS__PREPROCESS_SQUAREPAD, 0);
    CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "squarepad") &&
                     strstr(msg_of(r), "allow-preprocess"), "%d %s", code_of(r), msg_of(r));
    printf("not allowed: %s\n", msg_of(r));
    cirrus_response_free(r);
    r = encode_images_pp(c, pngs, 1, 1, CIRRUS__V1__PREPROCESS__PREPROCESS_CLIP, 0);
    CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
    cirrus_response_free(r);
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
        Cirrus__V1__Composed q = CIRRUS__V1__COMPOSED__INIT, *qs[1] = {&q};
        Cirrus__V1__Reference rf;
        cirrus__v1__reference__init(&rf);
        rf.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
        rf.image.data = pngs[0].data;
        rf.image.len = pngs[0].len;
        q.reference = &rf;
        q.caption = "is red";
        cr.queries = qs;
        cr.n_queries = 1;
        cr.preprocess = CIRRUS__V1__PREPROCESS__PREPROCESS_TARGETPAD;
        req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
        req.compose = &cr;
        r = call(c, &req);
        CR_CHECK_MSG(code_of(r) == CR_ERR_INVALID && strstr(msg_of(r), "targetpad"), "%d %s",
                     code_of(r), msg_of(r));
        cirrus_response_free(r);
    }
    o.model = model;
    o.threads = 1;
    o.allow_preprocess = 1u << ENC_PREPROCESS_SQUAREPAD;
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-allow", 0) == 0) {
        r = encode_images_pp(x.c, pngs, 1, 1, CIRRUS__V1__PREPROCESS__PREPROCESS_SQUAREPAD, 0);
        CR_CHECK_MSG(code_of(r) == 0, "%s", msg_of(r));
        cirrus_response_free(r);
        r = encode_images_pp(x.c, pngs, 1, 1, CIRRUS__V1__PREPROCESS__PREPROCESS_TARGETPAD, 0);
        CR_CHECK(code_of(r) == CR_ERR_INVALID);
        cirrus_response_free(r);
    }
    svc_srv_close(&x);
}

/* Stopping a server whose request is still queued (a 10 s batch wait) returns within its
 * drain limit; the request completes later without touching the stopped server. */
static void test_drain_timeout(void *ctx, const char *model)
{
    enc_service_opts o = enc_service_default_opts();
    svc_srv x;
    uint64_t t0, ms;

    o.model = model;
    o.threads = 1;
    o.max_batch = 1000;
    o.batch_wait_ms = 10000;
    if (svc_srv_open(&x, ctx, &o, "inproc://encoder-drain", 300) == 0) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__EncodeTextRequest tr = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
        char *t[1] = {(char *)captions[0]};
        enc_service_stats st;
        uint64_t id;
        tr.texts = t;
        tr.n_texts = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
        req.encode_text = &tr;
        CR_CHECK(cirrus_client_send(x.c, &req, &id) == CR_OK);
        t0 = now_ms();
        do {
            enc_service_stats_get(x.svc, &st);
        } while (st.queue_depth == 0 && now_ms() - t0 < 5000 && usleep(1000) == 0);
        CR_CHECK(st.queue_depth == 1);
        t0 = now_ms();
        srv_stop(&x.s);
        ms = now_ms() - t0;
        printf("stop with a request queued behind a 10 s batch wait: returned after %llu ms\n",
               (unsigned long long)ms);
        CR_CHECK_MSG(ms < 3000, "%llu ms", (unsigned long long)ms);
        enc_service_close(&x.svc); /* runs the queued request; its server is gone */
        cirrus_client_close(&x.c);
    }
    svc_srv_close(&x);
}

static void test_open_errors(const char *model)
{
    enc_service_opts o = enc_service_default_opts();
    enc_service *svc = NULL;
    CR_CHECK(enc_service_open(&svc, &o) == CR_ERR_INVALID && !svc);
    o.model = "/nonexistent/model.safetensors";
    CR_CHECK(enc_service_open(&svc, &o) < 0 && !svc);
    o.model = model;
    o.method = ENC_COMPOSE_SEARLE; /* no phi given */
    CR_CHECK(enc_service_open(&svc, &o) == CR_ERR_INVALID && !svc);
    CR_CHECK_MSG(strstr(cr_error_message(), "--phi") != NULL, "%s", cr_error_message());
}

int main(void)
{
    const char *shared = cr_test_shared_dir();
    char model[1200], phi[1200], comb[1200];
    enc_service_opts o = enc_service_default_opts();
    enc_service *svc = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    cirrus_client *c = NULL;
    blob pngs[NPNG];
    void *ctx;
    srv s;

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    snprintf(fix, sizeof fix, "%s/fixtures/clip-tiny", shared);
    snprintf(model, sizeof model, "%s/clip-openai-names.safetensors", fix);
    snprintf(phi, sizeof phi, "%s/phi.safetensors", fix);
    snprintf(comb, sizeof comb, "%s/combiner.safetensors", fix);
    if (access(model, R_OK) != 0) {
        printf("SKIP: fixture model %s not found\n", model);
        return 77;
    }
    for (int i = 0; i < NPNG; i++) {
        pngs[i] = read_blob(png_names[i]);
        CR_CHECK(pngs[i].data != NULL);
    }
    o.model = model;
    o.phi = phi;
    o.combiner = comb;
    o.threads = 1;
    o.batch_wait_ms = 5;
    CR_CHECK_MSG(enc_service_open(&svc, &o) == CR_OK, "%s", cr_error_message());
    if (!svc)
        return CR_TEST_END();
    CR_CHECK(enc_service_embed_dim(svc) == DIM);
    CR_CHECK(enc_service_default_method(svc) == ENC_COMPOSE_SEARLE);

    ctx = zmq_ctx_new();
    srv_start(&s, ctx, svc, "inproc://encoder-test");
    co.zmq_ctx = ctx;
    CR_CHECK(cirrus_client_open(&c, "inproc://encoder-test", &co) == CR_OK);

    test_images(c, svc, pngs);
    test_texts(c, svc);
    test_compose(c, pngs);
    test_bad_inputs(c, pngs);
    test_raw_frame(ctx, "inproc://encoder-test");
    test_concurrency(ctx, "inproc://encoder-test", svc);
    test_stats_health(c);
    test_limits(ctx, model, pngs);
    test_allowed_preprocess(c, ctx, model, pngs);
    test_work_limits(ctx, model, pngs);
    test_deadline(ctx, model);
    test_deadline_forwards(ctx, model);
    test_drain_timeout(ctx, model);
    test_open_errors(model);

    cirrus_client_close(&c);
    srv_stop(&s);
    enc_service_close(&svc);
    zmq_ctx_term(ctx);
    for (int i = 0; i < NPNG; i++)
        free(pngs[i].data);
    return CR_TEST_END();
}
