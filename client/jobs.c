/* jobs.c — generation jobs in libcirrus: cirrus_generate (the request checked here before it
 * is sent), cirrus_job_status / _wait / _cancel, cirrus_jobs, and the cirrus_job snapshot. */
#include "client/jobs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/api_impl.h"
#include "common/clock.h"
#include "common/validate.h"

#define DEFAULT_WIDTH 384
#define DEFAULT_HEIGHT 512
#define POSE_MAX 64          /* keypoints of one pose (OpenPose has 18, COCO-WholeBody 133/2) */
#define POLL_FIRST_MS 20     /* cirrus_job_wait: the first poll comes soon (short jobs) ... */
#define POLL_MAX_MS 250      /* ... then back off to four polls a second */
#define LIST_DEFAULT 50

/* A snapshot: a JobInfo inside a reply. A job of a list borrows the list's reply. */
struct cirrus_job {
    Cirrus__V1__Response *resp; /* owned; NULL for a job of a list */
    const Cirrus__V1__JobInfo *info;
};

struct cirrus_job_list {
    Cirrus__V1__Response *resp; /* owned */
    cirrus_job *jobs;
    size_t n;
};

/* ---- names ---------------------------------------------------------------------------- */

_Static_assert((int)CIRRUS_JOB_TRYON == (int)CIRRUS__V1__JOB_KIND__JOB_TRYON, "kinds");
_Static_assert((int)CIRRUS_JOB_EDIT == (int)CIRRUS__V1__JOB_KIND__JOB_EDIT, "kinds");
_Static_assert((int)CIRRUS_JOB_TEXT2IMAGE == (int)CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE, "kinds");
_Static_assert((int)CIRRUS_JOB_EXPIRED == (int)CIRRUS__V1__JOB_STATE__JOB_EXPIRED, "states");
_Static_assert((int)CIRRUS_JOB_CANCELLED == (int)CIRRUS__V1__JOB_STATE__JOB_CANCELLED, "states");

static const char *const kind_names[] = {NULL, "tryon", "edit", "text2image"};
static const char *const state_names[] = {"queued", "running", "succeeded",
                                          "failed", "cancelled", "expired"};
static const char *const categories[] = {"upper_body", "lower_body", "dresses"};

const char *cirrus_job_state_name(cirrus_job_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "unknown";
}

const char *cirrus_job_kind_name(cirrus_job_kind k)
{
    return k >= CIRRUS_JOB_TRYON && k <= CIRRUS_JOB_TEXT2IMAGE ? kind_names[k] : "unknown";
}

cirrus_err cirrus_job_kind_parse(const char *name, cirrus_job_kind *out)
{
    for (int k = CIRRUS_JOB_TRYON; name && out && k <= CIRRUS_JOB_TEXT2IMAGE; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (cirrus_job_kind)k;
            return CIRRUS_OK;
        }
    }
    return (cirrus_err)cr_error_set(CR_ERR_INVALID, "kind: unknown '%.64s' (expected tryon, "
                                    "edit or text2image)", name ? name : "(null)");
}

/* ---- checks --------------------------------------------------------------------------- */

/* By signature: a PNG, a JPEG (SOI + a marker) or a WebP (RIFF....WEBP). */
static int image_signature_ok(const uint8_t *p, size_t n)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(p, png, 8) == 0)
        return 1;
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return 1;
    return n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0;
}

static cr_err check_image(const ProtobufCBinaryData *b, const char *field, int required,
                          const char *why)
{
    if (!b->len)
        return required ? cr_error_set(CR_ERR_INVALID, "%s: required %s", field, why) : CR_OK;
    if (b->len > CIRRUS_GEN_IMAGE_MAX)
        return cr_error_set(CR_ERR_INVALID, "%s: %zu bytes, more than %u (%u MiB)", field,
                            b->len, CIRRUS_GEN_IMAGE_MAX, CIRRUS_GEN_IMAGE_MAX >> 20);
    if (!image_signature_ok(b->data, b->len))
        return cr_error_set(CR_ERR_INVALID, "%s: not a PNG, JPEG or WebP image", field);
    return CR_OK;
}

static cr_err check_text(const char *s, size_t max, const char *field)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return cr_error_set(CR_ERR_INVALID, "%s: %zu bytes, more than %zu", field, n, max);
    if (!cr_utf8_valid(s ? s : "", n))
        return cr_error_set(CR_ERR_INVALID, "%s: not UTF-8", field);
    return CR_OK;
}

