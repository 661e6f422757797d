#include "encoder/batcher.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/validate.h"

#define POLL_MS 100
#define LAT_RING 4096
#define CLOSE_LIMIT_MS 60000 /* longest wait for the inference thread at close */

/* ---- the service and its queue ----------------------------------------------------------- */

struct enc_service {
    enc_service_opts o;
    char *model_path, *vocab_path, *phi_path, *combiner_path;
    char model_name[256];
    enc_clip *model;
    enc_tokenizer *tok;
    enc_composer *composer;
    int dim, size;
    size_t max_pixels; /* resolved: never 0 */
    enc_compose_method method;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work queued / stopping */
    pthread_cond_t done_cv; /* a sync job finished */
    enc_job *head, *tail;
    int queued, stopping;
    /* statistics, under mu */
    uint64_t batches, requests, items, rejected;
    double lat_ms[LAT_RING];
    size_t lat_n, lat_pos;
};

enc_service_opts enc_service_default_opts(void)
{
    enc_service_opts o;
    memset(&o, 0, sizeof o);
    o.activation = ENC_CLIP_ACT_AUTO;
    o.preprocess = ENC_PREPROCESS_CLIP;
    o.max_batch = 8;
    o.batch_wait_ms = 2;
    o.queue = 64;
    o.max_image_work = ENC_SERVICE_DEFAULT_IMAGE_WORK;
    o.max_request_work = ENC_SERVICE_DEFAULT_REQUEST_WORK;
    return o;
}

void enc_job_clear(enc_job *j)
{
    if (!j)
        return;
    free(j->pixels);
    free(j->tokens);
    free(j->img_row);
    free(j->refs);
    free(j->cin);
    free(j->out);
    free(j->truncated);
}

static void l2_normalize(float *v, int d)
{
    double ss = 0;
    for (int i = 0; i < d; i++)
        ss += (double)v[i] * v[i];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int i = 0; i < d; i++)
            v[i] *= inv;
    }
}

static void deadline_at(struct timespec *ts, uint64_t until_us)
{
    ts->tv_sec = (time_t)(until_us / 1000000u);
    ts->tv_nsec = (long)(until_us % 1000000u) * 1000L;
}

