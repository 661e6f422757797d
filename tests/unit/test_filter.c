/* test_filter.c — the filter text language: parse, format, validate. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/filter_parse.h"
#include "common/test.h"

typedef Cirrus__V1__Filter Filter;

/* ---- helpers -------------------------------------------------------------------------- */

static bool value_eq(const Cirrus__V1__AttrValue *a, const Cirrus__V1__AttrValue *b)
{
    if (!a || !b || a->value_case != b->value_case)
        return false;
    switch (a->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S: return strcmp(a->s, b->s) == 0;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I: return a->i == b->i;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D: return memcmp(&a->d, &b->d, sizeof a->d) == 0;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: return a->b == b->b;
    default: return false;
    }
}

static bool tree_eq(const Filter *a, const Filter *b)
{
    const Cirrus__V1__FilterList *la, *lb;
    if (!a || !b || a->expr_case != b->expr_case)
        return false;
    switch (a->expr_case) {
    case CIRRUS__V1__FILTER__EXPR_CMP:
        return strcmp(a->cmp->attr, b->cmp->attr) == 0 && a->cmp->op == b->cmp->op &&
               value_eq(a->cmp->value, b->cmp->value);
    case CIRRUS__V1__FILTER__EXPR_IN:
        if (strcmp(a->in->attr, b->in->attr) || a->in->n_values != b->in->n_values)
            return false;
        for (size_t i = 0; i < a->in->n_values; i++)
            if (!value_eq(a->in->values[i], b->in->values[i]))
                return false;
        return true;
    case CIRRUS__V1__FILTER__EXPR_AND_EXPR:
    case CIRRUS__V1__FILTER__EXPR_OR_EXPR:
        la = a->expr_case == CIRRUS__V1__FILTER__EXPR_AND_EXPR ? a->and_expr : a->or_expr;
        lb = b->expr_case == CIRRUS__V1__FILTER__EXPR_AND_EXPR ? b->and_expr : b->or_expr;
        if (la->n_items != lb->n_items)
            return false;
        for (size_t i = 0; i < la->n_items; i++)
            if (!tree_eq(la->items[i], lb->items[i]))
                return false;
        return true;
    case CIRRUS__V1__FILTER__EXPR_NOT_EXPR: return tree_eq(a->not_expr, b->not_expr);
    default: return false;
    }
}

static Filter *parse_ok(const char *text)
{
    Filter *f = NULL;
    cr_err rc = cr_filter_parse(text, &f);
    CR_CHECK_MSG(rc == CR_OK && f, "parse '%s': %s", text, cr_error_message());
    if (f)
        CR_CHECK_MSG(cr_filter_validate(f) == CR_OK, "validate '%s': %s", text,
                     cr_error_message());
    return f;
}

/* Parses `text`, expects CR_ERR_INVALID and `want` (e.g. "column 12") in the message. */
static void parse_bad(const char *text, const char *want)
{
    Filter *f = NULL;
    cr_err rc = cr_filter_parse(text, &f);
    CR_CHECK_MSG(rc == CR_ERR_INVALID && f == NULL, "'%.60s' should fail, rc %d", text, rc);
    CR_CHECK_MSG(strstr(cr_error_message(), want) != NULL, "'%.60s': want '%s' in: %s", text,
                 want, cr_error_message());
    if (f)
        cirrus__v1__filter__free_unpacked(f, NULL);
}

static const Cirrus__V1__Compare *as_cmp(const Filter *f)
{
    return f && f->expr_case == CIRRUS__V1__FILTER__EXPR_CMP ? f->cmp : NULL;
}

static const Cirrus__V1__FilterList *as_list(const Filter *f, bool is_or)
{
    if (!f)
        return NULL;
    if (is_or)
        return f->expr_case == CIRRUS__V1__FILTER__EXPR_OR_EXPR ? f->or_expr : NULL;
    return f->expr_case == CIRRUS__V1__FILTER__EXPR_AND_EXPR ? f->and_expr : NULL;
}

