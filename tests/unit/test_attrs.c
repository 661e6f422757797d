/* test_attrs.c — the shard attribute index against a brute-force evaluator, errors, deletes,
 * concurrency and a 1M-item timing. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shard/filter_parse.h"
#include "common/test.h"
#include "shard/attrs.h"
#include "shard/convert.h"

typedef Cirrus__V1__Attribute Attr;
typedef Cirrus__V1__AttrValue Val;
typedef Cirrus__V1__Filter Filter;

/* The index speaks shard_attr and shard_filter; these tests build the wire forms (the
 * reference evaluator below reads them) and go through the shard server's translator. */
static cr_err attrs_set_pb(shard_attrs *idx, uint64_t id, const Attr *const *a, size_t n)
{
    shard_attr *sa = NULL;
    cr_err rc = shard_conv_attrs_from_pb((Attr *const *)a, n, &sa);
    if (!rc)
        rc = shard_attrs_set(idx, id, sa, n);
    free(sa);
    return rc;
}

static cr_err attrs_eval_pb(shard_attrs *idx, const Filter *f, uint64_t limit, uint64_t **bm,
                            uint64_t *m)
{
    shard_filter *sf = NULL;
    cr_err rc = shard_conv_filter_compile(f, &sf);
    if (!rc)
        rc = shard_attrs_eval(idx, sf, limit, bm, m);
    shard_filter_free(&sf);
    return rc;
}

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool bit(const uint64_t *bm, uint64_t id)
{
    return (bm[id >> 6] >> (id & 63)) & 1;
}

/* ---- building attributes (heap, freed with cirrus__v1__attribute__free_unpacked) ---------- */

static Attr *mk_attr(const char *name)
{
    Attr *a = malloc(sizeof *a);
    cirrus__v1__attribute__init(a);
    a->name = strdup(name);
    a->value = malloc(sizeof *a->value);
    cirrus__v1__attr_value__init(a->value);
    return a;
}

static Attr *attr_s(const char *name, const char *s)
{
    Attr *a = mk_attr(name);
    a->value->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
    a->value->s = strdup(s);
    return a;
}

static Attr *attr_i(const char *name, int64_t i)
{
    Attr *a = mk_attr(name);
    a->value->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
    a->value->i = i;
    return a;
}

static Attr *attr_d(const char *name, double d)
{
    Attr *a = mk_attr(name);
    a->value->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
    a->value->d = d;
    return a;
}

static Attr *attr_b(const char *name, bool b)
{
    Attr *a = mk_attr(name);
    a->value->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
    a->value->b = b;
    return a;
}

static Attr *attr_list(const char *name, const char *const *vals, size_t n)
{
    Attr *a = mk_attr(name);
    Cirrus__V1__StringList *sl = malloc(sizeof *sl);
    cirrus__v1__string_list__init(sl);
    sl->n_values = n;
    sl->values = malloc((n ? n : 1) * sizeof *sl->values);
    for (size_t i = 0; i < n; i++)
        sl->values[i] = strdup(vals[i]);
    a->value->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
    a->value->strings = sl;
    return a;
}

/* ---- brute-force reference ------------------------------------------------------------- */

struct item {
    bool live;
    Attr *attrs[8];
    size_t n;
};

enum { TS = 1, TN = 2, TB = 4 };

static unsigned vtype(const Val *v)
{
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S:
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS: return TS;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: return TB;
    default: return TN;
    }
}

static long double lnum(const Val *v)
{
    return v->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_I ? (long double)v->i
                                                            : (long double)v->d;
}

/* Calls back for each scalar value of `name` on the item: -1 lt, 0 eq, 1 gt, 2 = other type
 * or unordered; returns the number of same-typed values and whether any satisfies `want`. */