/* Queues j, or fails at once: CR_ERR_OVERLOADED when the queue is full. */
cr_err enc_service_submit(enc_service *s, enc_job *j)
{
    cr_err rc = CR_OK;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "the encoder is shutting down");
    } else if (s->queued >= s->o.queue) {
        s->rejected++;
        rc = cr_error_set(CR_ERR_OVERLOADED,
                          "encoder overloaded: %d requests queued (limit %d); retry later",
                          s->queued, s->o.queue);
    } else {
        j->enq_us = cr_clock_mono_us();
        j->next = NULL;
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int queued_items(const enc_service *s, enc_job_kind kind)
{
    int n = 0;
    for (const enc_job *j = s->head; j; j = j->next)
        if (j->kind == kind)
            n += j->n;
    return n;
}

/* Waits for work, then for the batch to fill (max_batch items of the oldest request's kind,
 * or batch_wait_ms after that request was queued), and takes it. NULL once stopping with an
 * empty queue. */
static enc_job *take_batch(enc_service *s)
{
    enc_job *first = NULL, **out = &first;
    struct timespec ts;
    int total = 0;

    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->stopping) {
        deadline_at(&ts, cr_clock_mono_us() + POLL_MS * 1000u);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    if (s->head) {
        enc_job_kind kind = s->head->kind;
        uint64_t until = s->head->enq_us + (uint64_t)s->o.batch_wait_ms * 1000u;
        while (!s->stopping && queued_items(s, kind) < s->o.max_batch &&
               cr_clock_mono_us() < until) {
            deadline_at(&ts, until);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        for (enc_job **pp = &s->head; *pp && total < s->o.max_batch;) {
            enc_job *j = *pp;
            if (j->kind == kind && (!first || total + j->n <= s->o.max_batch)) {
                *pp = j->next;
                j->next = NULL;
                *out = j;
                out = &j->next;
                total += j->n;
                s->queued--;
            } else {
                pp = &j->next;
            }
        }
        s->tail = NULL;
        for (enc_job *j = s->head; j; j = j->next)
            s->tail = j;
    }
    pthread_mutex_unlock(&s->mu);
    return first;
}

void enc_job_fail(enc_job *j, cr_err rc, const char *msg)
{
    j->rc = rc;
    snprintf(j->msg, sizeof j->msg, "%s", msg && msg[0] ? msg : cr_strerror(rc));
}

/* Checked before each expensive step (decoding an image, a forward pass): the caller of a
 * request past its deadline has gone, so its work is dropped. `before` names the step. */
static cr_err check_deadline(const enc_job *j, const char *before)
{
    uint64_t now;
    if (j->cancel && atomic_load(j->cancel))
        return cr_error_set(CR_ERR_UNAVAILABLE, "the encoder is shutting down");
    if (!j->deadline_us)
        return CR_OK;
    now = cr_clock_mono_us();
    if (now <= j->deadline_us)
        return CR_OK;
    return cr_error_set(CR_ERR_DEADLINE, "deadline passed before %s (%llu ms after the request "
                        "arrived); not computed", before,
                        (unsigned long long)((now - j->start_us) / 1000));
}

/* The image tower over n images in forwards of at most max_batch, the deadline of `j`
 * (the batch's only job when n > max_batch) checked before each. */
static cr_err encode_images_chunked(enc_service *s, const enc_job *j, float *in, int n,
                                    float *out)
{
    size_t px = (size_t)3 * (size_t)s->size * (size_t)s->size, d = (size_t)s->dim;
    for (int i = 0; i < n; i += s->o.max_batch) {
        int m = n - i < s->o.max_batch ? n - i : s->o.max_batch;
        cr_err rc = i ? check_deadline(j, "the next forward pass") : CR_OK;
        if (!rc)
            rc = enc_clip_encode_images(s->model, in + (size_t)i * px, m, out + (size_t)i * d);
        if (rc)
            return rc;
    }
    return CR_OK;
}

/* The first job of a batch still to run. A batch holds one job when it is larger than
 * max_batch (take_batch), so it is the job whose deadline the chunked forwards check. */
static const enc_job *first_runnable(const enc_job *jobs)
{
    for (const enc_job *j = jobs; j; j = j->next)
        if (!j->rc)
            return j;
    return jobs;
}

/* One forward pass over the runnable jobs of `jobs` (rc == 0), all of one kind; a single
 * job larger than max_batch runs as several, its deadline checked before each. */
static cr_err forward(enc_service *s, enc_job *jobs, int total)
{
    size_t px = (size_t)3 * (size_t)s->size * (size_t)s->size, d = (size_t)s->dim;
    float *in = NULL, *outb = NULL, *emb = NULL;
    int32_t *tok = NULL;
    enc_compose_input *cin = NULL;
    int *trunc = NULL, njobs = 0, nimg = 0, k;
    cr_err rc = CR_OK;

    for (enc_job *j = jobs; j; j = j->next)
        if (!j->rc) {
            njobs++;
            nimg += j->n_img;
        }
    outb = malloc((size_t)total * d * sizeof *outb);
    if (!outb)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for a batch of %d", total);
    switch (jobs->kind) {
    case ENC_JOB_IMAGE:
        if (njobs == 1) {
            for (enc_job *j = jobs; j; j = j->next)
                if (!j->rc)
                    rc = encode_images_chunked(s, j, j->pixels, total, outb);
            break;
        }
        in = malloc((size_t)total * px * sizeof *in);
        if (!in) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory for a batch of %d images", total);
            break;
        }
        k = 0;
        for (enc_job *j = jobs; j; j = j->next)
            if (!j->rc) {
                memcpy(in + (size_t)k * px, j->pixels, (size_t)j->n * px * sizeof *in);
                k += j->n;
            }
        rc = enc_clip_encode_images(s->model, in, total, outb);
        break;
    case ENC_JOB_TEXT:
        tok = malloc((size_t)total * ENC_TOKENIZER_CONTEXT * sizeof *tok);
        if (!tok) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory for a batch of %d texts", total);
            break;
        }
        k = 0;
        for (enc_job *j = jobs; j; j = j->next)
            if (!j->rc) {
                memcpy(tok + (size_t)k * ENC_TOKENIZER_CONTEXT, j->tokens,
                       (size_t)j->n * ENC_TOKENIZER_CONTEXT * sizeof *tok);
                k += j->n;
            }
        for (int i = 0; i < total && !rc; i += s->o.max_batch) {
            int m = total - i < s->o.max_batch ? total - i : s->o.max_batch;
            rc = i ? check_deadline(first_runnable(jobs), "the next forward pass") : CR_OK;
            if (!rc)
                rc = enc_clip_encode_tokens(s->model, tok + (size_t)i * ENC_TOKENIZER_CONTEXT,
                                            m, outb + (size_t)i * d);
        }
        break;
    case ENC_JOB_COMPOSE:
        cin = malloc((size_t)total * sizeof *cin);
        trunc = calloc((size_t)total, sizeof *trunc);
        if (nimg) {
            in = malloc((size_t)nimg * px * sizeof *in);
            emb = malloc((size_t)nimg * d * sizeof *emb);
        }
        if (!cin || !trunc || (nimg && (!in || !emb))) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory for a batch of %d queries", total);
            break;
        }
        k = 0;
        for (enc_job *j = jobs; j; j = j->next)
            if (!j->rc && j->n_img) {
                memcpy(in + (size_t)k * px, j->pixels, (size_t)j->n_img * px * sizeof *in);
                k += j->n_img;
            }
        if (nimg)
            rc = encode_images_chunked(s, first_runnable(jobs), in, nimg, emb);
        if (rc)
            break;
        k = 0;
        nimg = 0;
        for (enc_job *j = jobs; j; j = j->next) {
            if (j->rc)
                continue;
            for (int i = 0; i < j->n; i++) {
                if (j->img_row[i] >= 0)
                    memcpy(j->refs + (size_t)i * d, emb + (size_t)(nimg + j->img_row[i]) * d,
                           d * sizeof *emb);
                cin[k++] = j->cin[i];
            }
            nimg += j->n_img;
        }
        for (int i = 0; i < total && !rc; i += s->o.max_batch) {
            int m = total - i < s->o.max_batch ? total - i : s->o.max_batch;
            rc = i ? check_deadline(first_runnable(jobs), "the next forward pass") : CR_OK;
            if (!rc)
                rc = enc_composer_run(s->composer, cin + i, (size_t)m, outb + (size_t)i * d,
                                      trunc + i);
        }
        break;
    }
    if (!rc) {
        k = 0;
        for (enc_job *j = jobs; j; j = j->next) {
            if (j->rc)
                continue;
            memcpy(j->out, outb + (size_t)k * d, (size_t)j->n * d * sizeof *outb);
            for (int i = 0; i < j->n; i++) {
                if (j->kind == ENC_JOB_COMPOSE)
                    j->truncated[i] = trunc[k + i];
                if (j->normalize)
                    l2_normalize(j->out + (size_t)i * d, s->dim);
            }
            k += j->n;
        }
    }
    free(in);
    free(outb);
    free(emb);
    free(tok);
    free(cin);
    free(trunc);
    return rc;
}

