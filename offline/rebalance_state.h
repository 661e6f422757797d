/* rebalance_state.h — the progress of a move, kept in a JSON file beside the new map so that
 * a rerun of the same `cirrus rebalance` after a crash continues where it stopped.
 *
 * The file is rewritten atomically (offline_json_save) as pages of items are done (at most
 * once a second, and at each group's end), and holds
 * both maps' texts: --map is rewritten during the move with the map the coordinators run, so
 * the old map is read back from here on a resume. Redoing the page after the last save is
 * harmless: copies carry their versions (a second copy is stale) and deletes are by version.
 */
#ifndef OFFLINE_REBALANCE_STATE_H
#define OFFLINE_REBALANCE_STATE_H

#include <stdint.h>

#include "common/err.h"

typedef enum offline_rebal_phase {
    OFFLINE_REBAL_COPY = 0,   /* writes to both owners, reads old: copy moving items */
    OFFLINE_REBAL_SWITCH = 1, /* writes to both owners, reads new: delete the old copies */
    OFFLINE_REBAL_FINAL = 2,  /* the new map alone: delete copies re-made by SWITCH's writes */
    OFFLINE_REBAL_DONE = 3,
} offline_rebal_phase;

typedef struct offline_rebal_state {
    offline_rebal_phase phase;
    int group;         /* the old group being scanned in this phase */
    char *cursor;      /* scan cursor in it ("" = its start); malloc'd */
    int activated;     /* the phase's map was accepted by every coordinator */
    uint64_t scanned;  /* totals over every run: items read, */
    uint64_t copied;   /* copied to their new group, */
    uint64_t deleted;  /* deleted from their old group */
    double seconds[3]; /* time spent per phase, over every run */
    char *old_json, *new_json; /* the two maps' texts; malloc'd */
} offline_rebal_state;

/* CR_NOTFOUND when there is no file (*st zeroed), CR_ERR_INVALID when it is not a state. */
cr_err offline_rebal_state_load(const char *path, offline_rebal_state *st);
cr_err offline_rebal_state_save(const char *path, const offline_rebal_state *st);
/* Replaces st->cursor with a copy of `cursor`. */
cr_err offline_rebal_state_cursor(offline_rebal_state *st, const char *cursor);
void offline_rebal_state_free(offline_rebal_state *st);

const char *offline_rebal_phase_name(offline_rebal_phase p);

#endif
