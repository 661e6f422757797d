/* repair.h — replica repair: when a shard replica comes back after being down, copy into it
 * everything a live peer of its group holds (items with their versions, and tombstones). It
 * is bulk background work, so it runs on a thread of its own with its OWN connections to the
 * shards (libcirrus clients), not through the event loop.
 *
 * Its interface to the loop is small and thread-safe:
 *   - the loop calls coord_repair_enqueue() (its replica-up hook) when a replica returns;
 *   - the repair thread reads the map and the replicas' liveness with coord_loop_map() and
 *     coord_loop_replica_live(), and says a replica is repaired with coord_loop_repair_done()
 *     (until then the loop sends it writes but no reads);
 *   - coord_repair_call() is the one way repair talks to a shard: "call this replica with
 *     this Request and wait, at most this long".
 */
#ifndef COORD_REPAIR_H
#define COORD_REPAIR_H

#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "coordinator/loop.h"

typedef struct coord_repair coord_repair;

/* Starts the repair thread for the replicas of `loop`'s map. */
cr_err coord_repair_start(coord_loop *loop, coord_repair **out);
/* Queues (group, replica) for repair (a coord_up_fn; any thread, never blocks long). */
void coord_repair_enqueue(void *ctx, int group, int replica);
/* Stops and joins the thread (a repair in progress is abandoned; it is safe to repeat). */
void coord_repair_stop(coord_repair **pp);

/* Sends req to replica (group, replica) of the current map and waits up to timeout_ms.
 * CR_OK: *resp is an answer with a non-error status (free it with cirrus_response_free).
 * Errors: CR_ERR_INVALID (no such replica), CR_TIMEOUT, CR_ERR_NET, or the shard's error
 * as CR_ERR_UNAVAILABLE with its message. Repair thread only. */
cr_err coord_repair_call(coord_repair *rp, int group, int replica, Cirrus__V1__Request *req,
                         uint32_t timeout_ms, Cirrus__V1__Response **resp);

#endif
