/* rebalance_net.h — how `cirrus rebalance` talks to a live cluster: scans a shard group (the
 * repair Scan, from one live replica), writes items with their versions to every replica of
 * a group, deletes by version, and has coordinators activate a map (the Reload op).
 *
 *   offline_rebal_net *n;  offline_rebal_net_open(&n, timeout_ms);
 *   offline_rebal_scan(n, map, g, cursor, 512, 0, &resp);  ... resp->scan ...
 *   offline_rebal_put(n, map, to, items, n_items);
 *   offline_rebal_net_close(&n);
 *
 * One connection per endpoint, opened on first use. Single-threaded.
 */
#ifndef OFFLINE_REBALANCE_NET_H
#define OFFLINE_REBALANCE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "coordinator/clustermap.h"

typedef struct offline_rebal_net offline_rebal_net;

cr_err offline_rebal_net_open(offline_rebal_net **out, uint32_t timeout_ms);
void offline_rebal_net_close(offline_rebal_net **pp);

/* One page of group g's items (SCAN_BY_EXTERNAL_ID from `cursor`; "" = the start), with
 * vectors and attributes unless keys_only, from the first replica that answers. On CR_OK
 * *resp holds a ScanResult (free it with cirrus_response_free). */
cr_err offline_rebal_scan(offline_rebal_net *n, const coord_map *m, int g, const char *cursor,
                          uint32_t limit, int keys_only, Cirrus__V1__Response **resp);

/* Live items of group g (Stats of its first replica that answers). */
cr_err offline_rebal_count(offline_rebal_net *n, const coord_map *m, int g, uint64_t *items);

/* Upserts items (borrowed; their versions kept) to EVERY replica of group g: CR_OK when each
 * replica made each one durable or held a newer version already. */
cr_err offline_rebal_put(offline_rebal_net *n, const coord_map *m, int g,
                         Cirrus__V1__Item *const *items, size_t n_items);

/* Deletes items at their versions from every replica of group g: a replica holding a newer
 * version of an item keeps it (CR_STALE), one without it records the tombstone. */
cr_err offline_rebal_del(offline_rebal_net *n, const coord_map *m, int g,
                         Cirrus__V1__DeleteItem *const *items, size_t n_items);

/* Sends the map to every coordinator, then waits (at most wait_ms) until each has applied it
 * and finished every request that arrived under an earlier map. */
cr_err offline_rebal_reload(offline_rebal_net *n, const char *const *coordinators, size_t nc,
                            const char *map_json, uint32_t wait_ms);

#endif