static bool item_cmp(const struct item *it, const char *name, const Val *q, int op, bool *has)
{
    unsigned qt = vtype(q);
    bool any_eq = false, any_op = false;
    *has = false;
    for (size_t k = 0; k < it->n; k++) {
        const Attr *a = it->attrs[k];
        if (strcmp(a->name, name) || vtype(a->value) != qt)
            continue;
        if (qt == TS) {
            const char *one[1];
            char **vals;
            size_t n;
            if (a->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_S) {
                one[0] = a->value->s;
                vals = (char **)one;
                n = 1;
            } else {
                vals = a->value->strings->values;
                n = a->value->strings->n_values;
            }
            for (size_t i = 0; i < n; i++) {
                *has = true;
                if (strcmp(vals[i], q->s) == 0)
                    any_eq = true;
            }
        } else if (qt == TB) {
            *has = true;
            if (!a->value->b == !q->b)
                any_eq = true;
        } else {
            if (a->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_D && isnan(a->value->d))
                continue;
            long double x = lnum(a->value), y = lnum(q);
            *has = true;
            if (x == y)
                any_eq = true;
            switch (op) {
            case CIRRUS__V1__COMPARE_OP__CMP_LT: any_op |= x < y; break;
            case CIRRUS__V1__COMPARE_OP__CMP_LE: any_op |= x <= y; break;
            case CIRRUS__V1__COMPARE_OP__CMP_GT: any_op |= x > y; break;
            case CIRRUS__V1__COMPARE_OP__CMP_GE: any_op |= x >= y; break;
            default: break;
            }
        }
    }
    if (op == CIRRUS__V1__COMPARE_OP__CMP_EQ)
        return any_eq;
    if (op == CIRRUS__V1__COMPARE_OP__CMP_NE)
        return *has && !any_eq;
    return any_op;
}

static bool brute(const struct item *it, const Filter *f)
{
    bool has;
    const Cirrus__V1__FilterList *l;
    switch (f->expr_case) {
    case CIRRUS__V1__FILTER__EXPR_CMP:
        return item_cmp(it, f->cmp->attr, f->cmp->value, f->cmp->op, &has);
    case CIRRUS__V1__FILTER__EXPR_IN:
        for (size_t i = 0; i < f->in->n_values; i++)
            if (item_cmp(it, f->in->attr, f->in->values[i], CIRRUS__V1__COMPARE_OP__CMP_EQ, &has))
                return true;
        return false;
    case CIRRUS__V1__FILTER__EXPR_RANGE: {
        Val lo = CIRRUS__V1__ATTR_VALUE__INIT, hi = CIRRUS__V1__ATTR_VALUE__INIT;
        lo.value_case = hi.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
        lo.d = f->range->lo;
        hi.d = f->range->hi;
        if (f->range->has_lo &&
            !item_cmp(it, f->range->attr, &lo,
                      f->range->lo_inclusive ? CIRRUS__V1__COMPARE_OP__CMP_GE
                                             : CIRRUS__V1__COMPARE_OP__CMP_GT, &has))
            return false;
        if (f->range->has_hi &&
            !item_cmp(it, f->range->attr, &hi,
                      f->range->hi_inclusive ? CIRRUS__V1__COMPARE_OP__CMP_LE
                                             : CIRRUS__V1__COMPARE_OP__CMP_LT, &has))
            return false;
        return true;
    }
    case CIRRUS__V1__FILTER__EXPR_NOT_EXPR: return !brute(it, f->not_expr);
    case CIRRUS__V1__FILTER__EXPR_AND_EXPR:
        l = f->and_expr;
        for (size_t i = 0; i < l->n_items; i++)
            if (!brute(it, l->items[i]))
                return false;
        return true;
    case CIRRUS__V1__FILTER__EXPR_OR_EXPR:
        l = f->or_expr;
        for (size_t i = 0; i < l->n_items; i++)
            if (brute(it, l->items[i]))
                return true;
        return false;
    default: return false;
    }
}

/* ---- random items and filters ----------------------------------------------------------- */

static const char *const CATS[] = {"dress", "shirt", "shoe", "bag", "hat", "coat", "skirt", "sock"};
static const char *const COLORS[] = {"red", "blue", "green", "black", "white", "pink"};
static const char *const SIZES[] = {"S", "M", "L"};

