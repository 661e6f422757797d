#include "gateway/attrs_json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"

static Cirrus__V1__Attribute *attr_new(const char *name)
{
    Cirrus__V1__Attribute *a = malloc(sizeof *a);
    Cirrus__V1__AttrValue *v = malloc(sizeof *v);
    if (!a || !v) {
        free(a);
        free(v);
        return NULL;
    }
    cirrus__v1__attribute__init(a);
    cirrus__v1__attr_value__init(v);
    a->name = strdup(name);
    a->value = v;
    if (!a->name) {
        cirrus__v1__attribute__free_unpacked(a, NULL);
        return NULL;
    }
    return a;
}

static cr_err attrs_push(Cirrus__V1__Attribute ***attrs, size_t *n, Cirrus__V1__Attribute *a)
{
    Cirrus__V1__Attribute **grown = realloc(*attrs, (*n + 1) * sizeof *grown);
    if (!grown) {
        cirrus__v1__attribute__free_unpacked(a, NULL);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    grown[(*n)++] = a;
    *attrs = grown;
    return CR_OK;
}

static cr_err set_strings(Cirrus__V1__AttrValue *v, const char *const *items, size_t count)
{
    Cirrus__V1__StringList *sl = malloc(sizeof *sl);
    if (!sl)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    cirrus__v1__string_list__init(sl);
    v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
    v->strings = sl;
    sl->values = calloc(count ? count : 1, sizeof(char *));
    if (!sl->values)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        sl->values[i] = strdup(items[i]);
        if (!sl->values[i])
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        sl->n_values = i + 1;
    }
    return CR_OK;
}

static cr_err set_from_json(Cirrus__V1__AttrValue *v, const char *name, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v->s = strdup(json_string_value(j));
        return v->s ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    case JSON_INTEGER:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
        v->i = json_integer_value(j);
        return CR_OK;
    case JSON_REAL:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
        v->d = json_real_value(j);
        return CR_OK;
    case JSON_TRUE:
    case JSON_FALSE:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
        v->b = json_is_true(j);
        return CR_OK;
    case JSON_ARRAY: {
        size_t count = json_array_size(j);
        const char **items = calloc(count ? count : 1, sizeof *items);
        cr_err rc = CR_OK;
        if (!items)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < count && !rc; i++) {
            items[i] = json_string_value(json_array_get(j, i));
            if (!items[i])
                rc = cr_error_set(CR_ERR_INVALID,
                                  "attribute '%s': arrays may hold only strings", name);
        }
        if (!rc)
            rc = set_strings(v, items, count);
        free(items);
        return rc;
    }
    default:
        return cr_error_set(CR_ERR_INVALID,
                            "attribute '%s': value must be a string, number, boolean or array "
                            "of strings",
                            name);
    }
}

cr_err cr_attrs_from_json(const json_t *obj, Cirrus__V1__Attribute ***out, size_t *n)
{
    const char *key;
    json_t *val;
    cr_err rc = CR_OK;

    *out = NULL;
    *n = 0;
    if (!obj)
        return CR_OK;
    if (!json_is_object(obj))
        return cr_error_set(CR_ERR_INVALID, "attributes must be a JSON object");
    json_object_foreach((json_t *)obj, key, val)
    {
        Cirrus__V1__Attribute *a = attr_new(key);
        if (!a) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        rc = set_from_json(a->value, key, val);
        if (!rc)
            rc = cr_validate_attribute(a);
        if (rc) {
            cirrus__v1__attribute__free_unpacked(a, NULL);
            break;
        }
        rc = attrs_push(out, n, a);
        if (rc)
            break;
    }
    if (rc) {
        cr_attrs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static cr_err set_from_text(Cirrus__V1__AttrValue *v, const char *name, const char *text)
{
    size_t len = strlen(text);
    char *end;
    if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
        v->b = text[0] == 't';
        return CR_OK;
    }
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        char *copy = strndup(text + 1, len - 2), *p;
        const char **items = calloc(len, sizeof *items);
        size_t count = 0;
        cr_err rc;
        if (!copy || !items) {
            free(copy);
            free(items);
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        }
        for (p = copy; *p;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            if (*p)
                items[count++] = p;
            if (!comma)
                break;
            p = comma + 1;
        }
        rc = set_strings(v, items, count);
        free(items);
        free(copy);
        return rc;
    }
    if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v->s = strndup(text + 1, len - 2);
        return v->s ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    if (len) {
        errno = 0;
        long long i = strtoll(text, &end, 10);
        if (!errno && !*end) {
            v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
            v->i = i;
            return CR_OK;
        }
        errno = 0;
        double d = strtod(text, &end);
        if (!errno && !*end && isfinite(d)) {
            v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
            v->d = d;
            return CR_OK;
        }
    }
    (void)name;
    v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
    v->s = strdup(text);
    return v->s ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
}

cr_err cr_attr_parse_kv(const char *kv, Cirrus__V1__Attribute ***attrs, size_t *n)
{
    const char *eq = strchr(kv, '=');
    char name[256];
    Cirrus__V1__Attribute *a;
    cr_err rc;

    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof name)
        return cr_error_set(CR_ERR_INVALID, "attribute '%s' must be name=value", kv);
    memcpy(name, kv, (size_t)(eq - kv));
    name[eq - kv] = '\0';
    a = attr_new(name);
    if (!a)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = set_from_text(a->value, name, eq + 1);
    if (!rc)
        rc = cr_validate_attribute(a);
    if (rc) {
        cirrus__v1__attribute__free_unpacked(a, NULL);
        return rc;
    }
    return attrs_push(attrs, n, a);
}

json_t *cr_attr_value_to_json(const Cirrus__V1__AttrValue *v)
{
    if (!v)
        return json_null();
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S: return json_string(v->s ? v->s : "");
    case CIRRUS__V1__ATTR_VALUE__VALUE_I: return json_integer(v->i);
    case CIRRUS__V1__ATTR_VALUE__VALUE_D: return json_real(v->d);
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: return json_boolean(v->b);
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS: {
        json_t *arr = json_array();
        for (size_t i = 0; v->strings && i < v->strings->n_values; i++)
            json_array_append_new(arr, json_string(v->strings->values[i]));
        return arr;
    }
    default: return json_null();
    }
}

json_t *cr_attrs_to_json(Cirrus__V1__Attribute *const *attrs, size_t n)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(obj, attrs[i]->name, cr_attr_value_to_json(attrs[i]->value));
    return obj;
}

void cr_attrs_free(Cirrus__V1__Attribute **attrs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cirrus__v1__attribute__free_unpacked(attrs[i], NULL);
    free(attrs);
}
