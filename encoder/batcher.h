/* batcher.h — the encoder service: CLIP model + tokenizer + composition heads behind one
 * dynamic batcher. In-process callers use it directly; encoder/server.h serves it over ZeroMQ.
 *
 *     enc_service_opts o = enc_service_default_opts();
 *     o.model = "ViT-B-32.safetensors";
 *     enc_service *svc = NULL;
 *     if (enc_service_open(&svc, &o)) die(cr_error_message());
 *     // blocks until the batch holding the call has run:
 *     rc = enc_service_embed_texts(svc, texts, n, 1, out, truncated);
 *     enc_service_close(&svc);
 *
 * Threads. The service owns ONE inference thread: every forward pass (image tower, text
 * tower, composition) runs there, with `threads` OpenBLAS threads (process-wide, set at open),
 * so that the inference never oversubscribes the cores. Callers (server workers or in-process
 * callers) decode, preprocess and tokenize on their own threads, then queue a request and the
 * inference thread groups queued requests of the same kind — up to `max_batch` images / texts /
 * queries, or until the oldest has waited `batch_wait_ms` — into one forward pass. The queue
 * holds at most `queue` requests; past that a request fails at once with CR_ERR_OVERLOADED.
 *
 * Every enc_service_* call below is thread-safe, except open/close. Several servers may run
 * on one service at once (e.g. tcp:// and inproc://). enc_service_close() must not race with
 * any other call on the handle: close every server first.
 */
#ifndef ENC_BATCHER_H
#define ENC_BATCHER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "encoder/clip_model.h"
#include "encoder/compose.h"
#include "encoder/image.h"
#include "encoder/tokenizer.h"

/* Per-request bounds (bad requests past them get CR_ERR_INVALID). */
#define ENC_SERVICE_MAX_IMAGES 256   /* images in one EncodeImage */
#define ENC_SERVICE_MAX_TEXTS 1024   /* texts in one EncodeText */
#define ENC_SERVICE_MAX_QUERIES 256  /* queries in one Compose */
#define ENC_SERVICE_MAX_TEXT_BYTES 16384 /* one text, caption or template */

/* For the `preprocess` argument of the embed/compose calls: the service's configured mode. */
#define ENC_SERVICE_PREPROCESS_DEFAULT (-1)

/* Default work limits, in pixel samples (enc_image_preprocess_cost(): decoded pixels plus
 * the samples the resize reads; ~2-10 ns each on one core). One image: above what the
 * largest image under the pixel limit costs (9459 x 9459 RGB: ~4.5e8); one request: ~2
 * such images, or ~40 photos of 12 Mpx, or ~350 of 1 Mpx. */
#define ENC_SERVICE_DEFAULT_IMAGE_WORK ((uint64_t)1 << 30)
#define ENC_SERVICE_DEFAULT_REQUEST_WORK ((uint64_t)1 << 31)

typedef struct enc_service_opts {
    const char *model;         /* .safetensors file or Hugging Face directory; required */
    const char *vocab;         /* tokenizer vocabulary; NULL = the default one */
    const char *phi;           /* SEARLE phi head (.safetensors); NULL = no searle */
    const char *combiner;      /* CLIP4Cir combiner head; NULL = no combiner */
    enc_clip_act activation;   /* default ENC_CLIP_ACT_AUTO (see clip_model.h) */
    enc_preprocess preprocess; /* default ENC_PREPROCESS_CLIP */
    int method;                /* default compose method (an enc_compose_method); 0 = searle
                                  when phi is loaded, else combiner when loaded, else sum */
    int threads;               /* OpenBLAS threads of the inference thread; 0 = online CPUs */
    enc_clip_precision precision; /* default ENC_CLIP_FP32; bf16 needs AVX512_BF16 */
    int max_batch;             /* images / texts / queries per forward (default 8) */
    int batch_wait_ms;         /* longest wait for a batch to fill (default 2; 0 = none) */
    int queue;                 /* queued requests before "overloaded" (default 64) */
    size_t max_pixels;         /* decode limit per image; 0 = ENC_IMAGE_DEFAULT_MAX_PIXELS.
                                  Also bounds an image's resize scratch: 4 x max_pixels bytes */
    uint64_t max_image_work;   /* preprocessing work of one image, in pixel samples; 0 =
                                  ENC_SERVICE_DEFAULT_IMAGE_WORK */
    uint64_t max_request_work; /* the same summed over the images of one request; 0 =
                                  ENC_SERVICE_DEFAULT_REQUEST_WORK */
    unsigned allow_preprocess; /* pipelines a request may ask for besides `preprocess`: bit
                                  (1u << enc_preprocess) each (enc_preprocess_parse_list);
                                  0 = only `preprocess` */
} enc_service_opts;