static void random_item(struct item *it)
{
    char brand[16];
    const char *cols[4];
    it->n = 0;
    it->live = true;
    it->attrs[it->n++] = attr_s("cat", CATS[rnd(8)]);
    if (rnd(10) < 8) {
        snprintf(brand, sizeof brand, "b%u", rnd(50));
        it->attrs[it->n++] = attr_s("brand", brand);
    }
    if (rnd(10) < 9) {
        if (rnd(2))
            it->attrs[it->n++] = attr_i("price", (int64_t)rnd(200));
        else
            it->attrs[it->n++] = attr_d("price", (double)rnd(4000) / 20.0);
    }
    if (rnd(100) < 85)
        it->attrs[it->n++] = attr_b("in_stock", rnd(2));
    if (rnd(10) < 8) {
        size_t n = rnd(4);
        for (size_t i = 0; i < n; i++)
            cols[i] = COLORS[rnd(6)];
        it->attrs[it->n++] = attr_list("colors", cols, n);
    }
    if (rnd(10) < 5) {
        if (rnd(2))
            it->attrs[it->n++] = attr_s("size", SIZES[rnd(3)]);
        else
            it->attrs[it->n++] = attr_i("size", 36 + (int64_t)rnd(10));
    }
}

static void item_clear(struct item *it)
{
    for (size_t k = 0; k < it->n; k++)
        cirrus__v1__attribute__free_unpacked(it->attrs[k], NULL);
    it->n = 0;
    it->live = false;
}

static size_t gen_value(char *b, unsigned ty)
{
    if (ty == TS) {
        switch (rnd(5)) {
        case 0: return (size_t)sprintf(b, "\"%s\"", CATS[rnd(8)]);
        case 1: return (size_t)sprintf(b, "\"b%u\"", rnd(55));
        case 2: return (size_t)sprintf(b, "\"%s\"", SIZES[rnd(3)]);
        default: return (size_t)sprintf(b, "\"%s\"", COLORS[rnd(6)]);
        }
    }
    if (ty == TB)
        return (size_t)sprintf(b, "%s", rnd(2) ? "true" : "false");
    if (rnd(2))
        return (size_t)sprintf(b, "%d", (int)rnd(220) - 10);
    return (size_t)sprintf(b, "%.2f", (double)rnd(4400) / 20.0 - 10);
}

static size_t gen_filter(char *b, int depth)
{
    static const struct {
        const char *name;
        unsigned types;
    } attrs[] = {{"cat", TS},   {"brand", TS},     {"price", TN},
                 {"colors", TS}, {"in_stock", TB}, {"size", TS | TN}};
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
    size_t n = 0;
    uint32_t k = depth >= 3 ? 0 : rnd(6);

    if (k <= 2) {
        int a = (int)rnd(6);
        unsigned ty = attrs[a].types;
        if (ty == (TS | TN))
            ty = rnd(2) ? TS : TN;
        if (rnd(4) == 0) {
            uint32_t m = 1 + rnd(3);
            n += (size_t)sprintf(b + n, "%s in (", attrs[a].name);
            for (uint32_t i = 0; i < m; i++) {
                if (i)
                    n += (size_t)sprintf(b + n, ", ");
                n += gen_value(b + n, ty);
            }
            n += (size_t)sprintf(b + n, ")");
        } else {
            const char *op = ops[ty == TN ? rnd(6) : rnd(2)];
            n += (size_t)sprintf(b + n, "%s %s ", attrs[a].name, op);
            n += gen_value(b + n, ty);
        }
    } else if (k == 3) {
        n += (size_t)sprintf(b + n, "not (");
        n += gen_filter(b + n, depth + 1);
        n += (size_t)sprintf(b + n, ")");
    } else {
        uint32_t m = 2 + rnd(2);
        for (uint32_t i = 0; i < m; i++) {
            if (i)
                n += (size_t)sprintf(b + n, k == 4 ? " and " : " or ");
            n += (size_t)sprintf(b + n, "(");
            n += gen_filter(b + n, depth + 1);
            n += (size_t)sprintf(b + n, ")");
        }
    }
    return n;
}

