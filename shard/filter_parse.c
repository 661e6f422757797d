#include "shard/filter_parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------ */
/* Lexer */

enum tok {
    T_END,
    T_IDENT,
    T_STRING,
    T_INT,
    T_DOUBLE,
    T_TRUE,
    T_FALSE,
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_LPAREN,
    T_RPAREN,
    T_COMMA,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_ERROR
};

struct parser {
    const char *text;
    size_t len;
    size_t pos;       /* scan position, just past the current token */
    enum tok tok;     /* current token */
    size_t tok_start; /* byte offset of the current token */
    char *str;        /* T_IDENT / T_STRING value, owned until taken */
    int64_t ival;
    double dval;
    int nest;  /* open parentheses and `not`s */
    int nodes; /* Filter messages allocated */
    cr_err rc; /* first error; later errors are not recorded */
};

#define SNIPPET_MAX 72

/* Records "filter: <what> at column N: <text>\n<caret>" once per parse. */
static cr_err perr(struct parser *p, cr_err code, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static cr_err perr(struct parser *p, cr_err code, size_t at, const char *fmt, ...)
{
    char what[256];
    char snip[SNIPPET_MAX + 8];
    char head[320];
    size_t from = 0, to = p->len, n = 0, i, c;
    va_list ap;

    if (p->rc)
        return p->rc;
    p->rc = code;
    if (code == CR_ERR_NOMEM)
        return cr_error_set(code, "filter: out of memory");
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    if (at > p->len)
        at = p->len;
    if (to - from > SNIPPET_MAX) {
        from = at > SNIPPET_MAX / 2 ? at - SNIPPET_MAX / 2 : 0;
        to = from + SNIPPET_MAX < p->len ? from + SNIPPET_MAX : p->len;
    }
    if (from > 0) {
        memcpy(snip, "...", 3);
        n = 3;
    }
    c = n + (at - from);
    for (i = from; i < to; i++) {
        unsigned char ch = (unsigned char)p->text[i];
        snip[n++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    if (to < p->len) {
        memcpy(snip + n, "...", 3);
        n += 3;
    }
    snip[n] = '\0';
    if (at >= p->len)
        snprintf(head, sizeof head, "filter: %s at column %zu (end of input): ", what, at + 1);
    else
        snprintf(head, sizeof head, "filter: %s at column %zu: ", what, at + 1);
    /* the caret line lines up under the snippet, which follows the header */
    return cr_error_set(code, "%s%s\n%*s^", head, snip, (int)(strlen(head) + c), "");
}

static bool is_ident_start(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_ident_char(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '.';
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int read_hex4(const char *s, size_t avail, uint32_t *cp)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = (size_t)i < avail ? hexval((unsigned char)s[i]) : -1;
        if (h < 0)
            return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *cp = v;
    return 0;
}

/* Scans a string literal starting at p->pos (the opening quote). */
static enum tok lex_string(struct parser *p)
{
    size_t start = p->pos, i = start + 1, n = 0;
    char *out;

    while (i < p->len && p->text[i] != '"')
        i += (p->text[i] == '\\' && i + 1 < p->len) ? 2 : 1;
    if (i >= p->len) {
        perr(p, CR_ERR_INVALID, start, "unterminated string");
        return T_ERROR;
    }
    out = malloc(i - start);
    if (!out) {
        perr(p, CR_ERR_NOMEM, start, "oom");
        return T_ERROR;
    }
    for (i = start + 1; p->text[i] != '"';) {
        unsigned char ch = (unsigned char)p->text[i];
        if (ch != '\\') {
            size_t l = utf8_seq((const unsigned char *)p->text + i, p->len - i);
            if (l == 0) {
                perr(p, CR_ERR_INVALID, i, "invalid UTF-8 in string");
                goto fail;
            }
            memcpy(out + n, p->text + i, l);
            n += l;
            i += l;
            continue;
        }
        switch (p->text[i + 1]) {
        case '"': out[n++] = '"'; i += 2; break;
        case '\\': out[n++] = '\\'; i += 2; break;
        case 'n': out[n++] = '\n'; i += 2; break;
        case 't': out[n++] = '\t'; i += 2; break;
        case 'r': out[n++] = '\r'; i += 2; break;
        case 'u': {
            uint32_t cp, lo;
            if (read_hex4(p->text + i + 2, p->len - i - 2, &cp)) {
                perr(p, CR_ERR_INVALID, i, "\\u needs four hex digits");
                goto fail;
            }
            if (cp == 0) {
                perr(p, CR_ERR_INVALID, i, "\\u0000 is not allowed in a string");
                goto fail;
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                perr(p, CR_ERR_INVALID, i, "unpaired surrogate in \\u escape");
                goto fail;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (i + 7 >= p->len || p->text[i + 6] != '\\' || p->text[i + 7] != 'u' ||
                    read_hex4(p->text + i + 8, p->len - i - 8, &lo) || lo < 0xdc00 ||
                    lo > 0xdfff) {
                    perr(p, CR_ERR_INVALID, i, "unpaired surrogate in \\u escape");
                    goto fail;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            n += utf8_put(out + n, cp);
            i += 6;
            break;
        }
        default:
            perr(p, CR_ERR_INVALID, i, "unknown escape '\\%c' (use \\\" \\\\ \\n \\t \\r \\uXXXX)",
                 p->text[i + 1]);
            goto fail;
        }
    }
    out[n] = '\0';
    p->str = out;
    p->pos = i + 1;
    return T_STRING;
fail:
    free(out);
    return T_ERROR;
}

static enum tok lex_number(struct parser *p)
{
    size_t start = p->pos, i = start;
    bool is_double = false;
    char *end;

    if (p->text[i] == '-')
        i++;
    while (i < p->len && is_digit(p->text[i]))
        i++;
    if (i < p->len && p->text[i] == '.') {
        is_double = true;
        i++;
        while (i < p->len && is_digit(p->text[i]))
            i++;
    }
    if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E')) {
        is_double = true;
        i++;
        if (i < p->len && (p->text[i] == '+' || p->text[i] == '-'))
            i++;
        if (i >= p->len || !is_digit(p->text[i])) {
            perr(p, CR_ERR_INVALID, start, "malformed number (exponent without digits)");
            return T_ERROR;
        }
        while (i < p->len && is_digit(p->text[i]))
            i++;
    }
    if (i < p->len && (is_ident_char(p->text[i]) || p->text[i] == '"')) {
        perr(p, CR_ERR_INVALID, start, "malformed number");
        return T_ERROR;
    }
    errno = 0;
    if (is_double) {
        p->dval = strtod(p->text + start, &end);
        if ((size_t)(end - p->text) != i) {
            perr(p, CR_ERR_INVALID, start, "malformed number");
            return T_ERROR;
        }
        if (errno == ERANGE && isinf(p->dval)) {
            perr(p, CR_ERR_INVALID, start, "number out of range for a double");
            return T_ERROR;
        }
        p->pos = i;
        return T_DOUBLE;
    }
    p->ival = strtoll(p->text + start, &end, 10);
    if ((size_t)(end - p->text) != i) {
        perr(p, CR_ERR_INVALID, start, "malformed number");
        return T_ERROR;
    }
    if (errno == ERANGE) {
        perr(p, CR_ERR_INVALID, start, "integer out of range for int64");
        return T_ERROR;
    }
    p->pos = i;
    return T_INT;
}

static bool kw(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* Advances to the next token. On a lexical error records it and sets T_ERROR. */
static void next(struct parser *p)
{
    const char *t = p->text;
    size_t i;

    free(p->str);
    p->str = NULL;
    while (p->pos < p->len && (t[p->pos] == ' ' || t[p->pos] == '\t' || t[p->pos] == '\n' ||
                               t[p->pos] == '\r'))
        p->pos++;
    p->tok_start = p->pos;
    if (p->pos >= p->len) {
        p->tok = T_END;
        return;
    }
    i = p->pos;
    if (is_ident_start((unsigned char)t[i])) {
        while (i < p->len && is_ident_char((unsigned char)t[i]))
            i++;
        size_t n = i - p->pos;
        const char *s = t + p->pos;
        p->pos = i;
        if (kw(s, n, "and"))
            p->tok = T_AND;
        else if (kw(s, n, "or"))
            p->tok = T_OR;
        else if (kw(s, n, "not"))
            p->tok = T_NOT;
        else if (kw(s, n, "in"))
            p->tok = T_IN;
        else if (kw(s, n, "true"))
            p->tok = T_TRUE;
        else if (kw(s, n, "false"))
            p->tok = T_FALSE;
        else {
            p->str = strndup(s, n);
            if (!p->str) {
                perr(p, CR_ERR_NOMEM, i, "oom");
                p->tok = T_ERROR;
                return;
            }
            p->tok = T_IDENT;
        }
        return;
    }
    if (is_digit(t[i]) || (t[i] == '-' && i + 1 < p->len && is_digit(t[i + 1])) ||
        (t[i] == '-' && i + 2 < p->len && t[i + 1] == '.' && is_digit(t[i + 2])) ||
        (t[i] == '.' && i + 1 < p->len && is_digit(t[i + 1]))) {
        p->tok = lex_number(p);
        return;
    }
    switch (t[i]) {
    case '"': p->tok = lex_string(p); return;
    case '(': p->tok = T_LPAREN; p->pos++; return;
    case ')': p->tok = T_RPAREN; p->pos++; return;
    case ',': p->tok = T_COMMA; p->pos++; return;
    default: break;
    }
    if (strchr("=!<>", t[i])) {
        static const struct {
            const char *s;
            enum tok t;
        } ops[] = {{"=", T_EQ}, {"!=", T_NE}, {"<", T_LT}, {"<=", T_LE}, {">", T_GT}, {">=", T_GE}};
        while (i < p->len && t[i] && strchr("=!<>", t[i]))
            i++;
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            if (kw(t + p->pos, i - p->pos, ops[k].s)) {
                p->tok = ops[k].t;
                p->pos = i;
                return;
            }
        }
        perr(p, CR_ERR_INVALID, p->pos, "unknown operator '%.*s' (use = != < <= > >= in)",
             (int)(i - p->pos), t + p->pos);
        p->tok = T_ERROR;
        return;
    }
    if ((unsigned char)t[i] >= 0x20 && (unsigned char)t[i] < 0x7f)
        perr(p, CR_ERR_INVALID, i, "unexpected character '%c'", t[i]);
    else
        perr(p, CR_ERR_INVALID, i, "unexpected byte 0x%02x", (unsigned char)t[i]);
    p->tok = T_ERROR;
}

/* ------------------------------------------------------------------------------------------ */
/* Parser */

static Cirrus__V1__Filter *new_filter(struct parser *p, size_t at)
{
    Cirrus__V1__Filter *f;

    if (++p->nodes > CR_FILTER_MAX_NODES) {
        perr(p, CR_ERR_INVALID, at, "more than %d nodes in the expression", CR_FILTER_MAX_NODES);
        return NULL;
    }
    f = malloc(sizeof *f);
    if (!f) {
        perr(p, CR_ERR_NOMEM, at, "oom");
        return NULL;
    }
    cirrus__v1__filter__init(f);
    return f;
}

static Cirrus__V1__AttrValue *parse_value(struct parser *p)
{
    Cirrus__V1__AttrValue *v;

    if (p->tok == T_ERROR)
        return NULL;
    if (p->tok != T_STRING && p->tok != T_INT && p->tok != T_DOUBLE && p->tok != T_TRUE &&
        p->tok != T_FALSE) {
        if (p->tok == T_IDENT)
            perr(p, CR_ERR_INVALID, p->tok_start,
                 "expected a value (strings need double quotes)");
        else
            perr(p, CR_ERR_INVALID, p->tok_start, "expected a value");
        return NULL;
    }
    v = malloc(sizeof *v);
    if (!v) {
        perr(p, CR_ERR_NOMEM, p->tok_start, "oom");
        return NULL;
    }
    cirrus__v1__attr_value__init(v);
    switch (p->tok) {
    case T_STRING:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v->s = p->str;
        p->str = NULL;
        break;
    case T_INT:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
        v->i = p->ival;
        break;
    case T_DOUBLE:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
        v->d = p->dval;
        break;
    default:
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
        v->b = p->tok == T_TRUE;
        break;
    }
    next(p);
    return v;
}

static Cirrus__V1__Filter *parse_comparison(struct parser *p)
{
    Cirrus__V1__Filter *f = NULL;
    size_t at = p->tok_start;
    char *attr;

    if (strlen(p->str) > CR_FILTER_MAX_ATTR) {
        perr(p, CR_ERR_INVALID, at, "attribute name longer than %d bytes", CR_FILTER_MAX_ATTR);
        return NULL;
    }
    f = new_filter(p, at);
    if (!f)
        return NULL;
    attr = p->str; /* taken: the node owns it from here */
    p->str = NULL;
    next(p);

    if (p->tok == T_IN) {
        Cirrus__V1__InSet *in = malloc(sizeof *in);
        if (!in) {
            free(attr);
            perr(p, CR_ERR_NOMEM, at, "oom");
            goto fail;
        }
        cirrus__v1__in_set__init(in);
        in->attr = attr;
        f->expr_case = CIRRUS__V1__FILTER__EXPR_IN;
        f->in = in;
        next(p);
        if (p->tok != T_LPAREN) {
            if (p->tok != T_ERROR)
                perr(p, CR_ERR_INVALID, p->tok_start, "expected '(' after 'in'");
            goto fail;
        }
        next(p);
        for (;;) {
            Cirrus__V1__AttrValue *v, **nv;
            if ((in->n_values & (in->n_values - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
                nv = realloc(in->values, (in->n_values ? 2 * in->n_values : 1) * sizeof *nv);
                if (!nv) {
                    perr(p, CR_ERR_NOMEM, p->tok_start, "oom");
                    goto fail;
                }
                in->values = nv;
            }
            v = parse_value(p);
            if (!v)
                goto fail;
            in->values[in->n_values++] = v;
            if (p->tok == T_COMMA) {
                next(p);
                continue;
            }
            if (p->tok == T_RPAREN)
                break;
            if (p->tok != T_ERROR)
                perr(p, CR_ERR_INVALID, p->tok_start, "expected ',' or ')' in the 'in' list");
            goto fail;
        }
        next(p);
        return f;
    }

    Cirrus__V1__Compare *cmp = malloc(sizeof *cmp);
    if (!cmp) {
        free(attr);
        perr(p, CR_ERR_NOMEM, at, "oom");
        goto fail;
    }
    cirrus__v1__compare__init(cmp);
    cmp->attr = attr;
    f->expr_case = CIRRUS__V1__FILTER__EXPR_CMP;
    f->cmp = cmp;
    switch (p->tok) {
    case T_EQ: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_EQ; break;
    case T_NE: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_NE; break;
    case T_LT: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_LT; break;
    case T_LE: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_LE; break;
    case T_GT: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_GT; break;
    case T_GE: cmp->op = CIRRUS__V1__COMPARE_OP__CMP_GE; break;
    case T_ERROR: goto fail;
    default:
        perr(p, CR_ERR_INVALID, p->tok_start, "expected an operator (= != < <= > >= in)");
        goto fail;
    }
    next(p);
    cmp->value = parse_value(p);
    if (!cmp->value)
        goto fail;
    return f;
fail:
    cirrus__v1__filter__free_unpacked(f, NULL);
    return NULL;
}

static Cirrus__V1__Filter *parse_or(struct parser *p, int *depth);

static Cirrus__V1__Filter *parse_unary(struct parser *p, int *depth)
{
    size_t at = p->tok_start;
    Cirrus__V1__Filter *f = NULL, *child;
    int d = 0;

    switch (p->tok) {
    case T_NOT:
    case T_LPAREN:
        if (++p->nest > CR_FILTER_MAX_DEPTH) {
            perr(p, CR_ERR_INVALID, at, "nesting deeper than %d levels", CR_FILTER_MAX_DEPTH);
            return NULL;
        }
        if (p->tok == T_LPAREN) {
            next(p);
            f = parse_or(p, depth);
            if (!f)
                return NULL;
            if (p->tok != T_RPAREN) {
                if (p->tok != T_ERROR)
                    perr(p, CR_ERR_INVALID, p->tok_start, "expected ')' to close '(' at column %zu",
                         at + 1);
                cirrus__v1__filter__free_unpacked(f, NULL);
                return NULL;
            }
            next(p);
            p->nest--;
            return f;
        }
        f = new_filter(p, at);
        if (!f)
            return NULL;
        next(p);
        child = parse_unary(p, &d);
        if (!child) {
            cirrus__v1__filter__free_unpacked(f, NULL);
            return NULL;
        }
        f->expr_case = CIRRUS__V1__FILTER__EXPR_NOT_EXPR;
        f->not_expr = child;
        p->nest--;
        if (d + 1 > CR_FILTER_MAX_DEPTH) {
            perr(p, CR_ERR_INVALID, at, "expression deeper than %d levels", CR_FILTER_MAX_DEPTH);
            cirrus__v1__filter__free_unpacked(f, NULL);
            return NULL;
        }
        *depth = d + 1;
        return f;
    case T_IDENT:
        *depth = 1;
        return parse_comparison(p);
    case T_ERROR:
        return NULL;
    case T_END:
        perr(p, CR_ERR_INVALID, at, "expected a comparison");
        return NULL;
    default:
        perr(p, CR_ERR_INVALID, at, "expected an attribute name, 'not' or '('");
        return NULL;
    }
}

/* One level of and/or: operand (op operand)*, flattened into one list node. */
static Cirrus__V1__Filter *parse_list(struct parser *p, bool is_or, int *depth)
{
    size_t at = p->tok_start;
    enum tok op = is_or ? T_OR : T_AND;
    Cirrus__V1__Filter *first, *f = NULL, *child;
    Cirrus__V1__FilterList *list;
    int d = 0, maxd = 0;

    first = is_or ? parse_list(p, false, &maxd) : parse_unary(p, &maxd);
    if (!first || p->tok != op) {
        *depth = maxd;
        return first;
    }
    f = new_filter(p, at);
    list = f ? malloc(sizeof *list) : NULL;
    if (!list) {
        if (f)
            perr(p, CR_ERR_NOMEM, at, "oom");
        free(f);
        cirrus__v1__filter__free_unpacked(first, NULL);
        return NULL;
    }
    cirrus__v1__filter_list__init(list);
    if (is_or) {
        f->expr_case = CIRRUS__V1__FILTER__EXPR_OR_EXPR;
        f->or_expr = list;
    } else {
        f->expr_case = CIRRUS__V1__FILTER__EXPR_AND_EXPR;
        f->and_expr = list;
    }
    child = first;
    for (;;) {
        if ((list->n_items & (list->n_items - 1)) == 0) {
            Cirrus__V1__Filter **ni =
                realloc(list->items, (list->n_items ? 2 * list->n_items : 1) * sizeof *ni);
            if (!ni) {
                cirrus__v1__filter__free_unpacked(child, NULL);
                perr(p, CR_ERR_NOMEM, at, "oom");
                goto fail;
            }
            list->items = ni;
        }
        list->items[list->n_items++] = child;
        if (p->tok != op)
            break;
        next(p);
        child = is_or ? parse_list(p, false, &d) : parse_unary(p, &d);
        if (!child)
            goto fail;
        if (d > maxd)
            maxd = d;
    }
    if (maxd + 1 > CR_FILTER_MAX_DEPTH) {
        perr(p, CR_ERR_INVALID, at, "expression deeper than %d levels", CR_FILTER_MAX_DEPTH);
        goto fail;
    }
    *depth = maxd + 1;
    return f;
fail:
    cirrus__v1__filter__free_unpacked(f, NULL);
    return NULL;
}

static Cirrus__V1__Filter *parse_or(struct parser *p, int *depth)
{
    return parse_list(p, true, depth);
}

cr_err cr_filter_parse(const char *text, Cirrus__V1__Filter **out)
{
    struct parser p = {0};
    Cirrus__V1__Filter *f = NULL;
    int depth = 0;
    size_t i;

    if (!text || !out)
        return cr_error_set(CR_ERR_INVALID, "filter: NULL argument");
    p.text = text;
    p.len = strnlen(text, CR_FILTER_MAX_TEXT + 1);
    if (p.len > CR_FILTER_MAX_TEXT)
        return cr_error_set(CR_ERR_INVALID, "filter: text longer than %d bytes",
                            CR_FILTER_MAX_TEXT);
    for (i = 0; i < p.len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
            break;
    if (i == p.len)
        return cr_error_set(CR_ERR_INVALID, "filter: empty expression");

    next(&p);
    f = parse_or(&p, &depth);
    if (f && p.tok != T_END) {
        if (p.tok == T_RPAREN)
            perr(&p, CR_ERR_INVALID, p.tok_start, "unbalanced ')'");
        else if (p.tok != T_ERROR)
            perr(&p, CR_ERR_INVALID, p.tok_start,
                 "unexpected text (expected 'and', 'or' or the end)");
        cirrus__v1__filter__free_unpacked(f, NULL);
        f = NULL;
    }
    free(p.str);
    if (!f)
        return p.rc ? p.rc : cr_error_set(CR_ERR_INTERNAL, "filter: parse failed");
    *out = f;
    return CR_OK;
}