static void run_batch(enc_service *s, enc_job *jobs)
{
    int total = 0, njobs = 0;
    cr_err rc;

    for (enc_job *j = jobs; j; j = j->next) {
        cr_err drc = check_deadline(j, "its forward pass (it waited in the queue)");
        if (drc) {
            enc_job_fail(j, drc, cr_error_message());
            continue;
        }
        total += j->n;
        njobs++;
    }
    if (!njobs)
        return;
    rc = forward(s, jobs, total);
    pthread_mutex_lock(&s->mu);
    s->batches++;
    s->items += (uint64_t)total;
    pthread_mutex_unlock(&s->mu);
    if (!rc)
        return;
    if (njobs == 1) {
        for (enc_job *j = jobs; j; j = j->next)
            if (!j->rc)
                enc_job_fail(j, rc, cr_error_message());
        return;
    }
    /* One request's bad input must not fail the others: run each alone. */
    CR_DEBUG("encoder", "batch of %d failed (%s); running its requests one by one", njobs,
             cr_error_message());
    for (enc_job *j = jobs; j; j = j->next) {
        enc_job *next = j->next;
        if (j->rc)
            continue;
        j->next = NULL;
        rc = check_deadline(j, "its forward pass");
        if (!rc)
            rc = forward(s, j, j->n);
        if (rc)
            enc_job_fail(j, rc, cr_error_message());
        j->next = next;
    }
}

static void finish(enc_service *s, enc_job *jobs)
{
    uint64_t now = cr_clock_mono_us();
    pthread_mutex_lock(&s->mu);
    for (enc_job *j = jobs; j; j = j->next) {
        s->lat_ms[s->lat_pos] = (double)(now - j->start_us) / 1000.0;
        s->lat_pos = (s->lat_pos + 1) % LAT_RING;
        if (s->lat_n < LAT_RING)
            s->lat_n++;
        s->requests++;
    }
    pthread_mutex_unlock(&s->mu);
    for (enc_job *j = jobs, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        j->done(j); /* may free j */
    }
}