/* Evaluates `f` on the index and by brute force over ids [0, limit); returns mismatches. */
static size_t compare(shard_attrs *idx, const struct item *items, uint64_t n_items,
                      const Filter *f, uint64_t limit, const char *text)
{
    uint64_t *bm = NULL, matches = 0, want = 0;
    size_t bad = 0;
    cr_err rc = attrs_eval_pb(idx, f, limit, &bm, &matches);
    CR_CHECK_MSG(rc == CR_OK, "eval '%s': %s", text, cr_error_message());
    if (rc)
        return 1;
    for (uint64_t id = 0; id < limit; id++) {
        bool exp = id < n_items && items[id].live && brute(&items[id], f);
        want += exp;
        if (exp != bit(bm, id)) {
            if (bad < 3)
                fprintf(stderr, "mismatch id %llu on '%s': index %d brute %d\n",
                        (unsigned long long)id, text, bit(bm, id), exp);
            bad++;
        }
    }
    for (uint64_t id = limit; id < ((limit + 63) & ~(uint64_t)63); id++)
        if (bit(bm, id))
            bad++;
    CR_CHECK_MSG(matches == want, "'%s': %llu matches, want %llu", text,
                 (unsigned long long)matches, (unsigned long long)want);
    free(bm);
    return bad;
}

static cr_err set_item(shard_attrs *idx, uint64_t id, const struct item *it)
{
    return attrs_set_pb(idx, id, (const Attr *const *)it->attrs, it->n);
}

static void test_random(void)
{
    enum { N = 3000, CAP = 4000 };
    struct item *items = calloc(CAP, sizeof *items);
    shard_attrs *idx = NULL;
    uint64_t next = 0;
    char text[4096];
    size_t bad = 0, evaluated = 0;
    uint64_t total_matches = 0;

    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    for (; next < N; next++) {
        random_item(&items[next]);
        CR_CHECK(set_item(idx, next, &items[next]) == CR_OK);
    }
    CR_CHECK(shard_attrs_count_known(idx) == 6);
    CR_CHECK(shard_attrs_count_live(idx) == N);

    for (int round = 0; round < 4; round++) {
        for (int q = 0; q < 150; q++) {
            Filter *f = NULL;
            size_t n = gen_filter(text, 0);
            text[n] = 0;
            if (cr_filter_parse(text, &f) != CR_OK) {
                CR_CHECK_MSG(0, "parse '%s': %s", text, cr_error_message());
                continue;
            }
            uint64_t limit = rnd(8) == 0 ? rnd((uint32_t)next + 1) : next + rnd(100);
            uint64_t *bm = NULL, m = 0;
            bad += compare(idx, items, next, f, limit, text);
            if (attrs_eval_pb(idx, f, next, &bm, &m) == CR_OK)
                total_matches += m;
            free(bm);
            evaluated++;
            cirrus__v1__filter__free_unpacked(f, NULL);
        }
        /* churn: delete ~15%, replace some under new ids, re-set a few removed ids */
        for (uint64_t id = 0; id < next; id++) {
            if (!items[id].live || rnd(100) >= 15)
                continue;
            CR_CHECK(shard_attrs_remove(idx, id) == CR_OK);
            items[id].live = false;
            if (rnd(2) && next < CAP) {
                random_item(&items[next]);
                CR_CHECK(set_item(idx, next, &items[next]) == CR_OK);
                next++;
            }
        }
        for (int r = 0; r < 5; r++) {
            uint64_t id = rnd((uint32_t)next);
            if (items[id].live)
                continue;
            item_clear(&items[id]);
            random_item(&items[id]);
            CR_CHECK(set_item(idx, id, &items[id]) == CR_OK);
        }
    }
    printf("random: %zu filters over up to %llu ids, %zu mismatching bits, avg %.0f matches\n",
           evaluated, (unsigned long long)next, bad, (double)total_matches / (double)evaluated);
    CR_CHECK(bad == 0);

    /* Range messages agree with the brute force too */
    for (int q = 0; q < 100; q++) {
        Filter f = CIRRUS__V1__FILTER__INIT;
        Cirrus__V1__Range r = CIRRUS__V1__RANGE__INIT;
        r.attr = rnd(2) ? "price" : "size";
        r.has_lo = rnd(3) != 0;
        r.lo = (double)rnd(4000) / 20.0 - 5;
        r.lo_inclusive = rnd(2);
        r.has_hi = !r.has_lo || rnd(2);
        r.hi = (double)rnd(4000) / 20.0 - 5;
        r.hi_inclusive = rnd(2);
        f.expr_case = CIRRUS__V1__FILTER__EXPR_RANGE;
        f.range = &r;
        CR_CHECK(compare(idx, items, next, &f, next, "range") == 0);
    }

    shard_attrs_free(&idx);
    CR_CHECK(idx == NULL);
    shard_attrs_free(&idx);
    for (uint64_t i = 0; i < CAP; i++)
        item_clear(&items[i]);
    free(items);
}

