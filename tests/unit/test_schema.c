/* test_schema.c — shard_attrs_schema / shard_engine_schema: per attribute the types, live item
 * counts, the most frequent string values (bounded, ordered), numeric ranges (int and double
 * mixed, exact), bool counts; removed and replaced items no longer count; an engine reopened
 * from its store describes the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/test.h"
#include "shard/attrs.h"
#include "shard/engine.h"
#include "shard/schema.h"

static const shard_schema_attr *find(const shard_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->attrs[i].name, name) == 0)
            return &s->attrs[i];
    return NULL;
}

static uint64_t count_of(const shard_schema_attr *a, const char *value)
{
    for (size_t i = 0; a && i < a->n_values; i++)
        if (strcmp(a->values[i].value, value) == 0)
            return a->values[i].count;
    return 0;
}

static const char *colors[] = {"red", "blue", "green", "black", "white"};

/* Item i: color colors[i % 5] (red most frequent: i % 5 == 0 plus every i % 7 == 0 as a second
 * value), price i + 0.5 for odd i and the int i for even i, in_stock i % 3 == 0, and a "tag"
 * list with a duplicate value (counted once per item). */
static cr_err set_item(shard_attrs *idx, uint64_t i)
{
    const char *multi[3] = {colors[i % 5], "red", "red"};
    const char *tags[2] = {"t", "t"};
    shard_attr a[4];
    memset(a, 0, sizeof a);
    a[0].name = "color";
    a[0].value.type = SHARD_VALUE_STRINGS;
    a[0].value.u.strings.v = multi;
    a[0].value.u.strings.n = i % 7 == 0 ? 3 : 1;
    a[1].name = "price";
    if (i % 2) {
        a[1].value.type = SHARD_VALUE_DOUBLE;
        a[1].value.u.d = (double)i + 0.5;
    } else {
        a[1].value.type = SHARD_VALUE_INT;
        a[1].value.u.i = (int64_t)i;
    }
    a[2].name = "in_stock";
    a[2].value.type = SHARD_VALUE_BOOL;
    a[2].value.u.b = i % 3 == 0;
    a[3].name = "tag";
    a[3].value.type = SHARD_VALUE_STRINGS;
    a[3].value.u.strings.v = tags;
    a[3].value.u.strings.n = 2;
    return shard_attrs_set(idx, i, a, 4);
}

