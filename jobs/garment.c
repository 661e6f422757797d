/* garment.c — garment item ids: a Generate naming a catalog item instead of sending the garment
 * image gets the image resolved here before it is admitted. The broker asks the items endpoint
 * (a coordinator) for the item with its kept image (GetRequest.include_image; shards run with
 * --keep-images keep it), asynchronously on its items DEALER, at most JOBS_RESOLVE_MAX at once,
 * each bounded by JOBS_RESOLVE_TIMEOUT_MS. Without a kept image, the item's `image_uri`
 * attribute is used when it names a local file (a path or file:// URI), read with the image
 * size limit. http(s) URIs are refused (the broker thread does no network fetches of its own).
 * Every failure is a clear error at submit: an unknown id is not found, an item with neither an
 * image nor a usable image_uri is invalid. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/validate.h"
#include "jobs/broker_impl.h"

#define JOBS_RESOLVE_TIMEOUT_MS 5000u

static void resolve_fail(jobs_broker *b, jobs_resolve *r, cr_err code, const char *msg)
{
    jobs_metrics_count(b, &b->m.rejected_invalid);
    jobs_waiter_answer(b, NULL, r->w, code, msg);
    jobs_job_free(r->job);
    memset(r, 0, sizeof *r);
}

static void resolve_done(jobs_broker *b, jobs_resolve *r, uint8_t *img, size_t len)
{
    jobs_job *j = r->job;
    jobs_waiter *w = r->w;
    free(j->req->garment_image.data);
    j->req->garment_image.data = img; /* freed with the request (default allocator) */
    j->req->garment_image.len = len;
    memset(r, 0, sizeof *r);
    jobs_submit(b, j, w);
}

static jobs_resolve *resolve_slot(jobs_broker *b)
{
    for (size_t i = 0; i < JOBS_RESOLVE_MAX; i++)
        if (!b->resolves[i].used)
            return &b->resolves[i];
    return NULL;
}

void jobs_garment_start(jobs_broker *b, jobs_job *j, jobs_waiter *w)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    char *id = j->req->garment_item_id;
    jobs_resolve *r = NULL;
    cr_err code = CR_OK;

    if (!id || !id[0] || j->req->garment_image.len) {
        jobs_submit(b, j, w);
        return;
    }
    if (cr_validate_id(id))
        code = cr_error_set(CR_ERR_INVALID, "garment_item_id is not a valid item id (1..256 "
                                            "bytes of UTF-8)");
    else if (!b->items[0])
        code = cr_error_set(CR_ERR_UNSUPPORTED, "garment_item_id needs the broker's items "
                                                "endpoint (a coordinator); this broker has "
                                                "none: send garment_image");
    else if (!(r = resolve_slot(b)))
        code = cr_error_set(CR_ERR_OVERLOADED, "too many garment lookups in flight");
    if (code) {
        jobs_waiter_answer(b, NULL, w, code, cr_error_message());
        jobs_job_free(j);
        return;
    }
    get.ids = &id;
    get.n_ids = 1;
    get.include_image = 1;
    req.id = ++b->next_call_id;
    req.deadline_ms = JOBS_RESOLVE_TIMEOUT_MS;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    if (cr_wire_send(b->isock, NULL, &req.base, CR_SOCK_DONTWAIT)) {
        jobs_waiter_answer(b, NULL, w, CR_ERR_UNAVAILABLE,
                           "garment lookup: the items endpoint cannot take a request now");
        jobs_job_free(j);
        return;
    }
    r->used = 1;
    r->call_id = req.id;
    r->deadline_ms = cr_clock_mono_ms() + JOBS_RESOLVE_TIMEOUT_MS;
    r->job = j;
    r->w = w;
}

static const Cirrus__V1__AttrValue *attr_of(const Cirrus__V1__Item *it, const char *name)
{
    for (size_t i = 0; i < it->n_attributes; i++)
        if (it->attributes[i]->name && strcmp(it->attributes[i]->name, name) == 0)
            return it->attributes[i]->value;
    return NULL;
}

/* Reads the local file an image_uri names into *img; the reason in msg on failure. */
static cr_err read_uri(const char *uri, uint8_t **img, size_t *len, char *msg, size_t cap)
{
    const char *path = uri;
    struct stat sb;
    if (strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0) {
        snprintf(msg, cap, "its image_uri is an http(s) URL, which the broker does not fetch: "
                           "keep images (--keep-images) or use a local file path");
        return CR_ERR_UNSUPPORTED;
    }
    if (strncmp(uri, "file://localhost/", 17) == 0)
        path = uri + 16;
    else if (strncmp(uri, "file://", 7) == 0)
        path = uri + 7;
    if (path[0] != '/') {
        snprintf(msg, cap, "its image_uri '%.200s' is not an absolute file path or file:// URI",
                 uri);
        return CR_ERR_INVALID;
    }
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(msg, cap, "its image_uri file %.200s cannot be read: %s", path,
                 errno ? strerror(errno) : "not a regular file");
        return CR_ERR_INVALID;
    }
    if ((uint64_t)sb.st_size > JOBS_MAX_IMAGE) {
        snprintf(msg, cap, "its image_uri file %.200s has %lld bytes (at most %u)", path,
                 (long long)sb.st_size, JOBS_MAX_IMAGE);
        return CR_ERR_INVALID;
    }
    if (cr_file_read(path, img, len)) {
        snprintf(msg, cap, "its image_uri: %.200s", cr_error_message());
        return CR_ERR_INVALID;
    }
    return CR_OK;
}