static cr_err check_category(const char *cat, int required)
{
    if (!cat || !cat[0])
        return required ? cr_error_set(CR_ERR_INVALID, "category: required for this kind "
                                       "(upper_body, lower_body or dresses)")
                        : CR_OK;
    for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++)
        if (strcmp(cat, categories[i]) == 0)
            return CR_OK;
    return cr_error_set(CR_ERR_INVALID, "category: unknown '%.64s' (expected upper_body, "
                        "lower_body or dresses)", cat);
}

/* What each kind needs: the person image, the garment, the category, the text. */
static cr_err check_inputs(const Cirrus__V1__GenerateRequest *g)
{
    int tryon = g->kind == CIRRUS__V1__JOB_KIND__JOB_TRYON;
    int edit = g->kind == CIRRUS__V1__JOB_KIND__JOB_EDIT;
    int has_item = g->garment_item_id && g->garment_item_id[0];
    int has_text = g->text && g->text[0];
    cr_err rc;

    if (!tryon && !edit && g->kind != CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE)
        return cr_error_set(CR_ERR_INVALID, "kind: unknown (%d); expected tryon, edit or "
                            "text2image", (int)g->kind);
    if ((rc = check_image(&g->person_image, "person_image", tryon || edit,
                          "for tryon and edit")))
        return rc;
    if (has_item && g->garment_image.len)
        return cr_error_set(CR_ERR_INVALID, "garment: give either garment_image or "
                            "garment_item_id, not both");
    if (tryon && !has_item && !g->garment_image.len)
        return cr_error_set(CR_ERR_INVALID, "garment: tryon needs garment_image or "
                            "garment_item_id");
    if ((rc = check_image(&g->garment_image, "garment_image", 0, "")))
        return rc;
    if (has_item && (rc = cr_validate_id(g->garment_item_id)))
        return cr_error_wrap(rc, "garment_item_id");
    if ((rc = check_category(g->category, tryon || edit)))
        return rc;
    if ((rc = check_image(&g->mask, "mask", 0, "")) ||
        (rc = check_image(&g->sketch, "sketch", 0, "")))
        return rc;
    if ((rc = check_text(g->text, CIRRUS_GEN_TEXT_MAX, "text")))
        return rc;
    if (!has_text && (g->kind == CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE ||
                      (edit && !g->sketch.len)))
        return cr_error_set(CR_ERR_INVALID, "text: required for %s",
                            edit ? "edit (or a sketch)" : "text2image");
    return CR_OK;
}

static cr_err check_size(uint32_t v, const char *field)
{
    if (v && (v < CIRRUS_GEN_SIZE_MIN || v > CIRRUS_GEN_SIZE_MAX || v % 8))
        return cr_error_set(CR_ERR_INVALID, "%s: %u is not a multiple of 8 in %d..%d", field, v,
                            CIRRUS_GEN_SIZE_MIN, CIRRUS_GEN_SIZE_MAX);
    return CR_OK;
}

/* Steps, guidance, size, pose, key. */
static cr_err check_params(const Cirrus__V1__GenerateRequest *g)
{
    cr_err rc;
    if (g->steps > CIRRUS_GEN_STEPS_MAX)
        return cr_error_set(CR_ERR_INVALID, "steps: %u is outside 1..%d", g->steps,
                            CIRRUS_GEN_STEPS_MAX);
    if (!isfinite(g->guidance) || g->guidance < 0 || g->guidance > CIRRUS_GEN_GUIDANCE_MAX)
        return cr_error_set(CR_ERR_INVALID, "guidance: %g is outside 0..%g", (double)g->guidance,
                            (double)CIRRUS_GEN_GUIDANCE_MAX);
    if ((rc = check_size(g->width, "width")) || (rc = check_size(g->height, "height")))
        return rc;
    if (g->n_pose > POSE_MAX)
        return cr_error_set(CR_ERR_INVALID, "pose: %zu keypoints, more than %d", g->n_pose,
                            POSE_MAX);
    for (size_t i = 0; i < g->n_pose; i++) {
        const Cirrus__V1__Keypoint *k = g->pose[i];
        if (!k || !isfinite(k->x) || !isfinite(k->y) || !isfinite(k->score))
            return cr_error_set(CR_ERR_INVALID, "pose[%zu]: not finite", i);
    }
    return check_text(g->idempotency_key, CIRRUS_JOB_ID_MAX, "idempotency_key");
}