enc_service_opts enc_service_default_opts(void);

typedef struct enc_service enc_service;

/* Loads the model, the tokenizer and the composition heads given, sets the OpenBLAS threads
 * and starts the inference thread. Writes *out only on success. Errors: CR_ERR_INVALID (bad
 * options), CR_ERR_IO / CR_ERR_MODEL (files; the message names the file), CR_ERR_NOMEM,
 * CR_ERR_INTERNAL (thread). The option strings are copied. */
cr_err enc_service_open(enc_service **out, const enc_service_opts *o);

/* Stops the inference thread (queued requests are completed first, those past their
 * deadline dropped) and frees everything. Waits at most 60 s for the thread; past that it
 * logs an error and leaves the handle to the thread (never frees what it still uses).
 * NULL-safe; sets *pp to NULL. */
void enc_service_close(enc_service **pp);

/* The loaded parts; borrowed, valid until enc_service_close(). The model and tokenizer are
 * read-only: callers may run forwards on them directly (outside the batcher, at the cost of
 * sharing the cores with the inference thread). */
int enc_service_embed_dim(const enc_service *s);
const char *enc_service_model_name(const enc_service *s); /* file name of the model */
const enc_clip *enc_service_model(const enc_service *s);
const enc_tokenizer *enc_service_tokenizer(const enc_service *s);
enc_preprocess enc_service_preprocess(const enc_service *s);
/* 1 when compose method m can run; enc_service_default_method() is the resolved default. */
int enc_service_has_method(const enc_service *s, enc_compose_method m);
enc_compose_method enc_service_default_method(const enc_service *s);

/* Encoded image bytes (JPEG, PNG, WebP, ...), borrowed. */
typedef struct enc_blob {
    const uint8_t *data;
    size_t len;
} enc_blob;

/* Embeds n >= 1 images: decode (with the service's pixel limit) and preprocess on the calling
 * thread, then one queued request through the batcher. `preprocess` is an enc_preprocess or
 * ENC_SERVICE_PREPROCESS_DEFAULT; another pipeline than the service's own must be allowed
 * (allow_preprocess). Before anything is decoded or allocated, every image's header is read
 * and the request's cost checked against the limits (max_pixels, max_image_work,
 * max_request_work). out: n x embed_dim floats, L2-normalized when `normalize`, else the
 * raw projected embedding. Errors: CR_ERR_INVALID for a bad image, a pipeline not allowed
 * or a limit passed (the message names the input index and the limit: "image 2:
 * unsupported image format", "... over the per-request limit of N (--max-request-work)"),
 * CR_ERR_OVERLOADED (queue full), CR_ERR_MODEL (forward failed), CR_ERR_NOMEM. Blocks the
 * caller until done. */
cr_err enc_service_embed_images(enc_service *s, const enc_blob *images, size_t n,
                                int preprocess, int normalize, float *out);

/* Embeds already preprocessed pixels (n x 3 x S x S, S = enc_clip_image_size()). Same
 * contract as enc_service_embed_images(). */
cr_err enc_service_embed_pixels(enc_service *s, const float *pixels, size_t n, int normalize,
                                float *out);

/* Embeds n >= 1 UTF-8 texts (tokenized as clip.tokenize(truncate=True)). truncated (may be
 * NULL) receives 1 for each text cut to 77 tokens. Errors: CR_ERR_INVALID naming the text
 * index (not UTF-8, longer than ENC_SERVICE_MAX_TEXT_BYTES), CR_ERR_OVERLOADED, ... */
cr_err enc_service_embed_texts(enc_service *s, const char *const *texts, size_t n,
                               int normalize, float *out, int *truncated);

/* One composed query. The reference is `image` (encoded bytes, when image.len > 0) or `ref`
 * (a raw, unnormalized image embedding of embed_dim floats). method 0 = the default. */
