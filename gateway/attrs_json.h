/* attrs_json.h — typed attributes to and from JSON and `key=value` text.
 * JSON: {"category": "dress", "price": 19.9, "stock": 3, "sale": true, "colors": ["red"]}
 * maps to s / d / i / b / strings. Attribute arrays built here are malloc'd with
 * protobuf-c's default allocator layout: free them with cr_attrs_free. */
#ifndef CR_ATTRS_JSON_H
#define CR_ATTRS_JSON_H

#include <stddef.h>

#include <jansson.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

/* Converts a JSON object into n attributes. Nested objects, nulls and arrays of
 * non-strings are CR_ERR_INVALID. */
cr_err cr_attrs_from_json(const json_t *obj, Cirrus__V1__Attribute ***out, size_t *n);

/* Parses "name=value": true/false → bool, an integer → int64, a number → double,
 * [a,b,c] → strings, "quoted" or anything else → string. Appends to (*attrs, *n). */
cr_err cr_attr_parse_kv(const char *kv, Cirrus__V1__Attribute ***attrs, size_t *n);

/* A new JSON object (reference owned by the caller) from attributes. */
json_t *cr_attrs_to_json(Cirrus__V1__Attribute *const *attrs, size_t n);

/* A JSON value for one attribute value (new reference). */
json_t *cr_attr_value_to_json(const Cirrus__V1__AttrValue *v);

void cr_attrs_free(Cirrus__V1__Attribute **attrs, size_t n);

#endif