cr_err cirrus_generate_check(const Cirrus__V1__GenerateRequest *g)
{
    cr_err rc = check_inputs(g);
    return rc ? rc : check_params(g);
}

cr_err cirrus_job_id_check(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (!n || n > CIRRUS_JOB_ID_MAX || !cr_utf8_valid(id, n) || strchr(id, '/'))
        return cr_error_set(CR_ERR_INVALID, "job id: expected 1..%d bytes of UTF-8 without "
                            "'/'", CIRRUS_JOB_ID_MAX);
    return CR_OK;
}

/* ---- snapshots ------------------------------------------------------------------------ */

static const Cirrus__V1__JobInfo *info_of(const cirrus_job *j)
{
    return j ? j->info : NULL;
}

const Cirrus__V1__JobInfo *cirrus_job_info(const cirrus_job *j)
{
    return info_of(j);
}

const char *cirrus_job_id(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i && i->job_id ? i->job_id : "";
}

cirrus_job_state cirrus_job_get_state(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? (cirrus_job_state)i->state : CIRRUS_JOB_QUEUED;
}

cirrus_job_kind cirrus_job_get_kind(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? (cirrus_job_kind)i->kind : (cirrus_job_kind)0;
}

int cirrus_job_ended(const cirrus_job *j)
{
    cirrus_job_state s = cirrus_job_get_state(j);
    return j && s != CIRRUS_JOB_QUEUED && s != CIRRUS_JOB_RUNNING;
}

float cirrus_job_progress(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->progress : 0.0f;
}

uint32_t cirrus_job_step(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->step : 0;
}

uint32_t cirrus_job_attempts(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->attempts : 0;
}

const char *cirrus_job_worker(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i && i->worker ? i->worker : "";
}

const char *cirrus_job_error(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i && i->error ? i->error : "";
}

uint64_t cirrus_job_created_ms(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->created_ms : 0;
}

uint64_t cirrus_job_started_ms(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->started_ms : 0;
}

uint64_t cirrus_job_ended_ms(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? i->ended_ms : 0;
}

int cirrus_job_has_image(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    return i ? (i->has_image || i->image.len) : 0;
}

const void *cirrus_job_image(const cirrus_job *j, size_t *len)
{
    const Cirrus__V1__JobInfo *i = info_of(j);
    if (len)
        *len = i ? i->image.len : 0;
    return i && i->image.len ? i->image.data : NULL;
}

void cirrus_job_free(cirrus_job **pj)
{
    cirrus_job *j = pj ? *pj : NULL;
    if (!j)
        return;
    cirrus_response_free(j->resp);
    free(j);
    *pj = NULL;
}

/* Wraps the JobInfo `info` of resp as a snapshot (takes ownership of resp). */
static cirrus_err job_new(cirrus *c, Cirrus__V1__Response *resp, const Cirrus__V1__JobInfo *info,
                          cirrus_job **out)
{
    cirrus_job *j = calloc(1, sizeof *j);
    if (!j) {
        cirrus_response_free(resp);
        return api_failf(c, CR_ERR_NOMEM, "out of memory");
    }
    j->resp = resp;
    j->info = info;
    *out = j;
    return api_ok(c, CIRRUS_OK);
}

/* ---- calls ---------------------------------------------------------------------------- */

cirrus_generate_params cirrus_generate_default(void)
{
    cirrus_generate_params p;
    memset(&p, 0, sizeof p);
    p.kind = CIRRUS_JOB_TRYON;
    return p;
}

/* Borrows the caller's bytes into a protobuf field; a pointer with length 0 is an error, not
 * an absent image. */
static cr_err take_bytes(const void *p, size_t n, const char *field, ProtobufCBinaryData *b)
{
    if (p && !n)
        return cr_error_set(CR_ERR_INVALID, "%s: empty (length 0)", field);
    b->data = (uint8_t *)p;
    b->len = p ? n : 0;
    return CR_OK;
}

