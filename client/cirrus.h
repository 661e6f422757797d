/* cirrus.h — libcirrus, the C client of cirrus (composed image retrieval).
 *
 * Read this file top to bottom: a usage example, then handles, options, queries, results,
 * writes, errors, and last the raw protobuf escape hatch. Link with
 * `pkg-config --cflags --libs cirrus` or CMake's `find_package(cirrus)` + `cirrus::cirrus`.
 * The library needs only ZeroMQ, protobuf-c and the C library.
 *
 *     #include <cirrus/cirrus.h>
 *
 *     cirrus *c;
 *     if (cirrus_open(&c, "tcp://127.0.0.1:7700", NULL) != CIRRUS_OK)   // NULL = defaults
 *         die(cirrus_errmsg(NULL));
 *
 *     cirrus_query q = cirrus_query_default();       // k = 10, metadata on
 *     q.caption = "is red and striped";              // a composed query:
 *     q.ref_item_id = "sku-17";                      //   "like sku-17, but red and striped"
 *     q.method = CIRRUS_METHOD_SEARLE;
 *     q.filter = "price < 50 and category = \"dress\"";
 *     q.group_by = "product";                        // one hit per product
 *
 *     cirrus_result *r;
 *     if (cirrus_search(c, &q, &r) != CIRRUS_OK)
 *         die(cirrus_errmsg(c));                     // e.g. "filter: expected a value at ..."
 *     for (size_t i = 0; i < cirrus_result_count(r); i++)
 *         printf("%s %.3f\n", cirrus_result_id(r, i), cirrus_result_score(r, i));
 *     if (cirrus_result_partial(r))
 *         printf("(some shard groups did not answer)\n");
 *     cirrus_result_free(&r);
 *     cirrus_close(&c);
 *
 * Conventions (as in LMDB and SQLite):
 * - Every fallible function returns a cirrus_err: CIRRUS_OK (0), a positive expected outcome
 *   (CIRRUS_NOTFOUND, CIRRUS_TIMEOUT, CIRRUS_STALE) or a negative failure. A function that
 *   fails leaves a message on the handle, read with cirrus_errmsg(c). The errors each function
 *   can return are listed with it; CIRRUS_ERR_NOMEM is always possible and not listed, nor are
 *   the server-side failures any request may meet (CIRRUS_ERR_UNAVAILABLE, CIRRUS_ERR_DEADLINE,
 *   CIRRUS_ERR_OVERLOADED, CIRRUS_ERR_INTERNAL), which come back with the server's message.
 * - `x_open(&h, ...)` writes h only on success; `x_close(&h)` / `x_free(&h)` accept NULL and
 *   set h to NULL.
 * - Arguments are borrowed for the duration of the call; nothing you pass is kept. Pointers
 *   a function returns say how long they stay valid.
 * - Structs you fill (cirrus_options, cirrus_query) always start from their *_default()
 *   function, so that fields added later get their defaults.
 *
 * Thread rules: a handle is used by one thread at a time (use one handle per thread; handles
 * are cheap and may share a ZeroMQ context). Results are independent of their handle and may
 * be read from any thread and outlive it. cirrus_strerror() is thread-safe.
 */
#ifndef CIRRUS_H
#define CIRRUS_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h" /* only for the escape hatch at the end; installed beside this file */