static void test_index(void)
{
    shard_attrs *idx = NULL;
    shard_schema s;
    const shard_schema_attr *c, *p, *b, *t;
    uint64_t red = 0;
    CR_CHECK(shard_attrs_new(&idx) == CR_OK);
    CR_CHECK(shard_attrs_schema(idx, 10, &s) == CR_OK && s.n == 0 && s.items == 0);
    shard_schema_clear(&s);
    for (uint64_t i = 0; i < 100; i++)
        CR_CHECK(set_item(idx, i) == CR_OK);
    for (uint64_t i = 0; i < 100; i++)
        red += i % 5 == 0 || i % 7 == 0;
    CR_CHECK(shard_attrs_schema(idx, 3, &s) == CR_OK);
    CR_CHECK(s.items == 100 && s.n == 4);
    CR_CHECK(s.n == 4 && strcmp(s.attrs[0].name, "color") == 0 &&
             strcmp(s.attrs[1].name, "in_stock") == 0 && strcmp(s.attrs[3].name, "tag") == 0);
    c = find(&s, "color");
    CR_CHECK(c && c->has_strings && !c->has_numbers && !c->has_bools && c->items == 100);
    CR_CHECK(c && c->distinct == 5 && c->n_values == 3); /* bounded to the 3 most frequent */
    CR_CHECK_MSG(c && strcmp(c->values[0].value, "red") == 0 && c->values[0].count == red,
                 "first %s %llu, want red %llu", c ? c->values[0].value : "-",
                 c ? (unsigned long long)c->values[0].count : 0ULL, (unsigned long long)red);
    /* the other four have 20 each: ties by value, bytewise */
    CR_CHECK(c && strcmp(c->values[1].value, "black") == 0 && c->values[1].count == 20);
    CR_CHECK(c && strcmp(c->values[2].value, "blue") == 0);
    p = find(&s, "price");
    CR_CHECK(p && p->has_numbers && p->has_range && !p->integer);
    CR_CHECK(p && p->min == 0.0 && p->max == 99.5);
    b = find(&s, "in_stock");
    CR_CHECK(b && b->has_bools && b->n_true == 34 && b->n_false == 66 && !b->has_range);
    t = find(&s, "tag");
    CR_CHECK(t && count_of(t, "t") == 100 && t->distinct == 1);
    shard_schema_clear(&s);
    CR_CHECK(s.attrs == NULL && s.n == 0);

    /* removing the odd items leaves integers only; replacing item 0 moves its values */
    for (uint64_t i = 1; i < 100; i += 2)
        CR_CHECK(shard_attrs_remove(idx, i) == CR_OK);
    CR_CHECK(shard_attrs_remove(idx, 0) == CR_OK);
    {
        shard_attr a = {"price", {.type = SHARD_VALUE_INT, .u.i = -7}};
        CR_CHECK(shard_attrs_set(idx, 0, &a, 1) == CR_OK);
    }
    CR_CHECK(shard_attrs_schema(idx, 100, &s) == CR_OK);
    CR_CHECK(s.items == 50);
    p = find(&s, "price");
    CR_CHECK(p && p->has_range && p->integer && p->min == -7.0 && p->max == 98.0);
    c = find(&s, "color");
    CR_CHECK(c && c->items == 49 && c->n_values == 5);
    b = find(&s, "in_stock");
    CR_CHECK(b && b->n_true + b->n_false == 49);
    shard_schema_clear(&s);

    /* an attribute only removed items held is left out */
    {
        shard_attr a = {"rare", {.type = SHARD_VALUE_STRING, .u.s = "x"}};
        CR_CHECK(shard_attrs_set(idx, 200, &a, 1) == CR_OK);
        CR_CHECK(shard_attrs_schema(idx, 100, &s) == CR_OK && find(&s, "rare"));
        shard_schema_clear(&s);
        CR_CHECK(shard_attrs_remove(idx, 200) == CR_OK);
        CR_CHECK(shard_attrs_schema(idx, 100, &s) == CR_OK && !find(&s, "rare"));
        shard_schema_clear(&s);
    }
    shard_attrs_free(&idx);
}

/* Through the engine: the same description before and after a reopen (rebuilt from LMDB). */
static void test_engine(void)
{
    char dir[] = "/tmp/cirrus-test-schema-XXXXXX", cmd[128];
    shard_engine_opts o = shard_engine_default_opts();
    shard_engine *e = NULL;
    shard_schema s;
    float v[4] = {1, 0, 0, 0};
    shard_item items[10];
    shard_attr at[10][2];
    shard_engine_write_op ops[10];
    shard_engine_write_result res[10];
    char ids[10][16];
    if (!mkdtemp(dir)) {
        CR_CHECK(0);
        return;
    }
    o.create = 1;
    o.dim = 4;
    o.factory = "Flat";
    CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
    if (!e)
        return;
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof ids[i], "sku-%d", i);
        at[i][0] = (shard_attr){"category", {.type = SHARD_VALUE_STRING,
                                             .u.s = i < 7 ? "dress" : "shirt"}};
        at[i][1] = (shard_attr){"price", {.type = SHARD_VALUE_DOUBLE, .u.d = 10.0 + i}};
        items[i] = (shard_item){ids[i], v, 4, at[i], 2, 0, NULL, 0};
        ops[i] = (shard_engine_write_op){0, &items[i]};
    }
    CR_CHECK(shard_engine_write(e, ops, 10, res) == CR_OK);
    for (int pass = 0; pass < 2; pass++) {
        const shard_schema_attr *c, *p;
        CR_CHECK(shard_engine_schema(e, 0, &s) == CR_OK);
        c = find(&s, "category");
        p = find(&s, "price");
        CR_CHECK_MSG(s.items == 10 && c && count_of(c, "dress") == 7 &&
                     count_of(c, "shirt") == 3, "pass %d", pass);
        CR_CHECK_MSG(p && p->min == 10.0 && p->max == 19.0, "pass %d", pass);
        shard_schema_clear(&s);
        shard_engine_close(&e);
        CR_CHECK(shard_engine_open(&e, dir, &o) == CR_OK);
        if (!e)
            break;
    }
    shard_engine_close(&e);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_index();
    test_engine();
    return CR_TEST_END();
}