static cr_err params_to_wire(const cirrus_generate_params *p, Cirrus__V1__GenerateRequest *g)
{
    cr_err rc;
    g->kind = (Cirrus__V1__JobKind)p->kind;
    if ((rc = take_bytes(p->person_image, p->person_image_len, "person_image",
                         &g->person_image)) ||
        (rc = take_bytes(p->garment_image, p->garment_image_len, "garment_image",
                         &g->garment_image)) ||
        (rc = take_bytes(p->mask, p->mask_len, "mask", &g->mask)) ||
        (rc = take_bytes(p->sketch, p->sketch_len, "sketch", &g->sketch)))
        return rc;
    if (p->garment_item_id)
        g->garment_item_id = (char *)p->garment_item_id;
    if (p->category)
        g->category = (char *)p->category;
    if (p->text)
        g->text = (char *)p->text;
    if (p->idempotency_key) {
        if (!p->idempotency_key[0])
            return cr_error_set(CR_ERR_INVALID, "idempotency_key: empty (NULL means none)");
        g->idempotency_key = (char *)p->idempotency_key;
    }
    g->steps = p->steps;
    g->guidance = p->guidance;
    g->seed = p->seed;
    g->width = p->width ? p->width : DEFAULT_WIDTH;
    g->height = p->height ? p->height : DEFAULT_HEIGHT;
    g->job_deadline_ms = p->deadline_ms;
    return cirrus_generate_check(g);
}

cirrus_err cirrus_generate(cirrus *c, const cirrus_generate_params *p, cirrus_job **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GenerateRequest g = CIRRUS__V1__GENERATE_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    crc = p && out ? params_to_wire(p, &g)
                   : cr_error_set(CR_ERR_INVALID, "cirrus_generate: %s is NULL", p ? "out" : "p");
    if (crc)
        return api_fail(c, crc);
    req.op_case = CIRRUS__V1__REQUEST__OP_GENERATE;
    req.generate = &g;
    rc = api_call(c, &req, p->timeout_ms, &resp);
    if (rc)
        return rc;
    return job_new(c, resp, resp->generate, out);
}

/* One JobStatus call with the handle's timeout. */
static cirrus_err status_call(cirrus *c, const char *job_id, int with_image, cirrus_job **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__JobStatusRequest st = CIRRUS__V1__JOB_STATUS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_err rc;
    st.job_id = (char *)job_id;
    st.include_image = with_image != 0;
    req.op_case = CIRRUS__V1__REQUEST__OP_JOB_STATUS;
    req.job_status = &st;
    rc = api_call(c, &req, 0, &resp);
    if (rc)
        return rc;
    return job_new(c, resp, resp->job_status, out);
}

/* The common checks of the calls that name a job. */
static cr_err job_args(const char *job_id, const void *out, const char *fn)
{
    if (!out)
        return cr_error_set(CR_ERR_INVALID, "%s: out is NULL", fn);
    return cirrus_job_id_check(job_id);
}

cirrus_err cirrus_job_status(cirrus *c, const char *job_id, int with_image, cirrus_job **out)
{
    cr_err crc;
    if (!c)
        return CIRRUS_ERR_INVALID;
    if ((crc = job_args(job_id, out, "cirrus_job_status")))
        return api_fail(c, crc);
    return status_call(c, job_id, with_image, out);
}

/* A change worth reporting to the progress callback. */
static int job_changed(const cirrus_job *a, const cirrus_job *b)
{
    return !a || cirrus_job_get_state(a) != cirrus_job_get_state(b) ||
           cirrus_job_step(a) != cirrus_job_step(b) ||
           cirrus_job_progress(a) != cirrus_job_progress(b) ||
           cirrus_job_attempts(a) != cirrus_job_attempts(b);
}

/* The ended job j, with its image when asked and it has one (replaces *j). */
static cirrus_err wait_finish(cirrus *c, const char *job_id, int with_image, cirrus_job **j)
{
    cirrus_job *full = NULL;
    cirrus_err rc;
    if (!with_image || cirrus_job_get_state(*j) != CIRRUS_JOB_SUCCEEDED)
        return api_ok(c, CIRRUS_OK);
    rc = status_call(c, job_id, 1, &full);
    if (rc)
        return rc;
    cirrus_job_free(j);
    *j = full;
    return api_ok(c, CIRRUS_OK);
}

