/* jobs.h — the checks libcirrus makes of a generation request before sending it, shared with
 * the in-tree callers that build the protobuf themselves (the HTTP gateway). Not installed.
 *
 *   Cirrus__V1__GenerateRequest g = ...;           // from the caller's fields
 *   if ((rc = cirrus_generate_check(&g))) ...      // CR_ERR_INVALID, message names the field
 */
#ifndef CIRRUS_CLIENT_JOBS_H
#define CIRRUS_CLIENT_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "client/cirrus.h"
#include "common/err.h"

/* CR_OK when g is a request the broker can run, as far as the client can tell: a known kind;
 * the person image, garment (exactly one of image and item id) and category its kind needs;
 * every image non-empty, at most CIRRUS_GEN_IMAGE_MAX bytes and PNG, JPEG or WebP by its
 * signature; steps, guidance, width and height in range; text and key lengths and UTF-8.
 * Else CR_ERR_INVALID with a message naming the field ("steps: 900 is outside 1..500"). Whether
 * an image decodes in full, and whether a garment item exists, only the broker and the worker
 * can tell. */
cr_err cirrus_generate_check(const Cirrus__V1__GenerateRequest *g);

/* CR_OK for a job id the broker could have issued: 1..CIRRUS_JOB_ID_MAX bytes of UTF-8,
 * without '/' (it is a path segment of the HTTP API). Else CR_ERR_INVALID. */
cr_err cirrus_job_id_check(const char *id);

/* The reply a snapshot reads (for in-tree printers such as gateway/jobs_json.h); it lives as
 * long as j. NULL for NULL. */
const Cirrus__V1__JobInfo *cirrus_job_info(const cirrus_job *j);

#endif