/* ---- errors, semantics details, deletes -------------------------------------------------- */

static cr_err eval_text(shard_attrs *idx, const char *text, uint64_t limit, uint64_t **bm,
                        uint64_t *m)
{
    Filter *f = NULL;
    cr_err rc = cr_filter_parse(text, &f);
    CR_CHECK_MSG(rc == CR_OK, "parse '%s': %s", text, cr_error_message());
    if (rc)
        return rc;
    rc = attrs_eval_pb(idx, f, limit, bm, m);
    cirrus__v1__filter__free_unpacked(f, NULL);
    return rc;
}

static uint64_t count_of(shard_attrs *idx, const char *text, uint64_t limit)
{
    uint64_t *bm = NULL, m = UINT64_MAX;
    cr_err rc = eval_text(idx, text, limit, &bm, &m);
    CR_CHECK_MSG(rc == CR_OK, "eval '%s': %s", text, cr_error_message());
    free(bm);
    return m;
}

static void expect_error(shard_attrs *idx, const char *text, const char *want)
{
    uint64_t *bm = NULL, m = 0;
    cr_err rc = eval_text(idx, text, 10, &bm, &m);
    CR_CHECK_MSG(rc == CR_ERR_INVALID && bm == NULL, "'%s' should fail", text);
    CR_CHECK_MSG(strstr(cr_error_message(), want) != NULL, "'%s': want '%s' in '%s'", text, want,
                 cr_error_message());
    free(bm);
}

