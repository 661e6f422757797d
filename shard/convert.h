/* convert.h — the shard server's translator between the wire (cirrus.proto) and the engine's
 * own types (shard/types.h). shard/server.c is its one user in the shard (tests use it to
 * build engine values from protobuf ones); nothing below the server sees protobuf.
 *
 * Inbound conversions BORROW: the shard values point into the protobuf message (strings,
 * vectors), which must outlive them; only the arrays are allocated. Outbound conversions
 * COPY: each wire message is one malloc'd block holding everything it points to (free() it
 * after packing), so the engine value can be freed at once.
 */
#ifndef SHARD_CONVERT_H
#define SHARD_CONVERT_H

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "shard/types.h"

/* n wire attributes -> *out, a malloc'd array of n views (free it). A NULL attribute, name or
 * value maps to what shard_attr_check rejects (the engine says why). CR_ERR_NOMEM. */
cr_err shard_conv_attrs_from_pb(Cirrus__V1__Attribute *const *pb, size_t n, shard_attr **out);

/* A wire item -> *out (id, vector, version, attributes); *attrs_mem gets the array to free
 * after the write (NULL when none). A missing vector maps to vector NULL, dim 0. */
cr_err shard_conv_item_from_pb(const Cirrus__V1__Item *pb, shard_item *out,
                               shard_attr **attrs_mem);

/* Checks a wire filter (cr_filter_validate: CR_ERR_INVALID saying why) and compiles it into a
 * tree (free with shard_filter_free). NULL compiles to NULL (no filter). */
cr_err shard_conv_filter_compile(const Cirrus__V1__Filter *pb, shard_filter **out);
void shard_filter_free(shard_filter **pp);

/* Engine values -> wire messages, each ONE malloc'd block (a copy: free() it). NULL when
 * out of memory. */
Cirrus__V1__Hit *shard_conv_hit_to_pb(const shard_hit *h);
Cirrus__V1__Item *shard_conv_item_to_pb(const shard_item *it);

/* Fills the shard fields of a Stats / Snapshot result (strings borrowed from the engine). */
void shard_conv_stats_to_pb(const shard_stats *s, Cirrus__V1__StatsResult *out);
void shard_conv_snapshot_to_pb(const shard_snapshot_info *s, Cirrus__V1__SnapshotResult *out);

/* A scan page -> out->items / out->deleted / out->done (copies; free with
 * shard_conv_scan_clear; the page stays the caller's). CR_ERR_NOMEM. */
cr_err shard_conv_scan_to_pb(const shard_scan_page *p, Cirrus__V1__ScanResult *out);
void shard_conv_scan_clear(Cirrus__V1__ScanResult *out);

#endif
