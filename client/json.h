/* json.h — cirrus results as JSON (jansson), the shapes the CLI's --json and the HTTP API print:
 *   search: {"hits":[{"id","score","attributes"}],"partial":bool,"missing_groups":[...],
 *            "timing":{...}}
 *   item:   {"id","version","attributes","vector"?} */
#ifndef CIRRUS_JSON_H
#define CIRRUS_JSON_H

#include <jansson.h>

#include "cirrus.pb-c.h"

/* New references; the caller owns them. */
json_t *cirrus_result_json(const Cirrus__V1__SearchResult *r);
json_t *cirrus_item_json(const Cirrus__V1__Item *it);

#endif
