/* filter_validate.c — checks of a Filter tree from a peer before anything evaluates it
 * (cr_filter_validate, filter_parse.h): shape, depth and size limits, value types. */
#include "shard/filter_parse.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Validation */

static cr_err check_attr(const char *a, const char *what)
{
    size_t n;
    if (!a || !*a)
        return cr_error_set(CR_ERR_INVALID, "filter: %s with an empty attribute name", what);
    n = strnlen(a, CR_FILTER_MAX_ATTR + 1);
    if (n > CR_FILTER_MAX_ATTR)
        return cr_error_set(CR_ERR_INVALID, "filter: attribute name longer than %d bytes",
                            CR_FILTER_MAX_ATTR);
    return CR_OK;
}

static cr_err check_value(const Cirrus__V1__AttrValue *v, const char *attr)
{
    if (!v)
        return cr_error_set(CR_ERR_INVALID, "filter: comparison on '%s' has no value", attr);
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S:
        if (!v->s)
            return cr_error_set(CR_ERR_INVALID, "filter: NULL string value on '%s'", attr);
        return CR_OK;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I:
    case CIRRUS__V1__ATTR_VALUE__VALUE_B: return CR_OK;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D:
        if (isnan(v->d))
            return cr_error_set(CR_ERR_INVALID, "filter: NaN value on '%s'", attr);
        return CR_OK;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        return cr_error_set(CR_ERR_INVALID,
                            "filter: a string list is not a comparison value on '%s' (use 'in')",
                            attr);
    default:
        return cr_error_set(CR_ERR_INVALID, "filter: comparison on '%s' has no value", attr);
    }
}

static cr_err validate_node(const Cirrus__V1__Filter *f, int depth, int *nodes)
{
    const Cirrus__V1__FilterList *list;
    cr_err rc;

    if (!f)
        return cr_error_set(CR_ERR_INVALID, "filter: missing expression");
    if (depth > CR_FILTER_MAX_DEPTH)
        return cr_error_set(CR_ERR_INVALID, "filter: deeper than %d levels", CR_FILTER_MAX_DEPTH);
    if (++*nodes > CR_FILTER_MAX_NODES)
        return cr_error_set(CR_ERR_INVALID, "filter: more than %d nodes", CR_FILTER_MAX_NODES);
    switch (f->expr_case) {
    case CIRRUS__V1__FILTER__EXPR_CMP:
        if (!f->cmp)
            break;
        rc = check_attr(f->cmp->attr, "comparison");
        if (rc)
            return rc;
        if ((unsigned)f->cmp->op > CIRRUS__V1__COMPARE_OP__CMP_GE)
            return cr_error_set(CR_ERR_INVALID, "filter: unknown compare op %d on '%s'",
                                (int)f->cmp->op, f->cmp->attr);
        return check_value(f->cmp->value, f->cmp->attr);
    case CIRRUS__V1__FILTER__EXPR_IN:
        if (!f->in)
            break;
        rc = check_attr(f->in->attr, "'in'");
        if (rc)
            return rc;
        if (f->in->n_values == 0 || !f->in->values)
            return cr_error_set(CR_ERR_INVALID, "filter: empty 'in' set on '%s'", f->in->attr);
        for (size_t i = 0; i < f->in->n_values; i++) {
            rc = check_value(f->in->values[i], f->in->attr);
            if (rc)
                return rc;
        }
        return CR_OK;
    case CIRRUS__V1__FILTER__EXPR_RANGE:
        if (!f->range)
            break;
        rc = check_attr(f->range->attr, "range");
        if (rc)
            return rc;
        if (!f->range->has_lo && !f->range->has_hi)
            return cr_error_set(CR_ERR_INVALID, "filter: range on '%s' has no bound",
                                f->range->attr);
        if ((f->range->has_lo && isnan(f->range->lo)) || (f->range->has_hi && isnan(f->range->hi)))
            return cr_error_set(CR_ERR_INVALID, "filter: NaN bound in range on '%s'",
                                f->range->attr);
        return CR_OK;
    case CIRRUS__V1__FILTER__EXPR_AND_EXPR:
    case CIRRUS__V1__FILTER__EXPR_OR_EXPR:
        list = f->expr_case == CIRRUS__V1__FILTER__EXPR_OR_EXPR ? f->or_expr : f->and_expr;
        if (!list)
            break;
        if (list->n_items == 0 || !list->items)
            return cr_error_set(CR_ERR_INVALID, "filter: empty '%s' list",
                                f->expr_case == CIRRUS__V1__FILTER__EXPR_OR_EXPR ? "or" : "and");
        for (size_t i = 0; i < list->n_items; i++) {
            rc = validate_node(list->items[i], depth + 1, nodes);
            if (rc)
                return rc;
        }
        return CR_OK;
    case CIRRUS__V1__FILTER__EXPR_NOT_EXPR:
        if (!f->not_expr)
            break;
        return validate_node(f->not_expr, depth + 1, nodes);
    default:
        return cr_error_set(CR_ERR_INVALID, "filter: expression with no operator set");
    }
    return cr_error_set(CR_ERR_INVALID, "filter: expression with a NULL operand");
}

cr_err cr_filter_validate(const Cirrus__V1__Filter *f)
{
    int nodes = 0;
    return validate_node(f, 1, &nodes);
}