static void test_semantics(void)
{
    shard_attrs *idx = NULL;
    const char *c01[] = {"red", "blue"}, *c2[] = {"red"};
    struct item it[6] = {0};
    uint64_t *bm = NULL, m;

    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    /* 0: big int, 1: double, 2: no attributes, 3: colors red/blue, 4: colors red, 5: empty list */
    it[0].attrs[it[0].n++] = attr_i("big", INT64_C(9007199254740993)); /* 2^53 + 1 */
    it[0].attrs[it[0].n++] = attr_i("price", 10);
    it[0].attrs[it[0].n++] = attr_b("in_stock", true);
    it[1].attrs[it[1].n++] = attr_d("big", 9007199254740992.0);
    it[1].attrs[it[1].n++] = attr_d("price", 10.5);
    it[1].attrs[it[1].n++] = attr_b("in_stock", false);
    it[1].attrs[it[1].n++] = attr_d("nan", NAN);
    it[3].attrs[it[3].n++] = attr_list("colors", c01, 2);
    it[3].attrs[it[3].n++] = attr_s("cat", "dress");
    it[4].attrs[it[4].n++] = attr_list("colors", c2, 1);
    it[4].attrs[it[4].n++] = attr_i("price", INT64_MAX);
    it[5].attrs[it[5].n++] = attr_list("colors", NULL, 0);
    for (uint64_t i = 0; i < 6; i++)
        CR_CHECK(set_item(idx, i, &it[i]) == CR_OK);

    CR_CHECK(count_of(idx, "big > 9007199254740992.0", 6) == 1);
    CR_CHECK(count_of(idx, "big = 9007199254740992", 6) == 1);
    CR_CHECK(count_of(idx, "big >= 9007199254740992", 6) == 2);
    CR_CHECK(count_of(idx, "price = 10.0", 6) == 1);
    CR_CHECK(count_of(idx, "price < 10.5", 6) == 1);
    CR_CHECK(count_of(idx, "price >= 10", 6) == 3);
    CR_CHECK(count_of(idx, "price > 1e300", 6) == 0);
    CR_CHECK(count_of(idx, "price > 9.3e18", 6) == 0);
    CR_CHECK(count_of(idx, "price < 9.3e18", 6) == 3);
    CR_CHECK(count_of(idx, "price = 9223372036854775807", 6) == 1);
    CR_CHECK(count_of(idx, "price != 10", 6) == 2);
    CR_CHECK(count_of(idx, "not price = 10", 6) == 5);
    CR_CHECK(count_of(idx, "colors = \"red\"", 6) == 2);
    CR_CHECK(count_of(idx, "colors != \"blue\"", 6) == 1);
    CR_CHECK(count_of(idx, "colors != \"red\"", 6) == 0);
    CR_CHECK(count_of(idx, "colors in (\"blue\", \"green\")", 6) == 1);
    CR_CHECK(count_of(idx, "not colors = \"red\"", 6) == 4);
    CR_CHECK(count_of(idx, "in_stock = true", 6) == 1);
    CR_CHECK(count_of(idx, "in_stock != true", 6) == 1);
    CR_CHECK(count_of(idx, "not in_stock = true", 6) == 5);
    CR_CHECK(count_of(idx, "nan = 1 or nan != 1 or nan < 1", 6) == 0);
    CR_CHECK(count_of(idx, "cat = \"dress\" and colors = \"blue\"", 6) == 1);
    /* id_limit cuts results, and beyond the known ids nothing matches */
    CR_CHECK(count_of(idx, "not cat = \"x\"", 6) == 6);
    CR_CHECK(count_of(idx, "not cat = \"x\"", 3) == 3);
    CR_CHECK(count_of(idx, "not cat = \"x\"", 1000) == 6);
    CR_CHECK(count_of(idx, "not cat = \"x\"", 0) == 0);

    /* errors */
    expect_error(idx, "xyz = 1", "filter: unknown attribute 'xyz'");
    expect_error(idx, "cat = \"a\" or not (xyz in (1, 2))", "unknown attribute 'xyz'");
    expect_error(idx, "cat < 5", "attribute 'cat' never holds numbers");
    expect_error(idx, "price = \"cheap\"", "attribute 'price' never holds strings");
    expect_error(idx, "cat < \"m\"", "'<' on 'cat' needs a number, not a string");
    expect_error(idx, "in_stock >= true", "needs a number");
    expect_error(idx, "in_stock = 1", "never holds numbers");
    expect_error(idx, "price in (1, \"x\")", "never holds strings");
    CR_CHECK(attrs_eval_pb(idx, NULL, 6, &bm, &m) == CR_ERR_INVALID);
    Filter empty = CIRRUS__V1__FILTER__INIT;
    CR_CHECK(attrs_eval_pb(idx, &empty, 6, &bm, &m) == CR_ERR_INVALID);

    /* set errors: a live id, bad attributes (nothing indexed) */
    CR_CHECK(set_item(idx, 3, &it[3]) == CR_ERR_INVALID);
    Attr *bad = attr_s("", "x");
    CR_CHECK(attrs_set_pb(idx, 10, (const Attr *const *)&bad, 1) == CR_ERR_INVALID);
    cirrus__v1__attribute__free_unpacked(bad, NULL);
    bad = mk_attr("unset");
    CR_CHECK(attrs_set_pb(idx, 10, (const Attr *const *)&bad, 1) == CR_ERR_INVALID);
    cirrus__v1__attribute__free_unpacked(bad, NULL);
    const Attr *nul = NULL;
    CR_CHECK(attrs_set_pb(idx, 10, &nul, 1) == CR_ERR_INVALID);
    CR_CHECK(shard_attrs_count_known(idx) == 6); /* big price in_stock nan colors cat */

    /* deletes */
    CR_CHECK(shard_attrs_remove(idx, 3) == CR_OK);
    CR_CHECK(shard_attrs_remove(idx, 3) == CR_NOTFOUND);
    CR_CHECK(shard_attrs_remove(idx, 99) == CR_NOTFOUND);
    CR_CHECK(count_of(idx, "colors = \"red\"", 6) == 1);
    CR_CHECK(count_of(idx, "cat = \"dress\"", 6) == 0);
    CR_CHECK(count_of(idx, "not cat = \"dress\"", 6) == 5);
    CR_CHECK(count_of(idx, "cat = \"dress\" or not cat = \"dress\"", 6) == 5);
    CR_CHECK(shard_attrs_count_live(idx) == 5);
    /* the attribute stays known after its last item went */
    CR_CHECK(count_of(idx, "cat != \"x\"", 6) == 0);
    /* a removed id set again: the old postings must not come back */
    CR_CHECK(set_item(idx, 3, &it[4]) == CR_OK);
    CR_CHECK(count_of(idx, "colors = \"blue\"", 6) == 0);
    CR_CHECK(count_of(idx, "colors = \"red\"", 6) == 2);
    CR_CHECK(count_of(idx, "cat = \"dress\"", 6) == 0);

    size_t mem = shard_attrs_memory(idx);
    CR_CHECK(mem > 0);
    shard_attrs_free(&idx);
    for (int i = 0; i < 6; i++)
        item_clear(&it[i]);
}

