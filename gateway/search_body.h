/* search_body.h — the body of POST /v1/search as a cirrus.v1.Query:
 *   exactly one of "vector": [..], "text": "..", "image": "<base64>", "item_id": "..", or a
 *   composed query "ref_id": ".." (or "image") with "caption", optional "caption2" and
 *   "method" (searle|combiner|sum|text|image); plus optional "k" (10), "filter" (the text
 *   filter language), "group_by", "group_size", "offset", "nprobe", "ef", "exact",
 *   "include_metadata" (true).
 * An unknown key, a value of the wrong type (null included) or a duplicate key is
 * CR_ERR_INVALID whose message names the field ("filter: expected a string"). */
#ifndef GW_SEARCH_BODY_H
#define GW_SEARCH_BODY_H

#include <jansson.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct gw_search {
    Cirrus__V1__Query q;
    Cirrus__V1__Vector v;
    Cirrus__V1__Composed composed;
    Cirrus__V1__Reference ref;
    Cirrus__V1__SearchParams params;
    ProtobufCBinaryData image;
    Cirrus__V1__Filter *filter;
} gw_search;

/* Fills *s from j; j's strings are borrowed by s: keep j alive while s is used. Free s with
 * gw_search_free also on failure. */
cr_err gw_search_parse(json_t *j, gw_search *s);
void gw_search_free(gw_search *s);

#endif