static void round_trip(const char *text)
{
    char buf[8192], buf2[8192];
    Filter *f = parse_ok(text), *g = NULL;
    if (!f)
        return;
    CR_CHECK_MSG(cr_filter_format(f, buf, sizeof buf) == CR_OK, "%s", cr_error_message());
    CR_CHECK_MSG(cr_filter_parse(buf, &g) == CR_OK, "reparse '%s': %s", buf,
                 cr_error_message());
    CR_CHECK_MSG(tree_eq(f, g), "round trip '%s' -> '%s'", text, buf);
    if (g) {
        CR_CHECK(cr_filter_format(g, buf2, sizeof buf2) == CR_OK);
        CR_CHECK_MSG(strcmp(buf, buf2) == 0, "'%s' vs '%s'", buf, buf2);
    }
    cirrus__v1__filter__free_unpacked(f, NULL);
    cirrus__v1__filter__free_unpacked(g, NULL);
}

/* ---- valid filters --------------------------------------------------------------------- */

static void test_precedence(void)
{
    Filter *f = parse_ok("a = 1 or b = 2 and c = 3");
    const Cirrus__V1__FilterList *l = as_list(f, true), *l2;
    CR_CHECK(l && l->n_items == 2);
    if (l && l->n_items == 2) {
        CR_CHECK(as_cmp(l->items[0]) && strcmp(as_cmp(l->items[0])->attr, "a") == 0);
        l2 = as_list(l->items[1], false);
        CR_CHECK(l2 && l2->n_items == 2);
        if (l2 && l2->n_items == 2) {
            CR_CHECK(strcmp(as_cmp(l2->items[0])->attr, "b") == 0);
            CR_CHECK(strcmp(as_cmp(l2->items[1])->attr, "c") == 0);
        }
    }
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("(a = 1 or b = 2) and c = 3");
    l = as_list(f, false);
    CR_CHECK(l && l->n_items == 2 && as_list(l->items[0], true));
    cirrus__v1__filter__free_unpacked(f, NULL);

    /* flattened lists, not binds tighter than and */
    f = parse_ok("not a = 1 AND b != \"x\" and C >= 2.5");
    l = as_list(f, false);
    CR_CHECK(l && l->n_items == 3);
    if (l && l->n_items == 3) {
        CR_CHECK(l->items[0]->expr_case == CIRRUS__V1__FILTER__EXPR_NOT_EXPR);
        CR_CHECK(as_cmp(l->items[0]->not_expr) && as_cmp(l->items[0]->not_expr)->value->i == 1);
        CR_CHECK(as_cmp(l->items[1])->op == CIRRUS__V1__COMPARE_OP__CMP_NE);
        CR_CHECK(as_cmp(l->items[2])->op == CIRRUS__V1__COMPARE_OP__CMP_GE);
        CR_CHECK(strcmp(as_cmp(l->items[2])->attr, "C") == 0);
        CR_CHECK(as_cmp(l->items[2])->value->d == 2.5);
    }
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("not not (x < 3)");
    CR_CHECK(f && f->expr_case == CIRRUS__V1__FILTER__EXPR_NOT_EXPR &&
             f->not_expr->expr_case == CIRRUS__V1__FILTER__EXPR_NOT_EXPR &&
             as_cmp(f->not_expr->not_expr) &&
             as_cmp(f->not_expr->not_expr)->op == CIRRUS__V1__COMPARE_OP__CMP_LT);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("a = 1 Or b = 2 OR c = 3");
    l = as_list(f, true);
    CR_CHECK(l && l->n_items == 3);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("((((a.b_c = 1))))");
    CR_CHECK(as_cmp(f) && strcmp(as_cmp(f)->attr, "a.b_c") == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);
}