static void *infer_main(void *arg)
{
    enc_service *s = arg;
    for (;;) {
        enc_job *jobs = take_batch(s);
        if (!jobs)
            break;
        run_batch(s, jobs);
        finish(s, jobs);
    }
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------------ */

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void set_model_name(enc_service *s, const char *path)
{
    size_t n = strlen(path);
    const char *b;
    while (n > 1 && path[n - 1] == '/')
        n--;
    b = path + n;
    while (b > path && b[-1] != '/')
        b--;
    snprintf(s->model_name, sizeof s->model_name, "%.*s", (int)(path + n - b), b);
}

static cr_err check_opts(const enc_service_opts *o)
{
    if (!o || !o->model || !o->model[0])
        return cr_error_set(CR_ERR_INVALID, "no model given");
    if (o->max_batch < 1 || o->max_batch > 1024)
        return cr_error_set(CR_ERR_INVALID, "batch size %d out of range 1..1024", o->max_batch);
    if (o->batch_wait_ms < 0 || o->batch_wait_ms > 10000)
        return cr_error_set(CR_ERR_INVALID, "batch wait %d ms out of range 0..10000",
                            o->batch_wait_ms);
    if (o->queue < 1 || o->queue > 1000000)
        return cr_error_set(CR_ERR_INVALID, "queue length %d out of range 1..1000000",
                            o->queue);
    if (o->threads < 0 || o->threads > 256)
        return cr_error_set(CR_ERR_INVALID, "threads %d out of range 0..256", o->threads);
    if ((int)o->preprocess < 0 || o->preprocess > ENC_PREPROCESS_SQUAREPAD)
        return cr_error_set(CR_ERR_INVALID, "unknown preprocess mode %d", (int)o->preprocess);
    if (o->method < 0 || o->method > ENC_COMPOSE_IMAGE)
        return cr_error_set(CR_ERR_INVALID, "unknown compose method %d", o->method);
    if (o->allow_preprocess & ~((1u << (ENC_PREPROCESS_SQUAREPAD + 1)) - 1))
        return cr_error_set(CR_ERR_INVALID, "allow_preprocess 0x%x has bits of no pipeline",
                            o->allow_preprocess);
    return CR_OK;
}

cr_err enc_service_open(enc_service **out, const enc_service_opts *o)
{
    enc_service *s = NULL;
    enc_clip_params p = enc_clip_default_params();
    pthread_condattr_t ca;
    long ncpu;
    cr_err rc = check_opts(o);

    if (rc)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->model_path = dup_opt(o->model);
    s->vocab_path = dup_opt(o->vocab);
    s->phi_path = dup_opt(o->phi);
    s->combiner_path = dup_opt(o->combiner);
    if (!s->model_path || (o->vocab && !s->vocab_path) || (o->phi && !s->phi_path) ||
        (o->combiner && !s->combiner_path)) {
        free(s->model_path);
        free(s->vocab_path);
        free(s->phi_path);
        free(s->combiner_path);
        free(s);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    s->o.model = s->model_path;
    s->o.vocab = s->vocab_path;
    s->o.phi = s->phi_path;
    s->o.combiner = s->combiner_path;
    set_model_name(s, s->model_path);
    s->max_pixels = s->o.max_pixels ? s->o.max_pixels : ENC_IMAGE_DEFAULT_MAX_PIXELS;
    if (!s->o.max_image_work)
        s->o.max_image_work = ENC_SERVICE_DEFAULT_IMAGE_WORK;
    if (!s->o.max_request_work)
        s->o.max_request_work = ENC_SERVICE_DEFAULT_REQUEST_WORK;
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (s->o.threads == 0)
        s->o.threads = ncpu > 0 ? (int)(ncpu < 64 ? ncpu : 64) : 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_cond_init(&s->done_cv, &ca);
    pthread_condattr_destroy(&ca);

    p.activation = s->o.activation;
    p.threads = s->o.threads;
    p.precision = s->o.precision;
    rc = enc_clip_open(&s->model, s->model_path, &p);
    if (rc) {
        cr_error_wrap(rc, "model %s", s->model_path);
        goto out;
    }
    s->dim = enc_clip_embed_dim(s->model);
    s->size = enc_clip_image_size(s->model);
    if (enc_clip_context_length(s->model) != ENC_TOKENIZER_CONTEXT) {
        rc = cr_error_set(CR_ERR_MODEL, "model %s has a context length of %d; CLIP's "
                          "tokenizer needs %d", s->model_path,
                          enc_clip_context_length(s->model), ENC_TOKENIZER_CONTEXT);
        goto out;
    }
    rc = enc_tokenizer_open(&s->tok, s->vocab_path);
    if (rc) {
        cr_error_wrap(rc, "tokenizer");
        goto out;
    }
    rc = enc_composer_open(&s->composer, s->model, s->tok, s->phi_path, s->combiner_path);
    if (rc) {
        cr_error_wrap(rc, "composition heads");
        goto out;
    }
    if (s->o.method) {
        s->method = (enc_compose_method)s->o.method;
        if (!enc_composer_has(s->composer, s->method)) {
            rc = cr_error_set(CR_ERR_INVALID, "default compose method %s needs its head (%s)",
                              enc_compose_method_name(s->method),
                              s->method == ENC_COMPOSE_SEARLE ? "--phi" : "--combiner");
            goto out;
        }
    } else {
        s->method = enc_composer_has(s->composer, ENC_COMPOSE_SEARLE)     ? ENC_COMPOSE_SEARLE
                    : enc_composer_has(s->composer, ENC_COMPOSE_COMBINER) ? ENC_COMPOSE_COMBINER
                                                                          : ENC_COMPOSE_SUM;
    }
    if (pthread_create(&s->thread, NULL, infer_main, s) != 0) {
        rc = cr_error_set(CR_ERR_INTERNAL, "cannot start the inference thread");
        goto out;
    }
    s->started = 1;
    CR_INFO("encoder", "model %s: embed %d, image %d, %d OpenBLAS threads, batch %d / %d ms, "
            "queue %d, preprocess %s (others allowed: 0x%x), default method %s, limits: %zu "
            "pixels, work %llu per image / %llu per request",
            s->model_name, s->dim, s->size, s->o.threads, s->o.max_batch, s->o.batch_wait_ms,
            s->o.queue, enc_preprocess_name(s->o.preprocess),
            s->o.allow_preprocess & ~(1u << s->o.preprocess),
            enc_compose_method_name(s->method), s->max_pixels,
            (unsigned long long)s->o.max_image_work, (unsigned long long)s->o.max_request_work);
    *out = s;
out:
    if (rc)
        enc_service_close(&s);
    return rc;
}

void enc_service_close(enc_service **pp)
{
    enc_service *s;
    if (!pp || !*pp)
        return;
    s = *pp;
    *pp = NULL;
    if (s->started) {
        struct timespec ts;
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        /* Queued requests are bounded (queue, work limits, deadlines), so this returns long
         * before the limit; past it the thread still uses the model: leave it everything. */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CLOSE_LIMIT_MS / 1000;
        if (pthread_timedjoin_np(s->thread, NULL, &ts) != 0) {
            CR_ERROR("encoder", "the inference thread did not stop within %d ms; leaving the "
                     "service to it", CLOSE_LIMIT_MS);
            pthread_detach(s->thread);
            return;
        }
    }
    enc_composer_close(&s->composer);
    enc_tokenizer_close(&s->tok);
    enc_clip_close(&s->model);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->model_path);
    free(s->vocab_path);
    free(s->phi_path);
    free(s->combiner_path);
    free(s);
}

int enc_service_embed_dim(const enc_service *s)
{
    return s->dim;
}

const char *enc_service_model_name(const enc_service *s)
{
    return s->model_name;
}

const enc_clip *enc_service_model(const enc_service *s)
{
    return s->model;
}

const enc_tokenizer *enc_service_tokenizer(const enc_service *s)
{
    return s->tok;
}

enc_preprocess enc_service_preprocess(const enc_service *s)
{
    return s->o.preprocess;
}

int enc_service_has_method(const enc_service *s, enc_compose_method m)
{
    return m >= ENC_COMPOSE_SEARLE && m <= ENC_COMPOSE_IMAGE && enc_composer_has(s->composer, m);
}

enc_compose_method enc_service_default_method(const enc_service *s)
{
    return s->method;
}

/* ---- preparing requests (on the submitting thread) ---------------------------------------- */

/* A request's pipeline: the service's own, or another one it was started to allow (a
 * client choosing e.g. squarepad changes what an image costs and what its vector means). */
static cr_err resolve_preprocess(const enc_service *s, int pp, enc_preprocess *out)
{
    if (pp == ENC_SERVICE_PREPROCESS_DEFAULT || pp == (int)s->o.preprocess) {
        *out = s->o.preprocess;
        return CR_OK;
    }
    if (pp < ENC_PREPROCESS_CLIP || pp > ENC_PREPROCESS_SQUAREPAD)
        return cr_error_set(CR_ERR_INVALID, "unknown preprocess mode %d", pp);
    if (!(s->o.allow_preprocess & (1u << pp)))
        return cr_error_set(CR_ERR_INVALID,
                            "preprocessing '%s' is not allowed on this encoder: it serves '%s' "
                            "(start it with --allow-preprocess %s to accept it)",
                            enc_preprocess_name((enc_preprocess)pp),
                            enc_preprocess_name(s->o.preprocess),
                            enc_preprocess_name((enc_preprocess)pp));
    *out = (enc_preprocess)pp;
    return CR_OK;
}

/* What one request's images will cost, from their headers alone, against the limits:
 * decoded pixels and scratch per image (--max-pixels), work per image (--max-image-work)
 * and summed over the request (--max-request-work). Nothing is decoded or allocated, so a
 * request over a limit costs only its header reads. imgs[i] with len 0 are skipped. */
static cr_err check_cost(const enc_service *s, const enc_blob *const *imgs, size_t n,
                         enc_preprocess pp, const char *what)
{
    uint64_t total = 0;
    size_t max_scratch = 4 * s->max_pixels;
    for (size_t i = 0; i < n; i++) {
        enc_image_info info;
        enc_image_cost c;
        cr_err rc;
        if (!imgs[i] || imgs[i]->len == 0)
            continue;
        if (!imgs[i]->data)
            return cr_error_set(CR_ERR_INVALID, "%s %zu: empty image", what, i);
        rc = enc_image_probe(imgs[i]->data, imgs[i]->len, s->max_pixels, &info);
        if (!rc)
            rc = enc_image_preprocess_cost(info.width, info.height, info.mode, pp, s->size, &c);
        if (rc)
            return cr_error_wrap(rc, "%s %zu", what, i);
        if (c.scratch_bytes > max_scratch)
            return cr_error_set(CR_ERR_INVALID,
                                "%s %zu: %s preprocessing of a %dx%d image needs %zu bytes of "
                                "filter weights and buffers, over the limit of %zu (4 bytes "
                                "x --max-pixels)", what, i, enc_preprocess_name(pp),
                                info.width, info.height, c.scratch_bytes, max_scratch);
        if (c.work > s->o.max_image_work)
            return cr_error_set(CR_ERR_INVALID,
                                "%s %zu: %s preprocessing of a %dx%d image costs %llu pixel "
                                "samples, over the per-image limit of %llu (--max-image-work)",
                                what, i, enc_preprocess_name(pp), info.width, info.height,
                                (unsigned long long)c.work,
                                (unsigned long long)s->o.max_image_work);
        total += c.work;
        if (total > s->o.max_request_work)
            return cr_error_set(CR_ERR_INVALID,
                                "request refused before decoding: %s 0 to %zu (of %zu) already "
                                "cost %llu pixel samples of %s preprocessing, over the "
                                "per-request limit of %llu (--max-request-work); send fewer or "
                                "smaller images", what, i, n, (unsigned long long)total,
                                enc_preprocess_name(pp),
                                (unsigned long long)s->o.max_request_work);
    }
    return CR_OK;
}

/* Decodes and preprocesses one image into `pixels`; errors name the input. */
static cr_err prep_image(const enc_service *s, const enc_job *j, const enc_blob *b,
                         enc_preprocess pp, const char *what, size_t idx, float *pixels)
{
    enc_image *img = NULL;
    cr_err rc;
    if (!b->data || b->len == 0)
        return cr_error_set(CR_ERR_INVALID, "%s %zu: empty image", what, idx);
    rc = check_deadline(j, "decoding its next image");
    if (rc)
        return rc;
    rc = enc_image_decode(b->data, b->len, s->max_pixels, &img);
    if (!rc)
        rc = enc_image_preprocess(img, pp, s->size, pixels);
    enc_image_free(&img);
    if (rc)
        cr_error_wrap(rc, "%s %zu", what, idx);
    return rc;
}

/* Bounds a text before tokenizing it; the message names the input. */
static cr_err check_text(const char *t, const char *what, size_t idx)
{
    if (t && strnlen(t, ENC_SERVICE_MAX_TEXT_BYTES + 1) > ENC_SERVICE_MAX_TEXT_BYTES)
        return cr_error_set(CR_ERR_INVALID, "%s %zu: longer than %d bytes", what, idx,
                            ENC_SERVICE_MAX_TEXT_BYTES);
    if (t && !cr_utf8_valid(t, strlen(t)))
        return cr_error_set(CR_ERR_INVALID, "%s %zu: not valid UTF-8", what, idx);
    return CR_OK;
}

static cr_err job_alloc_out(const enc_service *s, enc_job *j, size_t n)
{
    j->n = (int)n;
    j->out = malloc(n * (size_t)s->dim * sizeof *j->out);
    j->truncated = calloc(n, sizeof *j->truncated);
    if (!j->out || !j->truncated)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}

cr_err enc_service_prep_images(const enc_service *s, enc_job *j, const enc_blob *images,
                               size_t n, int preprocess)
{
    size_t px = (size_t)3 * (size_t)s->size * (size_t)s->size;
    enc_preprocess pp = ENC_PREPROCESS_CLIP;
    cr_err rc;
    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "no images to encode");
    if (n > ENC_SERVICE_MAX_IMAGES)
        return cr_error_set(CR_ERR_INVALID, "%zu images in one request (at most %d)", n,
                            ENC_SERVICE_MAX_IMAGES);
    rc = resolve_preprocess(s, preprocess, &pp);
    if (rc)
        return rc;
    {
        const enc_blob *list[ENC_SERVICE_MAX_IMAGES];
        for (size_t i = 0; i < n; i++)
            list[i] = &images[i];
        rc = check_cost(s, list, n, pp, "image");
        if (rc)
            return rc;
    }
    j->kind = ENC_JOB_IMAGE;
    rc = job_alloc_out(s, j, n);
    if (rc)
        return rc;
    j->pixels = malloc(n * px * sizeof *j->pixels);
    if (!j->pixels)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for %zu images", n);
    for (size_t i = 0; i < n && !rc; i++)
        rc = prep_image(s, j, &images[i], pp, "image", i, j->pixels + i * px);
    return rc;
}

