/* filter_format.c — a Filter tree back to its text form (cr_filter_format, filter_parse.h). */
#include "shard/filter_parse.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Formatter */

struct writer {
    char *buf;
    size_t len;
    size_t pos; /* bytes wanted so far (may exceed len) */
    bool bad;   /* malformed tree */
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->pos < w->len) {
        size_t room = w->len - 1 - w->pos;
        memcpy(w->buf + w->pos, s, n < room ? n : room);
    }
    w->pos += n;
}

static void puts_(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_string(struct writer *w, const char *s)
{
    char esc[8];
    put(w, "\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': put(w, "\\\"", 2); break;
        case '\\': put(w, "\\\\", 2); break;
        case '\n': put(w, "\\n", 2); break;
        case '\t': put(w, "\\t", 2); break;
        case '\r': put(w, "\\r", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(w, esc, 6);
            } else {
                put(w, (const char *)s, 1);
            }
        }
    }
    put(w, "\"", 1);
}

static void put_double(struct writer *w, double d)
{
    char tmp[40];
    if (isnan(d) || isinf(d)) {
        puts_(w, isnan(d) ? "<nan>" : d < 0 ? "<-inf>" : "<inf>");
        w->bad = true;
        return;
    }
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    if (!strpbrk(tmp, ".eE"))
        strncat(tmp, ".0", sizeof tmp - strlen(tmp) - 1);
    puts_(w, tmp);
}

static void put_value(struct writer *w, const Cirrus__V1__AttrValue *v)
{
    char tmp[32];
    if (!v) {
        puts_(w, "<no value>");
        w->bad = true;
        return;
    }
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S: put_string(w, v->s); break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I:
        snprintf(tmp, sizeof tmp, "%" PRId64, v->i);
        puts_(w, tmp);
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D: put_double(w, v->d); break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: puts_(w, v->b ? "true" : "false"); break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        puts_(w, "<list");
        for (size_t i = 0; v->strings && i < v->strings->n_values; i++) {
            puts_(w, " ");
            put_string(w, v->strings->values[i]);
        }
        puts_(w, ">");
        w->bad = true;
        break;
    default:
        puts_(w, "<no value>");
        w->bad = true;
    }
}

static void put_attr(struct writer *w, const char *a)
{
    if (!a || !*a) {
        puts_(w, "<no attr>");
        w->bad = true;
        return;
    }
    puts_(w, a);
}

static void format_node(struct writer *w, const Cirrus__V1__Filter *f, int depth);

/* A child of and/or/not, in parentheses when its own operator binds looser than `parent`
 * (or equally, for and/or: nested lists keep their shape). */
static void format_child(struct writer *w, const Cirrus__V1__Filter *c, int parent, int depth)
{
    int prec = 3; /* 0 or, 1 and, 2 not, 3 leaf */
    if (c) {
        if (c->expr_case == CIRRUS__V1__FILTER__EXPR_OR_EXPR)
            prec = 0;
        else if (c->expr_case == CIRRUS__V1__FILTER__EXPR_AND_EXPR)
            prec = 1;
        else if (c->expr_case == CIRRUS__V1__FILTER__EXPR_NOT_EXPR)
            prec = 2;
        else if (c->expr_case == CIRRUS__V1__FILTER__EXPR_RANGE && c->range &&
                 c->range->has_lo && c->range->has_hi)
            prec = 1;
    }
    bool paren = parent == 2 ? prec < 2 : prec <= parent;
    if (paren)
        puts_(w, "(");
    format_node(w, c, depth + 1);
    if (paren)
        puts_(w, ")");
}

static void format_node(struct writer *w, const Cirrus__V1__Filter *f, int depth)
{
    static const char *const opname[] = {"=", "!=", "<", "<=", ">", ">="};
    const Cirrus__V1__FilterList *list;

    if (depth > 2 * CR_FILTER_MAX_DEPTH) {
        puts_(w, "<too deep>");
        w->bad = true;
        return;
    }
    if (!f) {
        puts_(w, "<null>");
        w->bad = true;
        return;
    }
    switch (f->expr_case) {
    case CIRRUS__V1__FILTER__EXPR_CMP:
        if (!f->cmp)
            break;
        put_attr(w, f->cmp->attr);
        puts_(w, " ");
        if ((unsigned)f->cmp->op < 6) {
            puts_(w, opname[f->cmp->op]);
        } else {
            puts_(w, "<op?>");
            w->bad = true;
        }
        puts_(w, " ");
        put_value(w, f->cmp->value);
        return;
    case CIRRUS__V1__FILTER__EXPR_IN:
        if (!f->in)
            break;
        put_attr(w, f->in->attr);
        puts_(w, " in (");
        for (size_t i = 0; i < f->in->n_values; i++) {
            if (i)
                puts_(w, ", ");
            put_value(w, f->in->values[i]);
        }
        if (f->in->n_values == 0)
            w->bad = true;
        puts_(w, ")");
        return;
    case CIRRUS__V1__FILTER__EXPR_RANGE: {
        const Cirrus__V1__Range *r = f->range;
        if (!r)
            break;
        if (!r->has_lo && !r->has_hi) {
            puts_(w, "<unbounded range on ");
            put_attr(w, r->attr);
            puts_(w, ">");
            w->bad = true;
            return;
        }
        if (r->has_lo) {
            put_attr(w, r->attr);
            puts_(w, r->lo_inclusive ? " >= " : " > ");
            put_double(w, r->lo);
        }
        if (r->has_lo && r->has_hi)
            puts_(w, " and ");
        if (r->has_hi) {
            put_attr(w, r->attr);
            puts_(w, r->hi_inclusive ? " <= " : " < ");
            put_double(w, r->hi);
        }
        return;
    }
    case CIRRUS__V1__FILTER__EXPR_AND_EXPR:
    case CIRRUS__V1__FILTER__EXPR_OR_EXPR: {
        bool is_or = f->expr_case == CIRRUS__V1__FILTER__EXPR_OR_EXPR;
        list = is_or ? f->or_expr : f->and_expr;
        if (!list)
            break;
        if (list->n_items == 0) {
            puts_(w, is_or ? "<empty or>" : "<empty and>");
            w->bad = true;
            return;
        }
        for (size_t i = 0; i < list->n_items; i++) {
            if (i)
                puts_(w, is_or ? " or " : " and ");
            format_child(w, list->items[i], is_or ? 0 : 1, depth);
        }
        return;
    }
    case CIRRUS__V1__FILTER__EXPR_NOT_EXPR:
        if (!f->not_expr)
            break;
        puts_(w, "not ");
        format_child(w, f->not_expr, 2, depth);
        return;
    default:
        break;
    }
    puts_(w, "<unset>");
    w->bad = true;
}

cr_err cr_filter_format(const Cirrus__V1__Filter *f, char *buf, size_t len)
{
    struct writer w = {buf, len, 0, false};

    if (!buf || len == 0)
        return cr_error_set(CR_ERR_INVALID, "filter: no output buffer");
    format_node(&w, f, 1);
    buf[w.pos < len ? w.pos : len - 1] = '\0';
    if (w.pos >= len)
        return cr_error_set(CR_ERR_INVALID, "filter: text needs %zu bytes, buffer has %zu",
                            w.pos + 1, len);
    if (w.bad)
        return cr_error_set(CR_ERR_INVALID, "filter: malformed tree: %s", buf);
    return CR_OK;
}