static void test_values(void)
{
    Filter *f;
    const Cirrus__V1__Compare *c;

    f = parse_ok("s = \"a\\\"b\\\\c\\nd\\te\\u00e9\\ud83d\\ude00\"");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_S);
    if (c)
        CR_CHECK(strcmp(c->value->s, "a\"b\\c\nd\te\xc3\xa9\xf0\x9f\x98\x80") == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("s = \"\"");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_S && c->value->s[0] == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("name = \"caf\xc3\xa9\"");
    c = as_cmp(f);
    CR_CHECK(c && strcmp(c->value->s, "caf\xc3\xa9") == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("x=-5");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_I && c->value->i == -5);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("x > -2.5e3");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_D &&
             c->value->d == -2500.0 && c->op == CIRRUS__V1__COMPARE_OP__CMP_GT);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("x <= 1E2");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_D && c->value->d == 100.0);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("x < .5");
    c = as_cmp(f);
    CR_CHECK(c && c->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_D && c->value->d == 0.5);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("x = 9223372036854775807 or x = -9223372036854775808");
    CR_CHECK(as_list(f, true) && as_cmp(as_list(f, true)->items[0])->value->i == INT64_MAX &&
             as_cmp(as_list(f, true)->items[1])->value->i == INT64_MIN);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("in_stock = TRUE and sale = false");
    CR_CHECK(as_list(f, false) && as_cmp(as_list(f, false)->items[0])->value->b == 1 &&
             as_cmp(as_list(f, false)->items[1])->value->value_case ==
                 CIRRUS__V1__ATTR_VALUE__VALUE_B &&
             as_cmp(as_list(f, false)->items[1])->value->b == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("color IN (\"red\", 2, 2.5, true)\n");
    CR_CHECK(f && f->expr_case == CIRRUS__V1__FILTER__EXPR_IN && f->in->n_values == 4 &&
             strcmp(f->in->attr, "color") == 0);
    if (f && f->expr_case == CIRRUS__V1__FILTER__EXPR_IN && f->in->n_values == 4) {
        CR_CHECK(strcmp(f->in->values[0]->s, "red") == 0);
        CR_CHECK(f->in->values[1]->i == 2);
        CR_CHECK(f->in->values[2]->d == 2.5);
        CR_CHECK(f->in->values[3]->b == 1);
    }
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("c in (\"only\")");
    CR_CHECK(f && f->expr_case == CIRRUS__V1__FILTER__EXPR_IN && f->in->n_values == 1);
    cirrus__v1__filter__free_unpacked(f, NULL);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_errors(void)
{
    char *big;
    size_t n;

    parse_bad("category = \"abc", "unterminated string at column 12");
    parse_bad("category = and x = 1", "expected a value at column 12");
    parse_bad("category = and x = 1", "category = and x = 1\n");
    {
        /* the caret sits under the offending token */
        Filter *f = NULL;
        const char *m, *nl, *tok;
        CR_CHECK(cr_filter_parse("category = and x = 1", &f) == CR_ERR_INVALID);
        m = cr_error_message();
        nl = strchr(m, '\n');
        tok = strstr(m, "and x");
        CR_CHECK(nl && tok && strlen(nl + 1) == (size_t)(tok - m) + 1 && nl[1 + (tok - m)] == '^');
    }
    parse_bad("a = 1 b = 2", "unexpected text");
    parse_bad("a = 1 b = 2", "column 7");
    parse_bad("a == 1", "unknown operator '==' (use = != < <= > >= in) at column 3");
    parse_bad("a <> 1", "unknown operator '<>'");
    parse_bad("a ! 1", "unknown operator '!'");
    parse_bad("a like 1", "expected an operator");
    parse_bad("a ~ 1", "unexpected character '~' at column 3");
    parse_bad("", "empty expression");
    parse_bad("   \n\t ", "empty expression");
    parse_bad("a = 1 and", "expected a comparison at column 10 (end of input)");
    parse_bad("a =", "expected a value at column 4 (end of input)");
    parse_bad("a = red", "strings need double quotes");
    parse_bad("(a = 1", "expected ')'");
    parse_bad("a = 1)", "unbalanced ')' at column 6");
    parse_bad("a in ()", "expected a value at column 7");
    parse_bad("a in (1 2)", "expected ',' or ')'");
    parse_bad("a in 1", "expected '(' after 'in'");
    parse_bad("a in (1,", "expected a value");
    parse_bad("a = 99999999999999999999", "integer out of range");
    parse_bad("a = -9223372036854775809", "integer out of range");
    parse_bad("a = 1e999", "out of range for a double");
    parse_bad("a = 1e", "exponent");
    parse_bad("a = 12abc", "malformed number at column 5");
    parse_bad("a = 1.2.3", "malformed number");
    parse_bad("a = \"x\\qy\"", "unknown escape '\\q' (use");
    parse_bad("a = \"x\\qy\"", "column 7");
    parse_bad("a = \"\\ud800\"", "unpaired surrogate");
    parse_bad("a = \"\\udc00\"", "unpaired surrogate");
    parse_bad("a = \"\\u12\"", "four hex digits");
    parse_bad("a = \"\\u0000\"", "not allowed");
    parse_bad("a = \"\xff\"", "invalid UTF-8");
    parse_bad("and = 1", "expected an attribute name");
    parse_bad("= 1", "expected an attribute name, 'not' or '(' at column 1");
    parse_bad("not", "expected a comparison");
    parse_bad("a = 1 or or b = 2", "column 10");
    parse_bad("a = \"\x01\" and \x01", "unexpected byte 0x01");

    /* nesting: 65 parentheses, 65 nots */
    big = malloc(CR_FILTER_MAX_TEXT + 64);
    n = 0;
    for (int i = 0; i < 65; i++)
        big[n++] = '(';
    n += (size_t)sprintf(big + n, "a = 1");
    for (int i = 0; i < 65; i++)
        big[n++] = ')';
    big[n] = 0;
    parse_bad(big, "nesting deeper than 64 levels at column 65");
    n = 0;
    for (int i = 0; i < 65; i++)
        n += (size_t)sprintf(big + n, "not ");
    n += (size_t)sprintf(big + n, "a = 1");
    parse_bad(big, "nesting deeper than 64");
    /* 63 nots: depth 64, fine */
    n = 0;
    for (int i = 0; i < 63; i++)
        n += (size_t)sprintf(big + n, "NOT ");
    n += (size_t)sprintf(big + n, "a = 1");
    cirrus__v1__filter__free_unpacked(parse_ok(big), NULL);
    /* 64 nots: tree depth 65 */
    n = 0;
    for (int i = 0; i < 64; i++)
        n += (size_t)sprintf(big + n, "not ");
    n += (size_t)sprintf(big + n, "a = 1");
    parse_bad(big, "deeper than 64 levels");
    /* parentheses that each add an and/or level: tree deeper than the text nesting limit */
    n = 0;
    for (int i = 0; i < 64; i++)
        big[n++] = '(';
    n += (size_t)sprintf(big + n, "a = 1");
    for (int i = 0; i < 64; i++)
        n += (size_t)sprintf(big + n, " %s z = 1)", i % 2 ? "and" : "or");
    big[n] = 0;
    parse_bad(big, "expression deeper than 64 levels");

    /* node limit: 4100 comparisons */
    n = 0;
    for (int i = 0; i < 4100; i++)
        n += (size_t)sprintf(big + n, "%sa=1", i ? " or " : "");
    parse_bad(big, "more than 4096 nodes");
    n = 0;
    for (int i = 0; i < 4095; i++)
        n += (size_t)sprintf(big + n, "%sa=1", i ? " or " : "");
    cirrus__v1__filter__free_unpacked(parse_ok(big), NULL);

    /* size limit */
    memset(big, ' ', CR_FILTER_MAX_TEXT + 1);
    memcpy(big, "a = 1", 5);
    big[CR_FILTER_MAX_TEXT + 1] = 0;
    parse_bad(big, "longer than 65536 bytes");
    big[CR_FILTER_MAX_TEXT] = 0;
    cirrus__v1__filter__free_unpacked(parse_ok(big), NULL);

    /* a long line: the snippet is a window around the error */
    memset(big, ' ', 1000);
    memcpy(big + 500, "a = = 1", 7);
    big[1000] = 0;
    parse_bad(big, "expected a value at column 505: ...");
    free(big);

    CR_CHECK(cr_filter_parse(NULL, NULL) == CR_ERR_INVALID);

    Filter *f = NULL;
    CR_CHECK(cr_filter_parse("category = \"dress\" and price < and x = 1", &f) != CR_OK);
    printf("example error:\n%s\n", cr_error_message());
}

/* ---- formatting and round trips --------------------------------------------------------- */

static void test_round_trip(void)
{
    static const char *const texts[] = {
        "a = 1 or b = 2 and c = 3",
        "(a = 1 or b = 2) and c = 3",
        "not (a = 1 or b = 2) and not c = 3",
        "not not x < 3",
        "x = -5 and y > -2.5e3 and z <= 100.0 and w >= 0.1 and v != 1e300",
        "x = -0.0 or x = 123456789.123456789 or x = 5e-324",
        "color in (\"red\", \"blue\") and brand != \"acme \\\"pro\\\"\"",
        "s = \"tab\\there\\nnewline \\\\ \\u00e9 \\u0001\"",
        "a = true or b = false",
        "((a = 1 and b = 2) and c = 3) or ((d = 4 or e = 5) or f = 6)",
        "not (not (x in (1, 2.5, true, \"s\")))",
        "k = 9223372036854775807 and k != -9223372036854775808",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        round_trip(texts[i]);
}

static void test_format(void)
{
    char buf[256], tiny[8];
    Filter *f = parse_ok("a = 1 or b = 2 and c = 3");
    CR_CHECK(cr_filter_format(f, buf, sizeof buf) == CR_OK);
    CR_CHECK_MSG(strcmp(buf, "a = 1 or b = 2 and c = 3") == 0, "%s", buf);
    CR_CHECK(cr_filter_format(f, tiny, sizeof tiny) == CR_ERR_INVALID);
    CR_CHECK(strlen(tiny) == sizeof tiny - 1 && strncmp(tiny, "a = 1 o", 7) == 0);
    CR_CHECK(strstr(cr_error_message(), "needs 25 bytes") != NULL);
    cirrus__v1__filter__free_unpacked(f, NULL);

    f = parse_ok("p < 100.0 AND NOT (q = \"x\" OR q = \"y\")");
    CR_CHECK(cr_filter_format(f, buf, sizeof buf) == CR_OK);
    CR_CHECK_MSG(strcmp(buf, "p < 100.0 and not (q = \"x\" or q = \"y\")") == 0, "%s", buf);
    cirrus__v1__filter__free_unpacked(f, NULL);

    /* Range (never produced by the parser) */
    Cirrus__V1__Filter rf = CIRRUS__V1__FILTER__INIT, nf = CIRRUS__V1__FILTER__INIT;
    Cirrus__V1__Range r = CIRRUS__V1__RANGE__INIT;
    r.attr = "price";
    r.has_lo = 1;
    r.lo = 10;
    r.lo_inclusive = 1;
    r.has_hi = 1;
    r.hi = 20.5;
    rf.expr_case = CIRRUS__V1__FILTER__EXPR_RANGE;
    rf.range = &r;
    CR_CHECK(cr_filter_validate(&rf) == CR_OK);
    CR_CHECK(cr_filter_format(&rf, buf, sizeof buf) == CR_OK);
    CR_CHECK_MSG(strcmp(buf, "price >= 10.0 and price < 20.5") == 0, "%s", buf);
    nf.expr_case = CIRRUS__V1__FILTER__EXPR_NOT_EXPR;
    nf.not_expr = &rf;
    r.has_lo = 0;
    CR_CHECK(cr_filter_format(&nf, buf, sizeof buf) == CR_OK);
    CR_CHECK_MSG(strcmp(buf, "not price < 20.5") == 0, "%s", buf);
    r.has_lo = 1;
    CR_CHECK(cr_filter_format(&nf, buf, sizeof buf) == CR_OK);
    CR_CHECK_MSG(strcmp(buf, "not (price >= 10.0 and price < 20.5)") == 0, "%s", buf);

    /* malformed trees still print, flagged */
    Cirrus__V1__Filter empty = CIRRUS__V1__FILTER__INIT;
    CR_CHECK(cr_filter_format(&empty, buf, sizeof buf) == CR_ERR_INVALID);
    CR_CHECK(strcmp(buf, "<unset>") == 0);
    CR_CHECK(cr_filter_format(NULL, buf, sizeof buf) == CR_ERR_INVALID);
    CR_CHECK(cr_filter_format(&empty, buf, 0) == CR_ERR_INVALID);
}

/* ---- validate --------------------------------------------------------------------------- */

static void test_validate(void)
{
    Cirrus__V1__Filter f = CIRRUS__V1__FILTER__INIT, g = CIRRUS__V1__FILTER__INIT;
    Cirrus__V1__Compare c = CIRRUS__V1__COMPARE__INIT;
    Cirrus__V1__AttrValue v = CIRRUS__V1__ATTR_VALUE__INIT;
    Cirrus__V1__InSet in = CIRRUS__V1__IN_SET__INIT;
    Cirrus__V1__FilterList list = CIRRUS__V1__FILTER_LIST__INIT;
    Cirrus__V1__StringList sl = CIRRUS__V1__STRING_LIST__INIT;
    Cirrus__V1__Range r = CIRRUS__V1__RANGE__INIT;
    Cirrus__V1__AttrValue *vals[1] = {&v};
    Cirrus__V1__Filter *items[1] = {&g};
    char longname[CR_FILTER_MAX_ATTR + 2];

    CR_CHECK(cr_filter_validate(NULL) == CR_ERR_INVALID);
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* oneof not set */
    CR_CHECK(strstr(cr_error_message(), "no operator") != NULL);

    f.expr_case = CIRRUS__V1__FILTER__EXPR_CMP;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* NULL cmp */
    f.cmp = &c;
    v.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
    v.i = 3;
    c.value = &v;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* empty attr */
    CR_CHECK(strstr(cr_error_message(), "empty attribute name") != NULL);
    c.attr = "a";
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    c.attr = longname;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    c.attr = "a";
    c.op = (Cirrus__V1__CompareOp)9;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    c.op = CIRRUS__V1__COMPARE_OP__CMP_LT;
    c.value = NULL;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    c.value = &v;
    v.value_case = CIRRUS__V1__ATTR_VALUE__VALUE__NOT_SET;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    v.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
    v.d = NAN;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    v.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
    v.strings = &sl;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    v.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
    v.s = NULL;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    v.s = "ok";
    CR_CHECK(cr_filter_validate(&f) == CR_OK);

    f.expr_case = CIRRUS__V1__FILTER__EXPR_IN;
    f.in = &in;
    in.attr = "a";
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* empty set */
    CR_CHECK(strstr(cr_error_message(), "empty 'in' set") != NULL);
    in.n_values = 1;
    in.values = vals;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    in.attr = "";
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    in.attr = "a";

    f.expr_case = CIRRUS__V1__FILTER__EXPR_RANGE;
    f.range = &r;
    r.attr = "p";
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* no bound */
    r.has_hi = 1;
    r.hi = 5;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    r.hi = NAN;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    r.hi = 5;

    f.expr_case = CIRRUS__V1__FILTER__EXPR_AND_EXPR;
    f.and_expr = &list;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* empty and */
    list.n_items = 1;
    list.items = items;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID); /* child not set */
    g.expr_case = CIRRUS__V1__FILTER__EXPR_CMP;
    g.cmp = &c;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    f.expr_case = CIRRUS__V1__FILTER__EXPR_OR_EXPR;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    f.expr_case = CIRRUS__V1__FILTER__EXPR_NOT_EXPR;
    f.not_expr = NULL;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    f.not_expr = &g;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);

    /* depth: 63 nots over a leaf (64 levels) are fine, 64 nots are not */
    Cirrus__V1__Filter chain[65];
    for (int i = 0; i < 65; i++) {
        cirrus__v1__filter__init(&chain[i]);
        chain[i].expr_case = CIRRUS__V1__FILTER__EXPR_NOT_EXPR;
        chain[i].not_expr = i + 1 < 65 ? &chain[i + 1] : &g;
    }
    CR_CHECK(cr_filter_validate(&chain[2]) == CR_OK);
    CR_CHECK(cr_filter_validate(&chain[1]) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "deeper than 64") != NULL);

    /* node count */
    Cirrus__V1__Filter **many = malloc(4100 * sizeof *many);
    for (int i = 0; i < 4100; i++)
        many[i] = &g;
    list.items = many;
    list.n_items = 4095;
    f.expr_case = CIRRUS__V1__FILTER__EXPR_AND_EXPR;
    f.and_expr = &list;
    CR_CHECK(cr_filter_validate(&f) == CR_OK);
    list.n_items = 4100;
    CR_CHECK(cr_filter_validate(&f) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "more than 4096 nodes") != NULL);
    free(many);
}