cr_err enc_service_prep_texts(const enc_service *s, enc_job *j, const char *const *texts,
                              size_t n)
{
    cr_err rc;
    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "no texts to encode");
    if (n > ENC_SERVICE_MAX_TEXTS)
        return cr_error_set(CR_ERR_INVALID, "%zu texts in one request (at most %d)", n,
                            ENC_SERVICE_MAX_TEXTS);
    j->kind = ENC_JOB_TEXT;
    rc = job_alloc_out(s, j, n);
    if (rc)
        return rc;
    j->tokens = malloc(n * ENC_TOKENIZER_CONTEXT * sizeof *j->tokens);
    if (!j->tokens)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = check_text(texts[i], "text", i);
        if (!rc) {
            rc = enc_tokenizer_encode(s->tok, texts[i] ? texts[i] : "",
                                      j->tokens + i * ENC_TOKENIZER_CONTEXT, NULL,
                                      &j->truncated[i]);
            if (rc)
                cr_error_wrap(rc, "text %zu", i);
        }
    }
    return rc;
}

static cr_err check_template(const char *t, size_t idx)
{
    const char *d;
    if (!t || !t[0])
        return CR_OK;
    d = strchr(t, '$');
    if (!d)
        return cr_error_set(CR_ERR_INVALID, "query %zu: the prompt template has no '$'", idx);
    return CR_OK;
}

