/* jobs_api.c — POST /v1/generate, GET/DELETE /v1/jobs/{id}, GET /v1/jobs/{id}/image and
 * GET /v1/jobs (jobs_api.h): JSON to a GenerateRequest, checked as libcirrus checks it
 * (client/jobs.h), then the broker's answer as JSON (jobs_json.h) or the PNG. */
#include "gateway/jobs_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/jobs.h"
#include "gateway/base64.h"
#include "gateway/jobs_json.h"

#define POSE_FIELDS_MAX 64 /* keypoints read from a body; libcirrus's check bounds them too */

/* ---- routing -------------------------------------------------------------------------- */

cr_err gw_jobs_match(const char *method, const char *url, gw_op *op, char **id)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    int del = strcmp(method, "DELETE") == 0;
    const char *rest, *slash;
    size_t n;
    *op = GW_OP_NONE;
    *id = NULL;
    if (strcmp(url, "/v1/generate") == 0) {
        *op = post ? GW_OP_GENERATE : GW_OP_NONE;
        return CR_OK;
    }
    if (strcmp(url, "/v1/jobs") == 0) {
        *op = get ? GW_OP_JOBS_LIST : GW_OP_NONE;
        return CR_OK;
    }
    if (strncmp(url, "/v1/jobs/", 9) != 0 || !url[9])
        return CR_OK;
    rest = url + 9;
    slash = strchr(rest, '/');
    n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash && !(strcmp(slash, "/image") == 0 && get))
        return CR_OK; /* no such resource under the job */
    if (!slash && !get && !del)
        return CR_OK;
    if (!(*id = strndup(rest, n)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (cirrus_job_id_check(*id)) {
        free(*id);
        *id = NULL;
        return CR_ERR_INVALID;
    }
    *op = slash ? GW_OP_JOB_IMAGE : get ? GW_OP_JOB_GET : GW_OP_JOB_CANCEL;
    return CR_OK;
}

/* ---- POST /v1/generate: the body ------------------------------------------------------ */

static const char *const gen_fields[] = {
    "kind",  "person_image", "garment_image", "garment_item_id", "category", "text",
    "mask",  "sketch",       "pose",          "steps",           "guidance", "seed",
    "width", "height",       "idempotency_key", "deadline_ms"};

/* The request's owned parts: decoded images, keypoints. Strings point into the JSON. */
typedef struct gen_body {
    Cirrus__V1__GenerateRequest g;
    Cirrus__V1__Keypoint *kp, **pkp;
} gen_body;

static void gen_body_free(gen_body *b)
{
    free(b->g.person_image.data);
    free(b->g.garment_image.data);
    free(b->g.mask.data);
    free(b->g.sketch.data);
    free(b->kp);
    free(b->pkp);
}

static cr_err check_fields(json_t *j)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        size_t f, n = sizeof gen_fields / sizeof gen_fields[0];
        for (f = 0; f < n && strcmp(key, gen_fields[f]) != 0; f++)
            ;
        if (f == n)
            return cr_error_set(CR_ERR_INVALID, "%.64s: unknown field", key);
    }
    return CR_OK;
}

/* A string field into *out (NULL when absent; it points into j). */
static cr_err get_string(json_t *j, const char *field, char **out)
{
    json_t *v = json_object_get(j, field);
    if (!v)
        return CR_OK;
    if (!json_is_string(v))
        return cr_error_set(CR_ERR_INVALID, "%s: expected a string", field);
    *out = (char *)json_string_value(v);
    return CR_OK;
}

static cr_err get_image(json_t *j, const char *field, ProtobufCBinaryData *out)
{
    json_t *v = json_object_get(j, field);
    if (!v)
        return CR_OK;
    if (!json_is_string(v) || !json_string_length(v))
        return cr_error_set(CR_ERR_INVALID, "%s: expected a non-empty base64 string", field);
    return gw_base64_decode(json_string_value(v), field, GW_IMAGE_MAX, GW_ERR_TOO_LARGE, out);
}

/* A non-negative integer field up to max (the ranges themselves are cirrus_generate_check's,
 * so that the HTTP API and libcirrus say the same). */
static cr_err get_uint(json_t *j, const char *field, json_int_t max, uint64_t *out)
{
    json_t *v = json_object_get(j, field);
    if (!v)
        return CR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return cr_error_set(CR_ERR_INVALID, "%s: expected an integer in 0..%lld", field,
                            (long long)max);
    *out = (uint64_t)json_integer_value(v);
    return CR_OK;
}