/* The item's image: the kept one, else its image_uri's file. */
static void resolve_item(jobs_broker *b, jobs_resolve *r, const Cirrus__V1__Item *it)
{
    const Cirrus__V1__AttrValue *uri = attr_of(it, "image_uri");
    const char *id = r->job->req->garment_item_id;
    char why[320], msg[640];
    uint8_t *img = NULL;
    size_t len = 0;
    cr_err rc = CR_OK;
    if (it->image.len) {
        if (it->image.len > JOBS_MAX_IMAGE) {
            rc = CR_ERR_INVALID;
            snprintf(why, sizeof why, "its stored image is too large");
        } else if (!(img = malloc(it->image.len))) {
            rc = CR_ERR_NOMEM;
            snprintf(why, sizeof why, "out of memory");
        } else {
            len = it->image.len;
            memcpy(img, it->image.data, len);
        }
    } else if (uri && uri->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_S && uri->s[0]) {
        rc = read_uri(uri->s, &img, &len, why, sizeof why);
    } else {
        rc = CR_ERR_INVALID;
        snprintf(why, sizeof why, "it has neither a stored image (shards with --keep-images) "
                                  "nor an image_uri attribute");
    }
    if (!rc && !cr_image_type(img, len)) {
        rc = CR_ERR_INVALID;
        snprintf(why, sizeof why, "its image is not PNG, JPEG, WebP, GIF or BMP");
    }
    if (rc) {
        free(img);
        snprintf(msg, sizeof msg, "garment item '%.256s': %s", id, why);
        resolve_fail(b, r, rc, msg);
        return;
    }
    CR_DEBUG("jobs", "garment item %s resolved (%zu bytes, %s)", id, len,
             it->image.len ? "stored image" : "image_uri");
    resolve_done(b, r, img, len);
}

static void on_answer(jobs_broker *b, jobs_resolve *r, const Cirrus__V1__Response *resp)
{
    const char *id = r->job->req->garment_item_id;
    const Cirrus__V1__GetResult *g = resp->get;
    char msg[400];
    int code = resp->status ? resp->status->code : 0;
    if (code < 0 || !g) {
        snprintf(msg, sizeof msg, "garment item '%.256s': lookup failed: %s", id,
                 resp->status && resp->status->message ? resp->status->message
                                                       : "answer without a result");
        resolve_fail(b, r, code < 0 ? code : CR_ERR_PROTO, msg);
        return;
    }
    for (size_t i = 0; i < g->n_items; i++)
        if (g->items[i]->id && strcmp(g->items[i]->id, id) == 0) {
            resolve_item(b, r, g->items[i]);
            return;
        }
    snprintf(msg, sizeof msg, "garment item '%.256s' not found", id);
    resolve_fail(b, r, CR_NOTFOUND, msg);
}

void jobs_on_items(jobs_broker *b)
{
    cr_wire_msg m;
    cr_wire_msg_init(&m);
    while (cr_wire_recv(b->isock, &m, &b->lim, CR_SOCK_DONTWAIT) == CR_OK) {
        cr_pb_bounded alloc;
        ProtobufCMessage *pm = NULL;
        size_t len;
        const uint8_t *body = cr_wire_msg_body(&m, &len);
        cr_pb_bounded_init(&alloc, b->lim.max_alloc);
        if (!body || cr_wire_unpack(&cirrus__v1__response__descriptor, body, len, &alloc, &pm)) {
            CR_WARN("jobs", "dropped a malformed answer of the items endpoint (%zu bytes)", len);
            continue;
        }
        for (size_t i = 0; i < JOBS_RESOLVE_MAX; i++) {
            jobs_resolve *r = &b->resolves[i];
            if (r->used && r->call_id == ((Cirrus__V1__Response *)pm)->id) {
                on_answer(b, r, (Cirrus__V1__Response *)pm);
                break;
            }
        } /* no match: the answer of a lookup that timed out */
        protobuf_c_message_free_unpacked(pm, &alloc.base);
    }
    cr_wire_msg_close(&m);
}

void jobs_garment_timeouts(jobs_broker *b, uint64_t now_mono)
{
    for (size_t i = 0; i < JOBS_RESOLVE_MAX; i++) {
        jobs_resolve *r = &b->resolves[i];
        char msg[400];
        if (!r->used || now_mono < r->deadline_ms)
            continue;
        snprintf(msg, sizeof msg,
                 "garment item '%.256s': the items endpoint did not answer within %u ms",
                 r->job->req->garment_item_id, JOBS_RESOLVE_TIMEOUT_MS);
        resolve_fail(b, r, CR_ERR_DEADLINE, msg);
    }
}

void jobs_garment_abort(jobs_broker *b)
{
    for (size_t i = 0; i < JOBS_RESOLVE_MAX; i++)
        if (b->resolves[i].used)
            resolve_fail(b, &b->resolves[i], CR_ERR_UNAVAILABLE,
                         "the broker stopped before the garment item was resolved");
}
