/* filter_parse.h — the text form of a search filter, to and from a cirrus.v1.Filter tree.
 *
 *     Cirrus__V1__Filter *f = NULL;
 *     rc = cr_filter_parse("category = \"dress\" and price < 50", &f);
 *     if (rc < 0) fprintf(stderr, "%s\n", cr_error_message());
 *     ...
 *     cirrus__v1__filter__free_unpacked(f, NULL);
 *
 * Grammar (keywords case-insensitive):
 *     expr       := or
 *     or         := and ("or" and)*
 *     and        := unary ("and" unary)*
 *     unary      := "not" unary | "(" expr ")" | comparison
 *     comparison := IDENT op value | IDENT "in" "(" value ("," value)* ")"
 *     op         := = | != | < | <= | > | >=
 *     value      := "string" | integer | decimal | true | false
 *     IDENT      := [A-Za-z_][A-Za-z0-9_.]*
 * Strings are double-quoted, UTF-8, with the escapes \" \\ \n \t \r \uXXXX (surrogate pairs
 * allowed, \u0000 not). Integers are int64 (out of range is an error); a number with a '.' or
 * an exponent is a double. A leading '-' belongs to the number.
 *
 * Tree shape: `a and b and c` is one and_expr with three items (same for or); a single operand
 * is not wrapped; `not` is a not_expr; comparisons are Compare, `in` lists are InSet. The
 * parser never produces Range, but validate/format/the evaluator accept it.
 *
 * All functions are reentrant and thread-safe (errors go to the calling thread's message).
 */
#ifndef CR_FILTER_PARSE_H
#define CR_FILTER_PARSE_H

#include <stddef.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

#define CR_FILTER_MAX_TEXT (64 * 1024) /* bytes of filter text */
#define CR_FILTER_MAX_DEPTH 64         /* levels of Filter nesting (a leaf is depth 1) */
#define CR_FILTER_MAX_NODES 4096       /* Filter messages in one tree */
#define CR_FILTER_MAX_ATTR 256         /* bytes of an attribute name */

/* Parses `text` (NUL-terminated, at most CR_FILTER_MAX_TEXT bytes) into a new tree.
 * On success writes *out, owned by the caller and freed with
 * cirrus__v1__filter__free_unpacked(*out, NULL); the tree passes cr_filter_validate().
 * Errors: CR_ERR_INVALID for syntax errors and limits, with a message such as
 *   "filter: expected a value at column 12: category = and x = 1\n<spaces>^";
 * CR_ERR_NOMEM. *out is untouched on failure. */
cr_err cr_filter_parse(const char *text, Cirrus__V1__Filter **out);

/* Writes the text form of `f` into buf (len bytes, always NUL-terminated when len > 0).
 * For a tree that cr_filter_parse() produced, parsing the text gives an equal tree.
 * Range nodes print as comparisons (`attr >= 1 and attr < 5`, in parentheses when both bounds).
 * Returns CR_OK; CR_ERR_INVALID when buf is too small (text truncated) or the tree is malformed
 * (the malformed parts print as `<...>` placeholders, so the text is still useful in a log). */
cr_err cr_filter_format(const Cirrus__V1__Filter *f, char *buf, size_t len);

/* Checks a tree received from a peer before anything evaluates it: every oneof set and its
 * pointer non-NULL, depth <= CR_FILTER_MAX_DEPTH, nodes <= CR_FILTER_MAX_NODES, attribute names
 * non-empty and <= CR_FILTER_MAX_ATTR bytes, compare ops in range, values set (not NaN, not a
 * string list), in-sets and and/or lists non-empty, ranges with at least one non-NaN bound.
 * Returns CR_OK or CR_ERR_INVALID with a message naming the problem. */
cr_err cr_filter_validate(const Cirrus__V1__Filter *f);

#endif