cr_err enc_service_prep_compose(const enc_service *s, enc_job *j, const enc_service_query *q,
                                size_t n, int preprocess)
{
    size_t px = (size_t)3 * (size_t)s->size * (size_t)s->size, d = (size_t)s->dim;
    enc_preprocess pp = ENC_PREPROCESS_CLIP;
    int nimg = 0;
    cr_err rc;

    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "no queries to compose");
    if (n > ENC_SERVICE_MAX_QUERIES)
        return cr_error_set(CR_ERR_INVALID, "%zu queries in one request (at most %d)", n,
                            ENC_SERVICE_MAX_QUERIES);
    rc = resolve_preprocess(s, preprocess, &pp);
    if (rc)
        return rc;
    {
        const enc_blob *list[ENC_SERVICE_MAX_QUERIES];
        for (size_t i = 0; i < n; i++)
            list[i] = q[i].image.len > 0 ? &q[i].image : NULL;
        rc = check_cost(s, list, n, pp, "reference image of query");
        if (rc)
            return rc;
    }
    j->kind = ENC_JOB_COMPOSE;
    rc = job_alloc_out(s, j, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        nimg += q[i].image.len > 0;
    j->img_row = malloc(n * sizeof *j->img_row);
    j->refs = malloc(n * d * sizeof *j->refs);
    j->cin = calloc(n, sizeof *j->cin);
    j->pixels = nimg ? malloc((size_t)nimg * px * sizeof *j->pixels) : NULL;
    if (!j->img_row || !j->refs || !j->cin || (nimg && !j->pixels))
        return cr_error_set(CR_ERR_NOMEM, "out of memory for %zu queries", n);
    for (size_t i = 0; i < n; i++) {
        enc_compose_method m = q[i].method ? (enc_compose_method)q[i].method : s->method;
        if (m < ENC_COMPOSE_SEARLE || m > ENC_COMPOSE_IMAGE)
            return cr_error_set(CR_ERR_INVALID, "query %zu: unknown compose method %d", i,
                                q[i].method);
        if (!enc_composer_has(s->composer, m))
            return cr_error_set(CR_ERR_UNSUPPORTED,
                                "query %zu: compose method %s is not loaded on this encoder "
                                "(start it with %s)", i, enc_compose_method_name(m),
                                m == ENC_COMPOSE_SEARLE ? "--phi" : "--combiner");
        rc = check_text(q[i].caption, "query", i);
        if (!rc)
            rc = check_text(q[i].caption2, "caption2 of query", i);
        if (!rc)
            rc = check_text(q[i].prompt_template, "prompt template of query", i);
        if (!rc && m == ENC_COMPOSE_SEARLE)
            rc = check_template(q[i].prompt_template, i);
        if (rc)
            return rc;
        j->img_row[i] = -1;
        if (q[i].image.len > 0) {
            j->img_row[i] = j->n_img;
            rc = prep_image(s, j, &q[i].image, pp, "reference image of query", i,
                            j->pixels + (size_t)j->n_img * px);
            if (rc)
                return rc;
            j->n_img++;
        } else if (q[i].ref) {
            for (size_t k = 0; k < d; k++)
                if (!isfinite(q[i].ref[k]))
                    return cr_error_set(CR_ERR_INVALID,
                                        "query %zu: reference vector has a non-finite value "
                                        "at %zu", i, k);
            memcpy(j->refs + i * d, q[i].ref, d * sizeof *j->refs);
        } else {
            return cr_error_set(CR_ERR_INVALID, "query %zu has no reference (image or vector)",
                                i);
        }
        j->cin[i].ref = j->refs + i * d;
        j->cin[i].caption = q[i].caption ? q[i].caption : "";
        j->cin[i].caption2 = q[i].caption2 && q[i].caption2[0] ? q[i].caption2 : NULL;
        j->cin[i].method = m;
        j->cin[i].prompt_template =
            q[i].prompt_template && q[i].prompt_template[0] ? q[i].prompt_template : NULL;
    }
    return CR_OK;
}