/* Many deletes trigger compaction; results stay right and memory comes back. */
static void test_compaction(void)
{
    shard_attrs *idx = NULL;
    enum { N = 20000 };
    char buf[16];
    size_t mem_full, mem_after;

    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    for (uint64_t id = 0; id < N; id++) {
        snprintf(buf, sizeof buf, "v%llu", (unsigned long long)(id % 10));
        Attr *a[2] = {attr_s("k", buf), attr_i("n", (int64_t)id)};
        CR_CHECK(attrs_set_pb(idx, id, (const Attr *const *)a, 2) == CR_OK);
        cirrus__v1__attribute__free_unpacked(a[0], NULL);
        cirrus__v1__attribute__free_unpacked(a[1], NULL);
    }
    mem_full = shard_attrs_memory(idx);
    for (uint64_t id = 0; id < N; id++)
        if (id % 4)
            CR_CHECK(shard_attrs_remove(idx, id) == CR_OK);
    mem_after = shard_attrs_memory(idx);
    CR_CHECK(count_of(idx, "k = \"v0\"", N) == N / 20);
    CR_CHECK(count_of(idx, "n < 1000", N) == 250);
    CR_CHECK(count_of(idx, "n >= 0", N + 5) == N / 4);
    printf("compaction: memory %zu -> %zu bytes after removing 3/4\n", mem_full, mem_after);
    shard_attrs_free(&idx);
}

/* ---- concurrency: evaluations while the writer sets and removes ------------------------- */

struct reader_arg {
    shard_attrs *idx;
    Filter *f;
    atomic_int *stop;
    int errors;
    int evals;
};

static void *reader(void *p)
{
    struct reader_arg *ra = p;
    while (!atomic_load(ra->stop)) {
        uint64_t *bm = NULL, m;
        if (attrs_eval_pb(ra->idx, ra->f, 50000, &bm, &m) != CR_OK)
            ra->errors++;
        free(bm);
        ra->evals++;
    }
    return NULL;
}

