/* items_body.h — the body of POST /v1/items as Items:
 *   {"items": [{"id": "..", exactly one of "vector": [..] or "image": "<base64>",
 *               optional "attributes": {..}, "image_uri": "..", "version": N}, ...]}
 * 1..GW_UPSERT_MAX items; vectors of 1..GW_VECTOR_MAX finite numbers; images up to
 * GW_IMAGE_MAX bytes decoded (GW_ERR_TOO_LARGE past it). `image_uri` becomes the string
 * attribute "image_uri" (as libcirrus stores it). An unknown field, a wrong type or a bad
 * id / attribute is CR_ERR_INVALID naming the field ("items[3].vector[7]: ..."). */
#ifndef GW_ITEMS_BODY_H
#define GW_ITEMS_BODY_H

#include <jansson.h>
#include <stddef.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

#define GW_UPSERT_MAX 1024  /* items in one POST /v1/items */
#define GW_VECTOR_MAX 65536 /* floats in one item's vector */

/* Fills *out (n items, each its own allocation: nothing borrowed from j). On failure *out and
 * *n still describe what was built so far: free them with gw_items_free either way. */
cr_err gw_items_parse(json_t *j, Cirrus__V1__Item ***out, size_t *n);
void gw_items_free(Cirrus__V1__Item **items, size_t n);
void gw_item_free(Cirrus__V1__Item *it);

#endif
