/* repair.h — replica repair: anti-entropy between the replicas of a shard group, by version
 * (repair.c holds the rule for when a replica may serve reads, and why). Bulk background
 * work, on a thread of its own.
 *
 * Its interface with the event loop, all thread-safe:
 *   loop -> repair   coord_repair_enqueue()   the loop's replica-up hook (must not block)
 *                    coord_repair_note_miss() the write path, before it acknowledges
 *   repair -> loop   coord_loop_map(), coord_loop_replica_state(), coord_loop_repair_begin()
 *                    and coord_loop_repair_end() (the replicas' freshness, backend.h)
 *                    coord_caller_call(): "call this replica with this Request and wait, at
 *                    most this long" — run by the loop on its own connections, so repair's
 *                    writes are ordered with the client writes the loop sends (a barrier
 *                    write lets late ones land), and a replica the loop knows is down fails
 *                    at once.
 */
#ifndef COORD_REPAIR_H
#define COORD_REPAIR_H

#include <stdint.h>

#include "coordinator/handlers.h"

/* Starts the repair thread of app (app->loop must exist). */
cr_err coord_repair_start(coord_app *app, coord_repair **out);
/* Queues the replicas of `group` that need work (a coord_up_fn; ctx is the coord_repair). */
void coord_repair_enqueue(void *ctx, int group, int replica);
/* The write path, before it replies: replica (group, replica) at `ep` (as the caller's map
 * names it) did not durably apply a write whose lowest version is min_version; `acked`: the
 * write is acknowledged without it. See coord_loop_replica_missed. NULL-safe. */
void coord_repair_note_miss(coord_repair *rp, int group, int replica, const char *ep,
                            uint64_t min_version, int acked);
/* Stops and joins the thread (bounded: every call has a timeout and returns at once when the
 * loop has stopped). */
void coord_repair_stop(coord_repair **pp);

#endif