static cr_err get_pose(json_t *j, gen_body *b)
{
    json_t *arr = json_object_get(j, "pose"), *p;
    size_t i, n = json_array_size(arr);
    if (!arr)
        return CR_OK;
    if (!json_is_array(arr) || n > POSE_FIELDS_MAX)
        return cr_error_set(CR_ERR_INVALID, "pose: expected an array of at most %d "
                            "{\"x\", \"y\", \"score\"} keypoints", POSE_FIELDS_MAX);
    if (n && (!(b->kp = calloc(n, sizeof *b->kp)) || !(b->pkp = calloc(n, sizeof *b->pkp))))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, p)
    {
        json_t *x = json_object_get(p, "x"), *y = json_object_get(p, "y");
        json_t *s = json_object_get(p, "score");
        cirrus__v1__keypoint__init(&b->kp[i]);
        if (!json_is_object(p) || !json_is_number(x) || !json_is_number(y) ||
            (s && !json_is_number(s)))
            return cr_error_set(CR_ERR_INVALID, "pose[%zu]: expected {\"x\": n, \"y\": n, "
                                "\"score\"?: n}", i);
        b->kp[i].x = (float)json_number_value(x);
        b->kp[i].y = (float)json_number_value(y);
        b->kp[i].score = s ? (float)json_number_value(s) : 0.0f;
        b->pkp[i] = &b->kp[i];
    }
    b->g.pose = b->pkp;
    b->g.n_pose = n;
    return CR_OK;
}

static cr_err get_numbers(json_t *j, Cirrus__V1__GenerateRequest *g)
{
    uint64_t steps = 0, seed = 0, w = 0, h = 0, dl = 0;
    json_t *gd = json_object_get(j, "guidance");
    cr_err rc;
    if ((rc = get_uint(j, "steps", UINT32_MAX, &steps)) ||
        (rc = get_uint(j, "seed", INT64_MAX, &seed)) ||
        (rc = get_uint(j, "width", UINT32_MAX, &w)) ||
        (rc = get_uint(j, "height", UINT32_MAX, &h)) ||
        (rc = get_uint(j, "deadline_ms", UINT32_MAX, &dl)))
        return rc;
    if (gd && (!json_is_number(gd) || !isfinite(json_number_value(gd))))
        return cr_error_set(CR_ERR_INVALID, "guidance: expected a number");
    g->steps = (uint32_t)steps;
    g->seed = seed;
    g->width = (uint32_t)(w ? w : 384);
    g->height = (uint32_t)(h ? h : 512);
    g->job_deadline_ms = (uint32_t)dl;
    g->guidance = gd ? (float)json_number_value(gd) : 0.0f;
    return CR_OK;
}

static cr_err gen_from_json(json_t *j, gen_body *b)
{
    Cirrus__V1__GenerateRequest *g = &b->g;
    char *kind = NULL;
    cirrus_job_kind k = CIRRUS_JOB_TRYON;
    cr_err rc;
    if ((rc = check_fields(j)) || (rc = get_string(j, "kind", &kind)))
        return rc;
    if (kind && (rc = (cr_err)cirrus_job_kind_parse(kind, &k)))
        return rc;
    g->kind = (Cirrus__V1__JobKind)k;
    if ((rc = get_string(j, "garment_item_id", &g->garment_item_id)) ||
        (rc = get_string(j, "category", &g->category)) ||
        (rc = get_string(j, "text", &g->text)) ||
        (rc = get_string(j, "idempotency_key", &g->idempotency_key)) ||
        (rc = get_image(j, "person_image", &g->person_image)) ||
        (rc = get_image(j, "garment_image", &g->garment_image)) ||
        (rc = get_image(j, "mask", &g->mask)) || (rc = get_image(j, "sketch", &g->sketch)) ||
        (rc = get_pose(j, b)) || (rc = get_numbers(j, g)))
        return rc;
    /* Only a key that was sent can be empty: a missing one is the protobuf default "". */
    if (json_object_get(j, "idempotency_key") && g->idempotency_key && !g->idempotency_key[0])
        return cr_error_set(CR_ERR_INVALID, "idempotency_key: empty (leave it out for none)");
    return cirrus_generate_check(g);
}

/* ---- answers -------------------------------------------------------------------------- */

static void answer_job(gw_answer *a, unsigned status, const Cirrus__V1__JobInfo *info)
{
    char loc[300];
    gw_answer_json(a, status, cirrus_job_info_json(info));
    if (status == 202 && a->status == 202 &&
        snprintf(loc, sizeof loc, "/v1/jobs/%s", info->job_id) < (int)sizeof loc)
        a->location = strdup(loc); /* a Location is a courtesy: none if out of memory */
}

/* A broker error as the answer; `what` names the job in a not-found message. */
static void answer_call_error(gw_answer *a, cr_err rc, const char *job_id)
{
    char msg[512];
    if (rc == CR_NOTFOUND && job_id) {
        snprintf(msg, sizeof msg, "no such job '%s' (%s)", job_id, cr_error_message());
        gw_answer_error(a, CR_NOTFOUND, msg);
        return;
    }
    gw_answer_error(a, rc, cr_error_message());
}

