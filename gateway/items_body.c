#include "gateway/items_body.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"
#include "gateway/attrs_json.h"
#include "gateway/base64.h"
#include "gateway/limits.h"

static const char *const item_fields[] = {"id", "vector", "image", "attributes", "image_uri",
                                          "version"};

void gw_item_free(Cirrus__V1__Item *it)
{
    if (!it)
        return;
    free(it->id);
    if (it->vector)
        free(it->vector->values);
    free(it->vector);
    free(it->image.data);
    cr_attrs_free(it->attributes, it->n_attributes);
    free(it);
}

static cr_err item_check_fields(json_t *o, size_t i)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        size_t f, n = sizeof item_fields / sizeof item_fields[0];
        for (f = 0; f < n && strcmp(key, item_fields[f]) != 0; f++)
            ;
        if (f == n)
            return cr_error_set(CR_ERR_INVALID, "items[%zu].%.64s: unknown field", i, key);
    }
    return CR_OK;
}

static cr_err item_vector(json_t *vec, size_t i, Cirrus__V1__Item *it)
{
    size_t n = json_array_size(vec), d;
    json_t *x;
    if (!json_is_array(vec) || n == 0 || n > GW_VECTOR_MAX)
        return cr_error_set(CR_ERR_INVALID, "items[%zu].vector: expected 1..%d numbers", i,
                            GW_VECTOR_MAX);
    if (!(it->vector = malloc(sizeof *it->vector)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    cirrus__v1__vector__init(it->vector);
    if (!(it->vector->values = malloc(n * sizeof(float))))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    it->vector->n_values = n;
    json_array_foreach(vec, d, x)
    {
        double v = json_number_value(x);
        if (!json_is_number(x) || !isfinite(v) || fabs(v) > 3.4e38)
            return cr_error_set(CR_ERR_INVALID, "items[%zu].vector[%zu]: expected a finite "
                                "number", i, d);
        it->vector->values[d] = (float)v;
    }
    return CR_OK;
}

/* image_uri is stored as the string attribute "image_uri" (as libcirrus stores it). */
static cr_err item_attrs(json_t *o, size_t i, Cirrus__V1__Item *it)
{
    json_t *attrs = json_object_get(o, "attributes"), *uri = json_object_get(o, "image_uri");
    json_t *all;
    cr_err rc;
    if (attrs && !json_is_object(attrs))
        return cr_error_set(CR_ERR_INVALID, "items[%zu].attributes: expected an object", i);
    if (uri && !json_is_string(uri))
        return cr_error_set(CR_ERR_INVALID, "items[%zu].image_uri: expected a string", i);
    if (uri && attrs && json_object_get(attrs, "image_uri"))
        return cr_error_set(CR_ERR_INVALID, "items[%zu]: image_uri given twice (field and "
                            "attribute)", i);
    all = attrs ? json_copy(attrs) : json_object();
    if (!all || (uri && json_object_set(all, "image_uri", uri))) {
        json_decref(all);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = cr_attrs_from_json(all, &it->attributes, &it->n_attributes);
    json_decref(all);
    if (rc)
        return cr_error_wrap(rc, "items[%zu].attributes", i);
    for (size_t k = 0; k < it->n_attributes; k++)
        if ((rc = cr_validate_attribute(it->attributes[k])))
            return cr_error_wrap(rc, "items[%zu].attributes", i);
    return CR_OK;
}

static cr_err item_from_json(json_t *o, size_t i, Cirrus__V1__Item **out)
{
    Cirrus__V1__Item *it = calloc(1, sizeof *it);
    json_t *id = json_object_get(o, "id"), *vec = json_object_get(o, "vector");
    json_t *img = json_object_get(o, "image"), *ver = json_object_get(o, "version");
    char field[48];
    cr_err rc;
    if (!it)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    cirrus__v1__item__init(it);
    it->id = NULL; /* not protobuf-c's static empty string: item_free frees it */
    *out = it;
    if (!json_is_object(o))
        return cr_error_set(CR_ERR_INVALID, "items[%zu]: expected an object", i);
    if ((rc = item_check_fields(o, i)))
        return rc;
    if (!json_is_string(id))
        return cr_error_set(CR_ERR_INVALID, "items[%zu].id: expected a string", i);
    if ((rc = cr_validate_id(json_string_value(id))))
        return cr_error_wrap(rc, "items[%zu].id", i);
    if (!(it->id = strdup(json_string_value(id))))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if ((vec != NULL) == (img != NULL))
        return cr_error_set(CR_ERR_INVALID, "items[%zu]: give exactly one of \"vector\" and "
                            "\"image\"", i);
    if (vec && (rc = item_vector(vec, i, it)))
        return rc;
    if (img && !json_is_string(img))
        return cr_error_set(CR_ERR_INVALID, "items[%zu].image: expected a base64 string", i);
    snprintf(field, sizeof field, "items[%zu].image", i);
    if (img && (rc = gw_base64_decode(json_string_value(img), field, GW_IMAGE_MAX,
                                      GW_ERR_TOO_LARGE, &it->image)))
        return rc;
    if (ver && (!json_is_integer(ver) || json_integer_value(ver) < 0))
        return cr_error_set(CR_ERR_INVALID, "items[%zu].version: expected an integer >= 0", i);
    it->version = ver ? (uint64_t)json_integer_value(ver) : 0;
    return item_attrs(o, i, it);
}

cr_err gw_items_parse(json_t *j, Cirrus__V1__Item ***out, size_t *n)
{
    json_t *arr = json_object_get(j, "items"), *o;
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "items") != 0)
            return cr_error_set(CR_ERR_INVALID, "%.64s: unknown field", key);
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > GW_UPSERT_MAX)
        return cr_error_set(CR_ERR_INVALID, "items: expected an array of 1..%d items",
                            GW_UPSERT_MAX);
    if (!(*out = calloc(json_array_size(arr), sizeof **out)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, o)
    {
        cr_err rc = item_from_json(o, i, &(*out)[i]);
        *n = i + 1;
        if (rc)
            return rc;
    }
    return CR_OK;
}

void gw_items_free(Cirrus__V1__Item **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gw_item_free(items[i]);
    free(items);
}
