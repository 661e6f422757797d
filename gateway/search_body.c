/* search_body.c — the body of POST /v1/search, checked field by field, as a cirrus.v1.Query. */
#include "gateway/search_body.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "gateway/base64.h"
#include "shard/filter_parse.h"

#define NUM_MAX 1000000 /* k, offset, group_size, nprobe, ef */

typedef enum field_type { F_STRING, F_NUM, F_BOOL, F_VECTOR } field_type;

static const struct {
    const char *name;
    field_type type;
} search_fields[] = {
    {"vector", F_VECTOR},  {"text", F_STRING},    {"image", F_STRING},    {"item_id", F_STRING},
    {"ref_id", F_STRING},  {"caption", F_STRING}, {"caption2", F_STRING}, {"method", F_STRING},
    {"k", F_NUM},          {"offset", F_NUM},     {"group_by", F_STRING}, {"group_size", F_NUM},
    {"nprobe", F_NUM},     {"ef", F_NUM},         {"exact", F_BOOL},
    {"include_metadata", F_BOOL},                 {"filter", F_STRING},
};

/* Every key known and of its type (null is no value of any type): fail closed, since a
 * misspelt or mistyped "filter" silently ignored would return unfiltered results. */
static cr_err check_fields(json_t *j)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        size_t i, n = sizeof search_fields / sizeof search_fields[0];
        for (i = 0; i < n && strcmp(key, search_fields[i].name) != 0; i++)
            ;
        if (i == n)
            return cr_error_set(CR_ERR_INVALID, "%.64s: unknown field", key);
        switch (search_fields[i].type) {
        case F_STRING:
            if (!json_is_string(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected a string", key);
            break;
        case F_NUM:
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > NUM_MAX)
                return cr_error_set(CR_ERR_INVALID, "%s: expected an integer in 0..%d", key,
                                    NUM_MAX);
            break;
        case F_BOOL:
            if (!json_is_boolean(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected true or false", key);
            break;
        case F_VECTOR:
            if (!json_is_array(v) || !json_array_size(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected a non-empty array of numbers",
                                    key);
            break;
        }
    }
    return CR_OK;
}

static int method_of(const char *s, Cirrus__V1__ComposeMethod *m)
{
    static const char *const names[] = {"default", "searle", "combiner", "sum", "text", "image"};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, names[i]) == 0) {
            *m = (Cirrus__V1__ComposeMethod)i;
            return 0;
        }
    return -1;
}

void gw_search_free(gw_search *s)
{
    free(s->v.values);
    free(s->image.data);
    if (s->filter)
        cirrus__v1__filter__free_unpacked(s->filter, NULL);
}

static const char *str_of(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* The first of `keys` present in j, or NULL. */
static const char *first_present(json_t *j, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (json_object_get(j, keys[i]))
            return keys[i];
    return NULL;
}

static cr_err composed_kind(json_t *j, gw_search *s)
{
    static const char *const plain[] = {"vector", "text", "item_id"};
    const char *ref = str_of(j, "ref_id"), *m = str_of(j, "method"), *bad;
    if ((bad = first_present(j, plain, 3)))
        return cr_error_set(CR_ERR_INVALID, "%s: not allowed in a composed query (with "
                                            "\"caption\" or \"ref_id\")", bad);
    if (ref && s->image.data)
        return cr_error_set(CR_ERR_INVALID, "image: a composed query takes \"ref_id\" or "
                                            "\"image\" as its reference, not both");
    if (ref) {
        s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
        s->ref.item_id = (char *)ref;
    } else if (s->image.data) {
        s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
        s->ref.image = s->image;
    } else {
        return cr_error_set(CR_ERR_INVALID, "caption: a composed query needs \"ref_id\" or "
                                            "\"image\"");
    }
    if (m && method_of(m, &s->composed.method))
        return cr_error_set(CR_ERR_INVALID, "method: unknown method '%.32s'", m);
    s->composed.reference = &s->ref;
    s->composed.caption = (char *)(str_of(j, "caption") ? str_of(j, "caption") : "");
    s->composed.caption2 = (char *)str_of(j, "caption2");
    s->q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
    s->q.composed = &s->composed;
    return CR_OK;
}

static cr_err plain_kind(json_t *j, gw_search *s)
{
    static const char *const composed_only[] = {"caption2", "method"};
    json_t *vec = json_object_get(j, "vector"), *x;
    const char *text = str_of(j, "text"), *item = str_of(j, "item_id"), *bad;
    size_t i;
    if ((bad = first_present(j, composed_only, 2)))
        return cr_error_set(CR_ERR_INVALID, "%s: only with \"caption\" or \"ref_id\"", bad);
    if ((vec != NULL) + (text != NULL) + (s->image.data != NULL) + (item != NULL) != 1)
        return cr_error_set(CR_ERR_INVALID, "give exactly one of \"vector\", \"text\", \"image\", "
                                            "\"item_id\", \"ref_id\"");
    if (text) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        s->q.text = (char *)text;
    } else if (s->image.data) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_IMAGE;
        s->q.image = s->image;
    } else if (item) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_ITEM_ID;
        s->q.item_id = (char *)item;
    } else {
        s->v.values = malloc(json_array_size(vec) * sizeof(float));
        if (!s->v.values)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        json_array_foreach(vec, i, x)
        {
            if (!json_is_number(x))
                return cr_error_set(CR_ERR_INVALID, "vector[%zu]: expected a number", i);
            s->v.values[i] = (float)json_number_value(x);
        }
        s->v.n_values = json_array_size(vec);
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
        s->q.vector = &s->v;
    }
    return CR_OK;
}

static uint32_t num_of(json_t *j, const char *key, uint32_t dflt)
{
    json_t *v = json_object_get(j, key);
    return v ? (uint32_t)json_integer_value(v) : dflt; /* range checked by check_fields */
}

/* j's strings are borrowed by s: keep j alive while s is used. */
cr_err gw_search_parse(json_t *j, gw_search *s)
{
    const char *filter = str_of(j, "filter"), *img = str_of(j, "image");
    json_t *meta = json_object_get(j, "include_metadata");
    cr_err rc;
    memset(s, 0, sizeof *s);
    cirrus__v1__query__init(&s->q);
    cirrus__v1__vector__init(&s->v);
    cirrus__v1__composed__init(&s->composed);
    cirrus__v1__reference__init(&s->ref);
    cirrus__v1__search_params__init(&s->params);
    if (!json_is_object(j))
        return cr_error_set(CR_ERR_INVALID, "the body must be a JSON object");
    if ((rc = check_fields(j)))
        return rc;
    if (img && (rc = gw_base64_decode(img, "image", &s->image)))
        return rc;
    rc = json_object_get(j, "caption") || json_object_get(j, "ref_id") ? composed_kind(j, s)
                                                                        : plain_kind(j, s);
    if (rc)
        return rc;
    if (filter && (rc = cr_filter_parse(filter, &s->filter)))
        return rc; /* its message starts "filter: " */
    s->q.k = num_of(j, "k", 10);
    s->q.offset = num_of(j, "offset", 0);
    s->q.group_size = num_of(j, "group_size", 0);
    s->params.nprobe = num_of(j, "nprobe", 0);
    s->params.ef_search = num_of(j, "ef", 0);
    s->params.exact = json_is_true(json_object_get(j, "exact"));
    s->q.group_by = (char *)str_of(j, "group_by");
    s->q.include_metadata = meta ? json_is_true(meta) : 1;
    s->q.filter = s->filter;
    s->q.params = &s->params;
    return CR_OK;
}