static void serve_generate(gw_caller *c, const char *body, size_t len, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    json_t *j = gw_body_object(body, len, a);
    gen_body b;
    cr_err rc;
    if (!j)
        return;
    memset(&b, 0, sizeof b);
    cirrus__v1__generate_request__init(&b.g);
    rc = gen_from_json(j, &b);
    if (!rc) {
        req.op_case = CIRRUS__V1__REQUEST__OP_GENERATE;
        req.generate = &b.g;
        rc = gw_api_call(c, &req, CIRRUS__V1__RESPONSE__RESULT_GENERATE, &resp);
        /* A garment item that does not exist is a bad request, not a missing resource. */
        if (rc == CR_NOTFOUND)
            rc = CR_ERR_INVALID;
    }
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_job(a, 202, resp->generate);
    cirrus_response_free(resp);
    gen_body_free(&b);
    json_decref(j);
}

/* JobStatus of id into *resp. */
static cr_err job_status(gw_caller *c, const char *id, int with_image,
                         Cirrus__V1__Response **resp)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__JobStatusRequest st = CIRRUS__V1__JOB_STATUS_REQUEST__INIT;
    st.job_id = (char *)id;
    st.include_image = with_image != 0;
    req.op_case = CIRRUS__V1__REQUEST__OP_JOB_STATUS;
    req.job_status = &st;
    return gw_api_call(c, &req, CIRRUS__V1__RESPONSE__RESULT_JOB_STATUS, resp);
}

static void serve_job_get(gw_caller *c, const char *id, gw_answer *a)
{
    Cirrus__V1__Response *resp = NULL;
    cr_err rc = job_status(c, id, 0, &resp);
    if (rc)
        answer_call_error(a, rc, id);
    else
        answer_job(a, 200, resp->job_status);
    cirrus_response_free(resp);
}

/* The PNG itself; 409 while the job runs, 404 when it ended without one. */
static void serve_job_image(gw_caller *c, const char *id, gw_answer *a)
{
    Cirrus__V1__Response *resp = NULL;
    const Cirrus__V1__JobInfo *j;
    char msg[512];
    cr_err rc = job_status(c, id, 1, &resp);
    if (rc) {
        answer_call_error(a, rc, id);
        goto out;
    }
    j = resp->job_status;
    if (j->image.len) {
        if (!(a->out = malloc(j->image.len))) {
            gw_answer_error(a, CR_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(a->out, j->image.data, j->image.len);
        a->out_len = j->image.len;
        a->type = "image/png";
        a->status = 200;
        goto out;
    }
    snprintf(msg, sizeof msg, "job '%s' is %s%s%s", id,
             cirrus_job_state_name((cirrus_job_state)j->state),
             j->state == CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED ? ": its result was evicted"
             : j->error && j->error[0]                       ? ": "
                                                             : "",
             j->state == CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED ? "" : j->error ? j->error : "");
    gw_answer_error(a, j->state == CIRRUS__V1__JOB_STATE__JOB_QUEUED ||
                           j->state == CIRRUS__V1__JOB_STATE__JOB_RUNNING
                       ? GW_ERR_NOT_READY
                       : CR_NOTFOUND,
                    msg);
out:
    cirrus_response_free(resp);
}

static void serve_job_cancel(gw_caller *c, const char *id, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__CancelJobRequest cj = CIRRUS__V1__CANCEL_JOB_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    cj.job_id = (char *)id;
    req.op_case = CIRRUS__V1__REQUEST__OP_CANCEL_JOB;
    req.cancel_job = &cj;
    rc = gw_api_call(c, &req, CIRRUS__V1__RESPONSE__RESULT_CANCEL_JOB, &resp);
    if (rc)
        answer_call_error(a, rc, id);
    else
        answer_job(a, 200, resp->cancel_job);
    cirrus_response_free(resp);
}

static void serve_jobs_list(gw_caller *c, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ListJobsRequest lj = CIRRUS__V1__LIST_JOBS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    lj.limit = 50;
    req.op_case = CIRRUS__V1__REQUEST__OP_LIST_JOBS;
    req.list_jobs = &lj;
    rc = gw_api_call(c, &req, CIRRUS__V1__RESPONSE__RESULT_LIST_JOBS, &resp);
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        gw_answer_json(a, 200, cirrus_job_list_json(resp->list_jobs));
    cirrus_response_free(resp);
}

void gw_jobs_serve(gw_caller *c, gw_op op, const char *id, const char *body, size_t len,
                   gw_answer *a)
{
    switch (op) {
    case GW_OP_GENERATE: serve_generate(c, body, len, a); break;
    case GW_OP_JOB_GET: serve_job_get(c, id, a); break;
    case GW_OP_JOB_IMAGE: serve_job_image(c, id, a); break;
    case GW_OP_JOB_CANCEL: serve_job_cancel(c, id, a); break;
    case GW_OP_JOBS_LIST: serve_jobs_list(c, a); break;
    default: gw_answer_error(a, CR_NOTFOUND, "no such endpoint"); break;
    }
}