#ifdef __cplusplus
extern "C" {
#endif

#define CIRRUS_VERSION "0.1.0"

/* ============================================================================================
 * Errors (the values of the wire protocol's Status.code)
 */
typedef enum cirrus_err {
    CIRRUS_OK = 0,
    CIRRUS_NOTFOUND = 1,          /* the thing asked for does not exist */
    CIRRUS_TIMEOUT = 2,           /* no reply within the timeout */
    CIRRUS_STALE = 3,             /* a write carried an older version than the stored one */
    CIRRUS_ERR_NOMEM = -1,        /* out of memory */
    CIRRUS_ERR_INVALID = -2,      /* a bad argument (here or as the server judged it) */
    CIRRUS_ERR_PROTO = -3,        /* a malformed or oversized message */
    CIRRUS_ERR_NET = -4,          /* socket or transport failure */
    CIRRUS_ERR_STORE = -5,        /* the server's storage failed */
    CIRRUS_ERR_INDEX = -6,        /* the server's vector index failed */
    CIRRUS_ERR_MODEL = -7,        /* the encoder's model failed (e.g. an undecodable image) */
    CIRRUS_ERR_IO = -8,           /* the server's file system */
    CIRRUS_ERR_OVERLOADED = -9,   /* the server's queues are full: retry later */
    CIRRUS_ERR_DEADLINE = -10,    /* the server gave up at the request's deadline */
    CIRRUS_ERR_UNSUPPORTED = -11, /* e.g. a text query to a node without an encoder */
    CIRRUS_ERR_INTERNAL = -12,
    CIRRUS_ERR_UNAVAILABLE = -13  /* no live backend to serve the request */
} cirrus_err;

/* A static English name of a code ("invalid argument"). Never NULL. */
const char *cirrus_strerror(cirrus_err code);

/* ============================================================================================
 * Handles and options
 *
 * A handle is one connection (a ZeroMQ DEALER socket) to a cirrus endpoint: `cirrus serve`,
 * a coordinator, or — for vector queries and writes only — a single shard. The connection is
 * made lazily and re-made after failures, so cirrus_open succeeds without a server; the first
 * request then waits up to its timeout.
 */
typedef struct cirrus cirrus;

typedef struct cirrus_options {
    uint32_t timeout_ms;    /* how long a call waits for its reply; also sent as the request's
                               deadline, after which the server drops it. Default 5000 */
    void *zmq_ctx;          /* a ZeroMQ context to share (needed for inproc:// endpoints);
                               NULL = the handle creates its own. Default NULL */
    size_t max_reply_bytes; /* largest reply accepted; 0 = 64 MiB. Default 0 */
    size_t max_reply_alloc; /* most memory unpacking one reply may take, so that a broken
                               server cannot exhaust it; 0 = 4 x max_reply_bytes. Default 0 */
    int heartbeats;         /* ZMTP heartbeats to notice a dead peer. Default 1 */
    unsigned spin_us;       /* busy-poll this long for a reply before sleeping: lower latency
                               for CPU. Default 0 */
    /* CURVE encryption and authentication on tcp:// (docs/security.md): this client's secret
     * key file (`cirrus keygen --out NAME` makes NAME.key, mode 0600) and the server's public
     * key (Z85 text, or the path of its .pub file); both or neither. NULL = the environment:
     * CIRRUS_CURVE_SECRET and CIRRUS_CURVE_SERVER_PUB; unset = plaintext. Default NULL */
    const char *curve_secret_file;
    const char *curve_server_pub;
} cirrus_options;

cirrus_options cirrus_default_options(void);

/* Opens a handle on `endpoint` ("tcp://host:port", "ipc://path", "inproc://name").
 * `opts` NULL = cirrus_default_options(). On success writes *out (close it with
 * cirrus_close); on failure *out is untouched and cirrus_errmsg(NULL) says why.
 * Errors: CIRRUS_ERR_INVALID (NULL out or endpoint), CIRRUS_ERR_NET (a malformed endpoint,
 * or no socket). */
cirrus_err cirrus_open(cirrus **out, const char *endpoint, const cirrus_options *opts);

/* Closes the handle, dropping replies still in flight. NULL-safe; sets *c = NULL. */
void cirrus_close(cirrus **c);

/* Asks the endpoint whether it is ready to serve. *ready = 1 when it is.
 * Errors: CIRRUS_TIMEOUT (no answer: not running, or not reachable). */
cirrus_err cirrus_health(cirrus *c, int *ready);

/* ============================================================================================
 * Queries
 *
 * Set exactly one kind of query:
 *   text                          a text query, embedded by the server's CLIP text tower
 *   vector + dim                  a raw embedding (normalized by the server for IP)
 *   image + image_len             encoded image bytes (JPEG, PNG, WebP), embedded by the server
 *   item_id                       "more like this catalog item"
 *   caption + one reference       a composed query: the reference changed as the caption says;
 *                                 the reference is ref_item_id, ref_image (+ ref_image_len) or
 *                                 ref_vector (+ ref_dim); caption "" = "the same as this"
 * Setting a ref_* field alone (caption NULL) is a composed query with an empty caption.
 * text, image and composed queries need a node with an encoder (`cirrus serve --model`).
 */
typedef enum cirrus_method {
    CIRRUS_METHOD_DEFAULT = 0,  /* the server's configured method */
    CIRRUS_METHOD_SEARLE = 1,   /* SEARLE / iSEARLE textual inversion */
    CIRRUS_METHOD_COMBINER = 2, /* CLIP4Cir combiner */
    CIRRUS_METHOD_SUM = 3,      /* normalize(image + text) */
    CIRRUS_METHOD_TEXT = 4,     /* the caption alone (baseline) */
    CIRRUS_METHOD_IMAGE = 5     /* the reference alone (baseline) */
} cirrus_method;

#define CIRRUS_MAX_K 1000

typedef struct cirrus_query {
    /* what to search for: exactly one kind (see above) */
    const char *text;
    const float *vector;
    size_t dim;
    const void *image;
    size_t image_len;
    const char *item_id;
    const char *caption;      /* composed: the modification text */
    const char *caption2;     /* composed (FashionIQ): a second caption, averaged; NULL = none */
    const char *ref_item_id;  /* composed: the reference as a catalog item */
    const void *ref_image;    /* composed: the reference as encoded image bytes */
    size_t ref_image_len;
    const float *ref_vector;  /* composed: the reference as a raw image embedding */
    size_t ref_dim;
    cirrus_method method;     /* composed: how to combine. Default CIRRUS_METHOD_DEFAULT */

    /* what to return */
    uint32_t k;               /* hits wanted, 1..CIRRUS_MAX_K. Default 10 */
    uint32_t offset;          /* skip this many hits first (pagination). Default 0 */
    const char *filter;       /* an attribute filter in the text language, parsed here:
                                 category = "dress" and price < 50 and
                                 color in ("red", "blue") and not brand = "x"
                                 (=, !=, <, <=, >, >=, in, and, or, not, parentheses;
                                 "strings", integers, decimals, true, false).
                                 NULL or "" = none. Default NULL */
    const char *group_by;     /* at most group_size hits per value of this attribute
                                 (e.g. one per product). NULL = no grouping. Default NULL */
    uint32_t group_size;      /* with group_by; 0 = 1. Default 0 */
    int include_metadata;     /* return each hit's attributes. Default 1 */
    int include_vectors;      /* return each hit's stored vector. Default 0 */

    /* how to search */
    uint32_t nprobe;          /* IVF cells to visit; 0 = index default */
    uint32_t ef_search;       /* HNSW efSearch; 0 = index default */
    int exact;                /* brute force over the stored vectors. Default 0 */
    uint32_t timeout_ms;      /* this query's timeout and deadline; 0 = the handle's */
} cirrus_query;

cirrus_query cirrus_query_default(void);

typedef struct cirrus_result cirrus_result;

/* Runs one query. On success writes *out (free it with cirrus_result_free); a search that
 * matches nothing succeeds with 0 hits. On failure *out is untouched.
 * Errors (message in cirrus_errmsg):
 *   CIRRUS_ERR_INVALID   no kind or more than one, k outside 1..1000, dim 0 or a non-finite
 *                        value, a malformed filter ("filter: expected a value at column 12:
 *                        ..."), a reference item that does not exist ("reference item 'x' not
 *                        found"), a dimension the catalog does not have, an unknown attribute
 *                        in a filter, group_size over 100;
 *   CIRRUS_ERR_MODEL     an image the encoder cannot decode (or over its pixel limit);
 *   CIRRUS_ERR_UNSUPPORTED / CIRRUS_ERR_UNAVAILABLE  a text, image or composed query to a
 *                        node without an encoder;
 *   CIRRUS_TIMEOUT       no reply within the timeout;
 *   CIRRUS_ERR_NET, CIRRUS_ERR_PROTO  transport failures. */
cirrus_err cirrus_search(cirrus *c, const cirrus_query *q, cirrus_result **out);

/* ============================================================================================
 * Results
 *
 * A result holds the rows of one search (hits, best first) or one get (items, in request
 * order). Row accessors take the row index i in [0, cirrus_result_count(r)); out of range
 * they return NULL or 0. Every pointer returned lives until cirrus_result_free(&r).
 */
typedef enum cirrus_attr_type {
    CIRRUS_ATTR_STRING = 1,
    CIRRUS_ATTR_INT = 2,
    CIRRUS_ATTR_DOUBLE = 3,
    CIRRUS_ATTR_BOOL = 4,
    CIRRUS_ATTR_STRINGS = 5 /* a multi-valued string attribute, e.g. colors */
} cirrus_attr_type;

/* A typed attribute: the field named by `type` holds the value. Used both ways: you fill it
 * for writes (see cirrus_attr_string() etc.), results fill it for reads. */
typedef struct cirrus_attr {
    const char *name;
    cirrus_attr_type type;
    const char *s;               /* CIRRUS_ATTR_STRING */
    int64_t i;                   /* CIRRUS_ATTR_INT */
    double d;                    /* CIRRUS_ATTR_DOUBLE */
    int b;                       /* CIRRUS_ATTR_BOOL */
    const char *const *strings;  /* CIRRUS_ATTR_STRINGS: n_strings values */
    size_t n_strings;
} cirrus_attr;

size_t cirrus_result_count(const cirrus_result *r);
const char *cirrus_result_id(const cirrus_result *r, size_t i);
/* Inner product (higher is better) or squared L2 distance (lower is better), as the catalog's
 * metric says. 0 for the rows of a get. */
float cirrus_result_score(const cirrus_result *r, size_t i);
/* The stored raw vector (*dim floats), with include_vectors or a get with vectors; else NULL
 * and *dim = 0. dim may be NULL. */
const float *cirrus_result_vector(const cirrus_result *r, size_t i, size_t *dim);
/* The item's kept image (*len bytes, as it was ingested) for the rows of cirrus_get_images;
 * NULL and *len = 0 when the item has none (its shard runs without --keep-images). len may be
 * NULL. */
const void *cirrus_result_image(const cirrus_result *r, size_t i, size_t *len);
/* The item's version (hybrid logical clock) for the rows of a get; 0 for hits. */
uint64_t cirrus_result_version(const cirrus_result *r, size_t i);

/* Attributes of row i (with include_metadata, or always for a get). */
size_t cirrus_result_attr_count(const cirrus_result *r, size_t i);
/* Fills *out with attribute j of row i. Errors: CIRRUS_NOTFOUND (i or j out of range),
 * CIRRUS_ERR_INVALID (out NULL). */
cirrus_err cirrus_result_attr(const cirrus_result *r, size_t i, size_t j, cirrus_attr *out);
/* Fills *out with the attribute of row i named `name`. Errors: CIRRUS_NOTFOUND,
 * CIRRUS_ERR_INVALID (out or name NULL). */
cirrus_err cirrus_result_attr_find(const cirrus_result *r, size_t i, const char *name,
                                   cirrus_attr *out);
/* The item's image_uri (its string attribute "image_uri", see cirrus_item), or NULL. */
const char *cirrus_result_image_uri(const cirrus_result *r, size_t i);

/* Search only: 1 when some shard groups did not answer in time, so the hits come from the
 * others; cirrus_result_missing_groups lists them (*n of them; n may be NULL). */
int cirrus_result_partial(const cirrus_result *r);
const uint32_t *cirrus_result_missing_groups(const cirrus_result *r, size_t *n);
/* Search only: 1 when a caption was cut to CLIP's 77 tokens. */
int cirrus_result_caption_truncated(const cirrus_result *r);
/* Search only: the server's time for the whole query, in microseconds (0 if not reported). */
uint64_t cirrus_result_server_us(const cirrus_result *r);

/* Get only: the ids that were not found (cirrus_result_missing_count of them). */
size_t cirrus_result_missing_count(const cirrus_result *r);
const char *cirrus_result_missing_id(const cirrus_result *r, size_t i);

/* NULL-safe; sets *r = NULL. */
void cirrus_result_free(cirrus_result **r);

/* ============================================================================================
 * Writes and reads
 *
 * An item is an id, its content — a raw vector, or image bytes that the server's encoder
 * embeds — and typed attributes that filters and group_by read. Writes are acknowledged once
 * durable on the write quorum; a later write of an id replaces the item. Ids are 1..256 bytes
 * of UTF-8. One call carries 1..CIRRUS_MAX_BATCH items.
 */
#define CIRRUS_MAX_BATCH 8192

typedef struct cirrus_item {
    const char *id;
    const float *vector;      /* dim floats, the raw (unnormalized) embedding; or NULL ... */
    size_t dim;
    const void *image;        /* ... and encoded image bytes (needs an encoder) */
    size_t image_len;
    const cirrus_attr *attrs; /* n_attrs typed attributes (names unique, 1..128 bytes) */
    size_t n_attrs;
    const char *image_uri;    /* where the image lives, for display; stored as the string
                                 attribute "image_uri". NULL = none */
    uint64_t version;         /* 0 = assigned by the server (the usual case) */
} cirrus_item;

/* Attribute constructors for writes: cirrus_attr a[] = {cirrus_attr_string("color", "red"),
 * cirrus_attr_double("price", 49.5)}. The strings are borrowed. */
cirrus_attr cirrus_attr_string(const char *name, const char *value);
cirrus_attr cirrus_attr_int(const char *name, int64_t value);
cirrus_attr cirrus_attr_double(const char *name, double value);
cirrus_attr cirrus_attr_bool(const char *name, int value);
cirrus_attr cirrus_attr_strings(const char *name, const char *const *values, size_t n);

/* The outcome of one item of a write. */
typedef struct cirrus_item_status {
    cirrus_err code;  /* CIRRUS_OK; CIRRUS_STALE (an older version, ignored); or a failure */
    uint64_t version; /* the version the item was written with */
} cirrus_item_status;

/* Inserts or replaces n_items items. status (may be NULL) receives n_items outcomes in
 * request order. Returns CIRRUS_OK when every item was written (or was stale); otherwise the
 * first failed item's code, with "item 'id': why" in cirrus_errmsg — the other items may
 * still have been written: read status.
 * Errors: CIRRUS_ERR_INVALID (n_items outside 1..CIRRUS_MAX_BATCH, a bad id, neither vector
 * nor image, a non-finite value, a wrong dimension, a bad attribute), CIRRUS_ERR_MODEL (an
 * undecodable image), CIRRUS_ERR_UNAVAILABLE (images but no encoder), CIRRUS_TIMEOUT, and the
 * transport errors of cirrus_search. */
cirrus_err cirrus_upsert(cirrus *c, const cirrus_item *items, size_t n_items,
                         cirrus_item_status *status);

/* Deletes n_ids items by id (1..CIRRUS_MAX_BATCH). Deleting an id that does not exist is not
 * an error. Errors: CIRRUS_ERR_INVALID (a bad id), CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_delete(cirrus *c, const char *const *ids, size_t n_ids);

/* Reads n_ids items by id (1..CIRRUS_MAX_BATCH), with their vectors when with_vectors. On
 * CIRRUS_OK or CIRRUS_NOTFOUND writes *out: one row per item found (id, attributes, version,
 * vector) and the ids not found (cirrus_result_missing_*). Returns CIRRUS_NOTFOUND when some
 * ids were not found (for one id: it does not exist).
 * Errors: CIRRUS_ERR_INVALID (a bad id), CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_get(cirrus *c, const char *const *ids, size_t n_ids, int with_vectors,
                      cirrus_result **out);

/* As cirrus_get without vectors, but each row carries the item's original image as the
 * shards kept it (run with --keep-images): cirrus_result_image. */
cirrus_err cirrus_get_images(cirrus *c, const char *const *ids, size_t n_ids,
                             cirrus_result **out);

/* ============================================================================================
 * Generation jobs (virtual try-on, garment editing, text to image)
 *
 * A generation runs on a diffusion worker behind the server's job broker, for seconds to
 * minutes, so it is a job: cirrus_generate submits it and returns once the broker has stored
 * it durably (the job id is then never lost); cirrus_job_status polls it, cirrus_job_wait
 * waits for its end with a progress callback, cirrus_job_cancel ends it, cirrus_jobs lists
 * recent ones. Inputs follow LaDI-VTON (try-on) and Multimodal Garment Designer (editing):
 *
 *     cirrus_generate_params p = cirrus_generate_default();   // try-on, 384 x 512
 *     p.person_image = png; p.person_image_len = png_len;
 *     p.garment_item_id = "sku-17";                   // or garment_image + garment_image_len
 *     p.category = "upper_body";
 *     p.idempotency_key = "order-991";                // a resubmission returns the same job
 *     cirrus_job *j;
 *     if (cirrus_generate(c, &p, &j) != CIRRUS_OK) die(cirrus_errmsg(c));
 *     char id[CIRRUS_JOB_ID_MAX + 1];
 *     snprintf(id, sizeof id, "%s", cirrus_job_id(j));
 *     cirrus_job_free(&j);
 *     if (cirrus_job_wait(c, id, 120000, 1, on_progress, NULL, &j) == CIRRUS_OK &&
 *         cirrus_job_get_state(j) == CIRRUS_JOB_SUCCEEDED) {
 *         size_t n; const void *img = cirrus_job_image(j, &n);   // a PNG
 *         ...
 *     }
 *     cirrus_job_free(&j);
 *
 * A cirrus_job is a snapshot of one job's state, independent of the handle; free it with
 * cirrus_job_free. Servers without a job broker answer CIRRUS_ERR_UNSUPPORTED.
 */
typedef enum cirrus_job_kind {
    CIRRUS_JOB_TRYON = 1,     /* the garment put on the person (LaDI-VTON) */
    CIRRUS_JOB_EDIT = 2,      /* the person's garment changed as the text (and sketch) say (MGD) */
    CIRRUS_JOB_TEXT2IMAGE = 3 /* an image from the text alone */
} cirrus_job_kind;

typedef enum cirrus_job_state {
    CIRRUS_JOB_QUEUED = 0,
    CIRRUS_JOB_RUNNING = 1,
    CIRRUS_JOB_SUCCEEDED = 2, /* the result image is stored (for the broker's result TTL) */
    CIRRUS_JOB_FAILED = 3,    /* cirrus_job_error says why (after every attempt) */
    CIRRUS_JOB_CANCELLED = 4, /* by cirrus_job_cancel, or its deadline passed while it ran */
    CIRRUS_JOB_EXPIRED = 5    /* its deadline passed before any worker started it */
} cirrus_job_state;

#define CIRRUS_GEN_IMAGE_MAX (16u << 20) /* bytes of each input image (person, garment, ...) */
#define CIRRUS_GEN_STEPS_MAX 1000        /* denoising steps, 1..1000 (0 = the worker's default) */
#define CIRRUS_GEN_SIZE_MIN 64           /* output width and height: 64..2048, multiples of 8 */
#define CIRRUS_GEN_SIZE_MAX 2048
#define CIRRUS_GEN_GUIDANCE_MAX 50.0f    /* classifier-free guidance scale, 0..50 (0 = default) */
#define CIRRUS_GEN_TEXT_MAX 4096         /* bytes of the text (UTF-8) */
#define CIRRUS_JOB_ID_MAX 256            /* bytes of a job id or an idempotency key */
#define CIRRUS_JOBS_LIST_MAX 1000        /* jobs one cirrus_jobs call returns at most */

typedef struct cirrus_generate_params {
    cirrus_job_kind kind;        /* Default CIRRUS_JOB_TRYON */
    const void *person_image;    /* encoded image (PNG, JPEG or WebP): tryon and edit */
    size_t person_image_len;
    const void *garment_image;   /* tryon: the garment as image bytes, or ... */
    size_t garment_image_len;
    const char *garment_item_id; /* ... as a catalog item (its stored image or image_uri) */
    const char *category;        /* tryon and edit: "upper_body", "lower_body" or "dresses" */
    const char *text;            /* edit and text2image: what to make. NULL = none */
    const void *mask;            /* optional: where to paint (white) in the person image */
    size_t mask_len;
    const void *sketch;          /* optional (edit): a garment sketch */
    size_t sketch_len;
    uint32_t steps;              /* 1..CIRRUS_GEN_STEPS_MAX; 0 = the worker's default */
    float guidance;              /* 0..CIRRUS_GEN_GUIDANCE_MAX; 0 = the worker's default */
    uint64_t seed;               /* the same seed and inputs give the same image. Default 0 */
    uint32_t width, height;      /* output size; 0 = 384 x 512 */
    const char *idempotency_key; /* client-chosen, 1..256 bytes: resubmitting the same key
                                    returns the existing job. NULL = none */
    uint32_t deadline_ms;        /* the job's time budget from submission (it expires or is
                                    cancelled past it); 0 = the broker's default */
    uint32_t timeout_ms;         /* this call's timeout; 0 = the handle's */
} cirrus_generate_params;

cirrus_generate_params cirrus_generate_default(void);

typedef struct cirrus_job cirrus_job;

/* Submits a job. On success writes *out, the job as stored (state CIRRUS_JOB_QUEUED, or
 * whatever state the existing job of the same idempotency key has reached).
 * Errors: CIRRUS_ERR_INVALID (checked here before anything is sent: no or unknown kind; a
 * missing person image, garment or category for its kind; a garment given both ways; an
 * image empty, over CIRRUS_GEN_IMAGE_MAX or not PNG/JPEG/WebP; steps, guidance, width or
 * height out of range; text too long or not UTF-8; a bad garment id or key; and, from the
 * broker, an unknown garment item or one with no stored image or image_uri),
 * CIRRUS_ERR_OVERLOADED (the broker's queue is full), CIRRUS_ERR_UNSUPPORTED (no job broker),
 * CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_generate(cirrus *c, const cirrus_generate_params *p, cirrus_job **out);

/* The job's current state; with with_image, the result image too once it succeeded (the
 * image is otherwise left out, so that polling stays cheap).
 * Errors: CIRRUS_NOTFOUND (no such job, or its record expired), CIRRUS_ERR_INVALID (a bad
 * id), CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_job_status(cirrus *c, const char *job_id, int with_image, cirrus_job **out);

/* Called by cirrus_job_wait with each new snapshot (a change of state, step or progress) and
 * the last one; return 0 to go on waiting, nonzero to stop. The job is borrowed for the
 * call. */
typedef int (*cirrus_job_progress_fn)(void *ctx, const cirrus_job *job);

/* Waits up to timeout_ms (0 = the handle's timeout) for the job to end (succeeded, failed,
 * cancelled or expired), polling its status (at most 4 times a second) and calling progress
 * (may be NULL) on each change. On CIRRUS_OK *out is the ended job — check its state — with
 * the result image when with_image and it succeeded. On CIRRUS_TIMEOUT (the job still runs
 * at timeout_ms, or progress asked to stop) *out is its last snapshot. Waiting does not
 * affect the job. Errors: those of cirrus_job_status. */
cirrus_err cirrus_job_wait(cirrus *c, const char *job_id, uint32_t timeout_ms, int with_image,
                           cirrus_job_progress_fn progress, void *ctx, cirrus_job **out);

/* Cancels the job: a queued one ends at once, a running one stops at its worker's next step
 * (its state becomes CIRRUS_JOB_CANCELLED soon after). Cancelling a job that already ended
 * changes nothing. out (may be NULL) receives its state after the request.
 * Errors: CIRRUS_NOTFOUND, CIRRUS_ERR_INVALID (a bad id), CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_job_cancel(cirrus *c, const char *job_id, cirrus_job **out);

/* Snapshot accessors. Strings and the image live until cirrus_job_free; NULL-safe (a NULL
 * job gives "", 0 or NULL). */
const char *cirrus_job_id(const cirrus_job *j);
cirrus_job_state cirrus_job_get_state(const cirrus_job *j);
cirrus_job_kind cirrus_job_get_kind(const cirrus_job *j);
/* 1 for succeeded, failed, cancelled and expired. */
int cirrus_job_ended(const cirrus_job *j);
float cirrus_job_progress(const cirrus_job *j); /* 0..1 */
uint32_t cirrus_job_step(const cirrus_job *j);
uint32_t cirrus_job_attempts(const cirrus_job *j);
const char *cirrus_job_worker(const cirrus_job *j); /* the worker of the last attempt, or "" */
const char *cirrus_job_error(const cirrus_job *j);  /* why it failed or expired, or "" */
/* Wall-clock times, ms since the epoch; 0 when not (yet) reached. */
uint64_t cirrus_job_created_ms(const cirrus_job *j);
uint64_t cirrus_job_started_ms(const cirrus_job *j);
uint64_t cirrus_job_ended_ms(const cirrus_job *j);
/* 1 when the broker holds a result image (fetch it with with_image). */
int cirrus_job_has_image(const cirrus_job *j);
/* The result PNG (*len bytes; len may be NULL) when it was fetched, else NULL. */
const void *cirrus_job_image(const cirrus_job *j, size_t *len);
/* Static names: "queued", "running", "succeeded", "failed", "cancelled", "expired";
 * "tryon", "edit", "text2image". "unknown" for other values. */
const char *cirrus_job_state_name(cirrus_job_state s);
const char *cirrus_job_kind_name(cirrus_job_kind k);
/* The kind named `name` ("tryon", "edit", "text2image"). Errors: CIRRUS_ERR_INVALID. */
cirrus_err cirrus_job_kind_parse(const char *name, cirrus_job_kind *out);
/* NULL-safe; sets *j = NULL. */
void cirrus_job_free(cirrus_job **j);

/* Recent jobs, newest first, without images. */
typedef struct cirrus_job_list cirrus_job_list;

/* Lists up to limit (1..CIRRUS_JOBS_LIST_MAX; 0 = 50) recent jobs. On success writes *out
 * (free it with cirrus_job_list_free). Errors: CIRRUS_ERR_INVALID (limit too large),
 * CIRRUS_ERR_UNSUPPORTED (no job broker), CIRRUS_TIMEOUT, transport errors. */
cirrus_err cirrus_jobs(cirrus *c, uint32_t limit, cirrus_job_list **out);
size_t cirrus_job_list_count(const cirrus_job_list *l);
/* Job i in [0, count), or NULL; it lives until cirrus_job_list_free (do not free it). */
const cirrus_job *cirrus_job_list_at(const cirrus_job_list *l, size_t i);
/* NULL-safe; sets *l = NULL. */
void cirrus_job_list_free(cirrus_job_list **l);

/* ============================================================================================
 * Errors on the handle (SQLite's errmsg)
 */

/* The message of the last failed call on this handle ("" after a call that succeeded). With
 * c == NULL: the calling thread's last message (why cirrus_open failed). Valid until the next
 * call on the handle (or, for NULL, on this thread). Never NULL. */
const char *cirrus_errmsg(const cirrus *c);
/* The code the last call on this handle returned. */
cirrus_err cirrus_errcode(const cirrus *c);

/* ============================================================================================
 * Escape hatch: raw protobuf requests (proto/cirrus.proto, installed in share/cirrus/)
 *
 * Everything above is built on these. Use them for ops the API does not wrap (stats,
 * snapshot, encode, batches) or to pipeline many requests:
 *
 *     Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
 *     Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
 *     req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
 *     req.stats = &st;
 *     Cirrus__V1__Response *resp;
 *     if (cirrus_call(c, &req, &resp) == CIRRUS_OK) printf("%llu items\n",
 *         (unsigned long long)resp->stats->count);
 *     cirrus_response_free(resp);
 */

/* Sets req->id (fresh) and, when 0, req->deadline_ms (the handle's timeout); sends; waits up
 * to req->deadline_ms for the matching reply. Whenever a reply arrived *resp is set (free it
 * with cirrus_response_free, also when the return is not CIRRUS_OK), else *resp = NULL.
 * Returns CIRRUS_OK when the reply's status is ok and it carries its result (resp->search for
 * a search, resp->stats for stats, ...); otherwise the reply's status code — a failure, or an
 * expected outcome such as CIRRUS_NOTFOUND, which comes without a result — with the server's
 * message in cirrus_errmsg; CIRRUS_ERR_PROTO for an ok reply without its result;
 * CIRRUS_TIMEOUT when no reply came; transport errors. Replies to requests sent with
 * cirrus_send that arrive meanwhile are kept for cirrus_recv. */
cirrus_err cirrus_call(cirrus *c, Cirrus__V1__Request *req, Cirrus__V1__Response **resp);

/* Pipelining: send without waiting (sets req->id, returned in *id; id may be NULL), then
 * receive replies in any order, matching them by resp->id. cirrus_recv returns CIRRUS_TIMEOUT
 * when none arrived within timeout_ms; on CIRRUS_OK the caller frees *resp.
 * Errors: CIRRUS_ERR_OVERLOADED (the send queue is full), CIRRUS_ERR_NET, CIRRUS_ERR_PROTO. */
cirrus_err cirrus_send(cirrus *c, Cirrus__V1__Request *req, uint64_t *id);
cirrus_err cirrus_recv(cirrus *c, uint32_t timeout_ms, Cirrus__V1__Response **resp);

/* Frees a reply from cirrus_call / cirrus_recv. NULL-safe. */
void cirrus_response_free(Cirrus__V1__Response *resp);

#ifdef __cplusplus
}
#endif

#endif
