/* json.h — cirrus results as JSON (jansson), the shapes the CLI's --json and the HTTP API print:
 *   search: {"hits":[{"id","score","attributes"}],"partial":bool,"missing_groups":[...],
 *            "timing":{...}}
 *   item:   {"id","version","attributes","vector"?}
 *   stats:  {"role","count","dim","metric","index",...,"groups"?} */
#ifndef CIRRUS_JSON_H
#define CIRRUS_JSON_H

#include <stdint.h>

#include <jansson.h>

#include "cirrus.pb-c.h"

/* New references; the caller owns them. */
json_t *cirrus_result_json(const Cirrus__V1__SearchResult *r);
json_t *cirrus_item_json(const Cirrus__V1__Item *it);
/* {"role","count","dim","metric","index",...,"encoder"?,"groups"?} (the CLI's `stats`). */
json_t *cirrus_stats_json(const Cirrus__V1__StatsResult *s);

/* An unsigned 64-bit number (item versions). jansson's integers are signed, so a value above
 * INT64_MAX becomes a marked string that cirrus_json_dumps() prints as a bare unsigned number
 * (json_dumps() prints it as a string, never as a negative number). New reference. */
json_t *cirrus_json_u64(uint64_t v);
/* json_dumps() that prints cirrus_json_u64() values as unsigned numbers. Free with free(). */
char *cirrus_json_dumps(const json_t *j, size_t flags);

#endif
