/* schema.h — what a shard's live items hold, per attribute name (GET /v1/schema, through the
 * Schema op): types, item counts, the most frequent string values, numeric ranges. Computed
 * from the attribute index (shard/attrs.h), never from the store.
 *
 *     shard_schema sc;
 *     rc = shard_engine_schema(e, 100, &sc);   // any thread
 *     ... sc.attrs[i].name, .values, .min/.max ...
 *     shard_schema_clear(&sc);
 */
#ifndef SHARD_SCHEMA_H
#define SHARD_SCHEMA_H

#include <stddef.h>

#include "common/err.h"
#include "shard/attrs.h"
#include "shard/engine.h"
#include "shard/types.h"

#define SHARD_SCHEMA_VALUES_DEFAULT 100 /* string values per attribute when 0 is asked */
#define SHARD_SCHEMA_VALUES_MAX 1000

/* The engine's attribute index (owned by the engine: valid until close). */
shard_attrs *shard_engine_attrs(shard_engine *e);

/* Fills *out (free with shard_schema_clear) with at most max_values string values per
 * attribute (0: SHARD_SCHEMA_VALUES_DEFAULT; larger than SHARD_SCHEMA_VALUES_MAX: that).
 * Attributes that only removed items held are left out. Any thread. CR_ERR_NOMEM. */
cr_err shard_engine_schema(shard_engine *e, size_t max_values, shard_schema *out);

#endif
