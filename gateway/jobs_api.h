/* jobs_api.h — the generation-job resources of the HTTP API (the rest is in api.h):
 *
 *   POST   /v1/generate          {"kind": "tryon"|"edit"|"text2image", "person_image": "<b64>",
 *                                 "garment_image": "<b64>" | "garment_item_id": "..",
 *                                 "category", "text", "mask", "sketch", "pose": [{x,y,score}],
 *                                 "steps", "guidance", "seed", "width", "height",
 *                                 "idempotency_key", "deadline_ms"} -> 202 and the job
 *                                 (jobs_json.h), Location: /v1/jobs/{id}, once the broker
 *                                 stored it durably; the same key again returns the same job
 *   GET    /v1/jobs/{id}         the job: state, progress, attempts (no image)
 *   GET    /v1/jobs/{id}/image   the result, image/png, once it succeeded
 *   DELETE /v1/jobs/{id}         cancels it; the job after the request
 *   GET    /v1/jobs              {"jobs": [...]}: the 50 most recent, newest first
 *
 * Errors (api.h's style): 400 invalid_argument (a bad field, an image that is not base64 or not
 * PNG/JPEG/WebP, an unknown kind or category, steps/size out of range, an unknown garment
 * item), 404 not_found (no such job; an image that is not there: the job failed, was
 * cancelled or expired, or its result was evicted), 409 not_ready (the image of a job still
 * queued or running), 413 too_large (an image over GW_IMAGE_MAX), 429 overloaded (the
 * broker's queue is full), 501 unsupported (no job broker), 503, 504.
 */
#ifndef GW_JOBS_API_H
#define GW_JOBS_API_H

#include "gateway/api.h"

/* For a URL under /v1/generate or /v1/jobs: the op (GW_OP_NONE when the method is not one it
 * takes) and, for /v1/jobs/{id}[/image], the id (malloc'd). CR_ERR_INVALID for a bad id. */
cr_err gw_jobs_match(const char *method, const char *url, gw_op *op, char **id);

/* Serves a job op (a worker thread). */
void gw_jobs_serve(gw_caller *c, gw_op op, const char *id, const char *body, size_t len,
                   gw_answer *a);

#endif
