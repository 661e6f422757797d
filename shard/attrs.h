/* attrs.h — the shard's in-memory attribute index: typed item attributes -> filter bitmaps.
 *
 *     shard_attrs *idx = NULL;
 *     rc = shard_attrs_new(&idx);
 *     rc = shard_attrs_set(idx, id, item->attrs, item->n_attrs);  // writer thread
 *     rc = shard_attrs_eval(idx, filter, next_id, &bits, &n);     // any search thread
 *     ... bit (bits[id / 64] >> (id % 64)) & 1 says whether item `id` matches ...
 *     free(bits);
 *     shard_attrs_free(&idx);
 *
 * Items are known by dense internal ids (uint64, allocated by the store). Per attribute name the
 * index keeps: string value -> id list (hash map), numeric values (int64 and double together,
 * compared exactly) in a value-sorted array for range search, bool true/false bitmaps, and a
 * presence bitmap per type. Removed ids are masked by a live bitmap and purged in an amortized
 * compaction.
 *
 * Filter semantics (shard_filter, compiled from cirrus.proto's Filter by shard/convert.c:
 * Compare / InSet / Range / and / or / not):
 *  - A comparison is typed: a string value compares with the item's string values (single or
 *    multi-valued), a number (int64 or double, mixed freely) with its numeric values, a bool with
 *    its bool values. Multi-valued: `=` and `in` match if ANY value matches.
 *  - `!=` means "has a value of that type and none equals"; an item lacking the attribute never
 *    matches a comparison, so `not (a = x)` matches it.
 *  - `< <= > >=` and Range need numbers; on strings/bools they are an error.
 *  - Errors (CR_ERR_INVALID): an attribute name the index has never seen
 *    ("filter: unknown attribute 'xyz'"); comparing with a type the attribute has never held
 *    ("filter: attribute 'price' never holds strings"). When the type was ever held, items that
 *    hold another type simply do not match.
 *  - NaN attribute values are not indexed (they match nothing but still make the type known).
 *
 * Thread rules: any number of shard_attrs_eval / _count_known / _memory calls run concurrently;
 * shard_attrs_set / _remove take an internal write lock (one writer at a time is expected).
 */
#ifndef SHARD_ATTRS_H
#define SHARD_ATTRS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shard/types.h"

typedef struct shard_attrs shard_attrs;

/* Creates an empty index. *out is written only on success. Errors: CR_ERR_NOMEM. */
cr_err shard_attrs_new(shard_attrs **out);

/* Frees the index and sets *pp = NULL. NULL-safe. No other call may be running. */
void shard_attrs_free(shard_attrs **pp);

/* Indexes the attributes of item `id` (borrowed; the index copies what it keeps). The item
 * becomes live. Duplicate names on one item are all indexed (any-value semantics).
 * An id that is live already is CR_ERR_INVALID (remove it first); a removed id may be set again.
 * Errors: CR_ERR_INVALID (NULL attribute, empty name, value unset; nothing is indexed),
 * CR_ERR_NOMEM (the item stays not live). Takes the write lock. */
cr_err shard_attrs_set(shard_attrs *idx, uint64_t id, const shard_attr *attrs, size_t n);

/* Marks item `id` deleted: it matches no filter from now on. Returns CR_OK, or CR_NOTFOUND when
 * `id` is not live. Takes the write lock; may compact (O(index size), amortized O(1)). */
cr_err shard_attrs_remove(shard_attrs *idx, uint64_t id);

/* Evaluates filter `f` over the live items with ids in [0, id_limit). On success *bitmap_out is a
 * new malloc'd array of (id_limit + 63) / 64 words (at least one word; free() it), bit i set when
 * item i matches, bits >= id_limit clear; *matches (may be NULL) gets the number of bits set.
 * The filter is a compiled tree (shard_conv_filter_compile checked the wire form); a
 * malformed one (no operator, an empty and/or list) is still an error, never a crash.
 * Errors: CR_ERR_INVALID (malformed filter, unknown attribute, type never held, ordering on a
 * non-number), CR_ERR_NOMEM. Outputs untouched on failure. Takes the read lock. */
cr_err shard_attrs_eval(shard_attrs *idx, const shard_filter *f, uint64_t id_limit,
                        uint64_t **bitmap_out, uint64_t *matches);

/* Number of distinct attribute names ever indexed. */
size_t shard_attrs_count_known(shard_attrs *idx);

/* Number of live items. */
uint64_t shard_attrs_count_live(shard_attrs *idx);

/* Estimated heap bytes held by the index (capacities, not just sizes). */
size_t shard_attrs_memory(shard_attrs *idx);

#endif