typedef struct enc_service_query {
    enc_blob image;
    const float *ref;
    const char *caption;         /* NULL = "" */
    const char *caption2;        /* NULL, or FashionIQ's second caption */
    const char *prompt_template; /* NULL = ENC_COMPOSE_DEFAULT_TEMPLATE */
    int method;                  /* enc_compose_method, or 0 */
} enc_service_query;

/* Composes n >= 1 queries into out (n x embed_dim, L2-normalized); truncated (may be NULL) as
 * for texts. Reference images are embedded in the same forward pass as the other queued
 * references. CR_ERR_UNSUPPORTED for a method whose head is not loaded, CR_ERR_INVALID for a
 * query without a reference, a bad image or a non-finite vector (the message names the
 * query index). */
cr_err enc_service_compose(enc_service *s, const enc_service_query *q, size_t n,
                           int preprocess, float *out, int *truncated);

typedef struct enc_service_stats {
    uint32_t embed_dim;
    uint32_t queue_depth;  /* requests queued now */
    uint64_t batches;      /* forward passes run */
    uint64_t requests;     /* requests completed (ok or failed) */
    uint64_t items;        /* images + texts + queries in those passes */
    double mean_batch_size; /* items / batches */
    double p50_ms, p99_ms; /* latency, queueing included, over the last 4096 requests */
    uint64_t rejected;     /* requests refused as overloaded */
} enc_service_stats;

void enc_service_stats_get(enc_service *s, enc_service_stats *st);

/* ---- jobs: how a network front queues requests without waiting for them ----------------
 *
 * The calls above block their caller until the batch has run. A front that must not block
 * prepares an enc_job on its own thread (enc_service_prep_*: decode, preprocess, tokenize,
 * under the same checks and limits as the calls above), sets `done`, and submits it; the
 * inference thread fills out/truncated (or rc/msg) and calls done(j) on the inference thread,
 * outside every lock of the service. done owns j from then on. */

typedef enum enc_job_kind { ENC_JOB_IMAGE = 0, ENC_JOB_TEXT = 1, ENC_JOB_COMPOSE = 2 } enc_job_kind;

typedef struct enc_job enc_job;

struct enc_job {
    enc_job_kind kind;
    int n;                  /* images / texts / queries */
    int normalize;          /* IMAGE, TEXT */
    float *pixels;          /* IMAGE: n images; COMPOSE: n_img reference images (owned) */
    int32_t *tokens;        /* TEXT: n x ENC_TOKENIZER_CONTEXT (owned) */
    int n_img;              /* COMPOSE */
    int *img_row;           /* COMPOSE: per query, its row in `pixels`, or -1 (owned) */
    float *refs;            /* COMPOSE: n x dim raw reference embeddings (owned) */
    enc_compose_input *cin; /* COMPOSE: n (owned; strings borrowed from the submitter) */
    float *out;             /* n x dim (owned) */
    int *truncated;         /* n (owned) */
    uint64_t start_us;      /* when the request arrived (latency) */
    uint64_t enq_us;        /* when it was queued (batching wait) */
    uint64_t deadline_us;   /* 0 = none; checked before each image and forward pass */
    const atomic_int *cancel; /* non-zero: its server is stopping (may be NULL) */
    cr_err rc;
    char msg[512];
    int finished;           /* sync jobs: set under the service mutex */
    void (*done)(enc_job *j);
    enc_job *next;
};

/* Fill a zeroed job (normalize, start_us, deadline_us and cancel set by the caller); the
 * errors are those of enc_service_embed_images / _texts / enc_service_compose. The job's
 * buffers are the caller's to clear on failure. */
cr_err enc_service_prep_images(const enc_service *s, enc_job *j, const enc_blob *images,
                               size_t n, int preprocess);
cr_err enc_service_prep_texts(const enc_service *s, enc_job *j, const char *const *texts,
                              size_t n);
cr_err enc_service_prep_compose(const enc_service *s, enc_job *j, const enc_service_query *q,
                                size_t n, int preprocess);
/* Queues a prepared job, or fails at once: CR_ERR_OVERLOADED (queue full),
 * CR_ERR_UNAVAILABLE (closing). On failure the job stays the caller's. */
cr_err enc_service_submit(enc_service *s, enc_job *j);
/* Frees a job's buffers (not the job). NULL-safe. */
void enc_job_clear(enc_job *j);
/* Records a failure in j (message copied; NULL or "" = cr_strerror(rc)). */
void enc_job_fail(enc_job *j, cr_err rc, const char *msg);

#endif