cirrus_err cirrus_job_wait(cirrus *c, const char *job_id, uint32_t timeout_ms, int with_image,
                           cirrus_job_progress_fn progress, void *ctx, cirrus_job **out)
{
    cirrus_job *last = NULL, *now = NULL;
    uint64_t start = cr_clock_mono_ms(), pause = POLL_FIRST_MS, waited;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    if ((crc = job_args(job_id, out, "cirrus_job_wait")))
        return api_fail(c, crc);
    if (!timeout_ms)
        timeout_ms = c->timeout_ms;
    for (;;) {
        rc = status_call(c, job_id, 0, &now);
        if (rc) {
            cirrus_job_free(&last);
            return rc;
        }
        if (progress && job_changed(last, now) && progress(ctx, now)) {
            *out = now;
            cirrus_job_free(&last);
            return api_failf(c, CR_TIMEOUT, "job %s: stopped waiting (progress callback)",
                             job_id);
        }
        cirrus_job_free(&last);
        last = now;
        now = NULL;
        if (cirrus_job_ended(last))
            break;
        waited = cr_clock_mono_ms() - start;
        if (waited >= timeout_ms) {
            *out = last;
            return api_failf(c, CR_TIMEOUT, "job %s: still %s after %u ms", job_id,
                             cirrus_job_state_name(cirrus_job_get_state(last)), timeout_ms);
        }
        cr_clock_sleep_ms(pause < timeout_ms - waited ? pause : timeout_ms - waited);
        pause = pause * 2 < POLL_MAX_MS ? pause * 2 : POLL_MAX_MS;
    }
    rc = wait_finish(c, job_id, with_image, &last);
    if (rc) {
        cirrus_job_free(&last);
        return rc;
    }
    *out = last;
    return CIRRUS_OK;
}

cirrus_err cirrus_job_cancel(cirrus *c, const char *job_id, cirrus_job **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__CancelJobRequest cj = CIRRUS__V1__CANCEL_JOB_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    if ((crc = cirrus_job_id_check(job_id)))
        return api_fail(c, crc);
    cj.job_id = (char *)job_id;
    req.op_case = CIRRUS__V1__REQUEST__OP_CANCEL_JOB;
    req.cancel_job = &cj;
    rc = api_call(c, &req, 0, &resp);
    if (rc)
        return rc;
    if (!out) {
        cirrus_response_free(resp);
        return api_ok(c, CIRRUS_OK);
    }
    return job_new(c, resp, resp->cancel_job, out);
}

cirrus_err cirrus_jobs(cirrus *c, uint32_t limit, cirrus_job_list **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ListJobsRequest lj = CIRRUS__V1__LIST_JOBS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_job_list *l = NULL;
    cirrus_err rc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    if (!out || limit > CIRRUS_JOBS_LIST_MAX)
        return api_failf(c, CR_ERR_INVALID, out ? "limit: %u is outside 1..%d"
                                                : "cirrus_jobs: out is NULL (limit %u, max %d)",
                         limit, CIRRUS_JOBS_LIST_MAX);
    lj.limit = limit ? limit : LIST_DEFAULT;
    req.op_case = CIRRUS__V1__REQUEST__OP_LIST_JOBS;
    req.list_jobs = &lj;
    rc = api_call(c, &req, 0, &resp);
    if (rc)
        return rc;
    l = calloc(1, sizeof *l);
    if (l && resp->list_jobs->n_jobs)
        l->jobs = calloc(resp->list_jobs->n_jobs, sizeof *l->jobs);
    if (!l || (resp->list_jobs->n_jobs && !l->jobs)) {
        free(l);
        cirrus_response_free(resp);
        return api_failf(c, CR_ERR_NOMEM, "out of memory");
    }
    l->resp = resp;
    l->n = resp->list_jobs->n_jobs;
    for (size_t i = 0; i < l->n; i++)
        l->jobs[i].info = resp->list_jobs->jobs[i];
    *out = l;
    return api_ok(c, CIRRUS_OK);
}

size_t cirrus_job_list_count(const cirrus_job_list *l)
{
    return l ? l->n : 0;
}

const cirrus_job *cirrus_job_list_at(const cirrus_job_list *l, size_t i)
{
    return l && i < l->n ? &l->jobs[i] : NULL;
}

void cirrus_job_list_free(cirrus_job_list **pl)
{
    cirrus_job_list *l = pl ? *pl : NULL;
    if (!l)
        return;
    cirrus_response_free(l->resp);
    free(l->jobs);
    free(l);
    *pl = NULL;
}