static void test_concurrency(void)
{
    shard_attrs *idx = NULL;
    atomic_int stop = 0;
    pthread_t th[2];
    struct reader_arg ra[2];
    Filter *f = NULL;
    struct item it = {0};

    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    random_item(&it);
    CR_CHECK(set_item(idx, 0, &it) == CR_OK); /* makes `cat` and others known */
    item_clear(&it);
    CR_CHECK(cr_filter_parse("cat = \"dress\" or price < 50 and not in_stock = true", &f) == 0);
    for (int i = 0; i < 2; i++) {
        ra[i] = (struct reader_arg){idx, f, &stop, 0, 0};
        pthread_create(&th[i], NULL, reader, &ra[i]);
    }
    for (uint64_t id = 1; id < 30000; id++) {
        random_item(&it);
        CR_CHECK(set_item(idx, id, &it) == CR_OK);
        item_clear(&it);
        if (id % 3 == 0)
            CR_CHECK(shard_attrs_remove(idx, id - 2) == CR_OK);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("concurrency: %d + %d evaluations during 30000 writes\n", ra[0].evals, ra[1].evals);
    CR_CHECK(ra[0].errors == 0 && ra[1].errors == 0);
    cirrus__v1__filter__free_unpacked(f, NULL);
    shard_attrs_free(&idx);
}

/* ---- 1M items x 5 attributes ------------------------------------------------------------- */

static void test_million(void)
{
    const char *env = getenv("CIRRUS_ATTRS_ITEMS");
    uint64_t n = env ? strtoull(env, NULL, 10) : 1000000;
    static const char *const cats[10] = {"c0", "c1", "c2", "c3", "c4",
                                         "c5", "c6", "c7", "c8", "c9"};
    static const char *const cols[12] = {"red", "blue", "green", "black", "white", "pink",
                                         "grey", "navy", "beige", "brown", "gold", "teal"};
    static const char *const queries[] = {
        "category = \"c3\"",
        "price >= 100 and price < 200",
        "colors in (\"red\", \"navy\")",
        "category in (\"c1\", \"c2\") and in_stock = true and price < 500",
        "not (category = \"c0\" or brand = \"b7\")",
    };
    shard_attrs *idx = NULL;
    char brand[16];
    double t0, t_build;

    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    t0 = now_ms();
    for (uint64_t id = 0; id < n; id++) {
        Attr a[5];
        Val v[5];
        Cirrus__V1__StringList sl = CIRRUS__V1__STRING_LIST__INIT;
        char *cl[2];
        const Attr *ap[5];
        for (int k = 0; k < 5; k++) {
            cirrus__v1__attribute__init(&a[k]);
            cirrus__v1__attr_value__init(&v[k]);
            a[k].value = &v[k];
            ap[k] = &a[k];
        }
        a[0].name = "category";
        v[0].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v[0].s = (char *)cats[rnd(10)];
        a[1].name = "brand";
        snprintf(brand, sizeof brand, "b%u", rnd(1000));
        v[1].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v[1].s = brand;
        a[2].name = "price";
        if (id & 1) {
            v[2].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
            v[2].i = rnd(1000);
        } else {
            v[2].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
            v[2].d = (double)rnd(100000) / 100.0;
        }
        a[3].name = "in_stock";
        v[3].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
        v[3].b = rnd(2);
        a[4].name = "colors";
        cl[0] = (char *)cols[rnd(12)];
        cl[1] = (char *)cols[rnd(12)];
        sl.n_values = 1 + rnd(2);
        sl.values = cl;
        v[4].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
        v[4].strings = &sl;
        if (attrs_set_pb(idx, id, ap, 5) != CR_OK) {
            CR_CHECK_MSG(0, "set %llu: %s", (unsigned long long)id, cr_error_message());
            break;
        }
    }
    t_build = now_ms() - t0;
    printf("million: %llu items x 5 attributes indexed in %.0f ms, ~%.1f MB\n",
           (unsigned long long)n, t_build, (double)shard_attrs_memory(idx) / 1e6);

    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        Filter *f = NULL;
        double best = 1e9;
        uint64_t m = 0;
        CR_CHECK(cr_filter_parse(queries[q], &f) == CR_OK);
        for (int r = 0; r < 5; r++) {
            uint64_t *bm = NULL;
            t0 = now_ms();
            CR_CHECK(attrs_eval_pb(idx, f, n, &bm, &m) == CR_OK);
            double t = now_ms() - t0;
            if (t < best)
                best = t;
            free(bm);
        }
        printf("million: %-66s %7llu matches (%4.1f%%) in %6.2f ms\n", queries[q],
               (unsigned long long)m, 100.0 * (double)m / (double)n, best);
        CR_CHECK_MSG(best <= 200.0, "'%s' took %.1f ms", queries[q], best);
        if (q == 0)
            CR_CHECK(n < 1000 || (m > n / 12 && m < n / 8));
        cirrus__v1__filter__free_unpacked(f, NULL);
    }
    shard_attrs_free(&idx);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_semantics();
    test_random();
    test_compaction();
    test_concurrency();
    test_million();
    return CR_TEST_END();
}