/* ---- random filters: text generation, round trips, mutation ------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void gen_value(char *b, size_t *n)
{
    static const char *const strs[] = {"\"red\"", "\"a\\\"b\"", "\"\"", "\"\\u00e9\\n\"",
                                       "\"x y\""};
    switch (rnd(4)) {
    case 0: *n += (size_t)sprintf(b + *n, "%s", strs[rnd(5)]); break;
    case 1: *n += (size_t)sprintf(b + *n, "%d", (int)rnd(2000) - 1000); break;
    case 2: *n += (size_t)sprintf(b + *n, "%g", ((double)rnd(100000) - 50000) / 7.0); break;
    default: *n += (size_t)sprintf(b + *n, "%s", rnd(2) ? "true" : "FALSE"); break;
    }
}

static void gen_expr(char *b, size_t *n, int depth)
{
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
    static const char *const attrs[] = {"a", "b.c", "_d", "price", "Color"};
    uint32_t k = depth > 5 ? 0 : rnd(6);
    if (k <= 1) {
        if (rnd(4) == 0) {
            *n += (size_t)sprintf(b + *n, "%s in (", attrs[rnd(5)]);
            uint32_t m = 1 + rnd(4);
            for (uint32_t i = 0; i < m; i++) {
                if (i)
                    *n += (size_t)sprintf(b + *n, ", ");
                gen_value(b, n);
            }
            *n += (size_t)sprintf(b + *n, ")");
        } else {
            *n += (size_t)sprintf(b + *n, "%s %s ", attrs[rnd(5)], ops[rnd(6)]);
            gen_value(b, n);
        }
    } else if (k == 2) {
        *n += (size_t)sprintf(b + *n, "not ");
        gen_expr(b, n, depth + 1);
    } else if (k == 3) {
        *n += (size_t)sprintf(b + *n, "(");
        gen_expr(b, n, depth + 1);
        *n += (size_t)sprintf(b + *n, ")");
    } else {
        uint32_t m = 2 + rnd(3);
        for (uint32_t i = 0; i < m; i++) {
            if (i)
                *n += (size_t)sprintf(b + *n, k == 4 ? " and " : " or ");
            gen_expr(b, n, depth + 1);
        }
    }
}

static void test_random(void)
{
    char *text = malloc(1 << 20);
    int ok = 0, rejected = 0;
    for (int iter = 0; iter < 500; iter++) {
        size_t n = 0;
        gen_expr(text, &n, 0);
        text[n] = 0;
        round_trip(text);
        /* mutate: must never crash or leak, may or may not parse */
        for (int m = 0; m < 8; m++) {
            char save;
            size_t at = rnd((uint32_t)n);
            Filter *f = NULL;
            save = text[at];
            text[at] = "()\"\\,=<>! a1.-ex"[rnd(16)];
            if (cr_filter_parse(text, &f) == CR_OK) {
                ok++;
                CR_CHECK(cr_filter_validate(f) == CR_OK);
                cirrus__v1__filter__free_unpacked(f, NULL);
            } else {
                rejected++;
                CR_CHECK(strstr(cr_error_message(), "filter: ") == cr_error_message());
            }
            text[at] = save;
        }
    }
    printf("random mutations: %d parsed, %d rejected\n", ok, rejected);
    free(text);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_precedence();
    test_values();
    test_errors();
    test_round_trip();
    test_format();
    test_validate();
    test_random();
    return CR_TEST_END();
}