/* ---- in-process calls -------------------------------------------------------------------- */

typedef struct sync_job {
    enc_job j;
    enc_service *s;
} sync_job;

static void sync_done(enc_job *j)
{
    sync_job *sj = (sync_job *)j;
    pthread_mutex_lock(&sj->s->mu);
    j->finished = 1;
    pthread_cond_broadcast(&sj->s->done_cv);
    pthread_mutex_unlock(&sj->s->mu);
}

/* Submits a prepared job, waits, copies the results out. Frees the job's buffers. */
static cr_err run_sync(enc_service *s, sync_job *sj, cr_err prep_rc, float *out, int *truncated)
{
    enc_job *j = &sj->j;
    cr_err rc = prep_rc;
    sj->s = s;
    j->done = sync_done;
    j->start_us = cr_clock_mono_us();
    if (!rc)
        rc = enc_service_submit(s, j);
    if (!rc) {
        pthread_mutex_lock(&s->mu);
        while (!j->finished)
            pthread_cond_wait(&s->done_cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        rc = j->rc;
        if (rc) {
            cr_error_set(rc, "%s", j->msg);
        } else {
            memcpy(out, j->out, (size_t)j->n * (size_t)s->dim * sizeof *out);
            if (truncated)
                memcpy(truncated, j->truncated, (size_t)j->n * sizeof *truncated);
        }
    }
    enc_job_clear(j);
    return rc;
}

cr_err enc_service_embed_images(enc_service *s, const enc_blob *images, size_t n,
                                int preprocess, int normalize, float *out)
{
    sync_job sj;
    memset(&sj, 0, sizeof sj);
    sj.j.normalize = normalize;
    return run_sync(s, &sj, enc_service_prep_images(s, &sj.j, images, n, preprocess), out, NULL);
}

cr_err enc_service_embed_pixels(enc_service *s, const float *pixels, size_t n, int normalize,
                                float *out)
{
    size_t px = (size_t)3 * (size_t)s->size * (size_t)s->size;
    sync_job sj;
    cr_err rc = CR_OK;
    memset(&sj, 0, sizeof sj);
    sj.j.normalize = normalize;
    sj.j.kind = ENC_JOB_IMAGE;
    if (n == 0 || n > ENC_SERVICE_MAX_IMAGES)
        rc = cr_error_set(CR_ERR_INVALID, "%zu images (1..%d)", n, ENC_SERVICE_MAX_IMAGES);
    if (!rc)
        rc = job_alloc_out(s, &sj.j, n);
    if (!rc) {
        sj.j.pixels = malloc(n * px * sizeof *sj.j.pixels);
        if (!sj.j.pixels)
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        else
            memcpy(sj.j.pixels, pixels, n * px * sizeof *pixels);
    }
    return run_sync(s, &sj, rc, out, NULL);
}

cr_err enc_service_embed_texts(enc_service *s, const char *const *texts, size_t n,
                               int normalize, float *out, int *truncated)
{
    sync_job sj;
    memset(&sj, 0, sizeof sj);
    sj.j.normalize = normalize;
    return run_sync(s, &sj, enc_service_prep_texts(s, &sj.j, texts, n), out, truncated);
}

cr_err enc_service_compose(enc_service *s, const enc_service_query *q, size_t n,
                           int preprocess, float *out, int *truncated)
{
    sync_job sj;
    memset(&sj, 0, sizeof sj);
    return run_sync(s, &sj, enc_service_prep_compose(s, &sj.j, q, n, preprocess), out, truncated);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void enc_service_stats_get(enc_service *s, enc_service_stats *st)
{
    double *lat = malloc(LAT_RING * sizeof *lat);
    size_t n;
    memset(st, 0, sizeof *st);
    st->embed_dim = (uint32_t)s->dim;
    pthread_mutex_lock(&s->mu);
    st->queue_depth = (uint32_t)s->queued;
    st->batches = s->batches;
    st->requests = s->requests;
    st->items = s->items;
    st->rejected = s->rejected;
    n = s->lat_n;
    if (lat)
        memcpy(lat, s->lat_ms, n * sizeof *lat);
    pthread_mutex_unlock(&s->mu);
    st->mean_batch_size = st->batches ? (double)st->items / (double)st->batches : 0;
    if (lat && n) {
        qsort(lat, n, sizeof *lat, cmp_double);
        st->p50_ms = lat[(size_t)(0.50 * (double)(n - 1) + 0.5)];
        st->p99_ms = lat[(size_t)(0.99 * (double)(n - 1) + 0.5)];
    }
    free(lat);
}
