/* rebalance_impl.h — shared by rebalance.c (the steps) and rebalance_pass.c (one scan of the
 * old groups); private to offline/rebalance*.c. */
#ifndef OFFLINE_REBALANCE_IMPL_H
#define OFFLINE_REBALANCE_IMPL_H

#include "offline/rebalance.h"
#include "offline/rebalance_net.h"
#include "offline/rebalance_plan.h"
#include "offline/rebalance_state.h"

typedef struct rebal_run {
    const offline_rebal_opts *o;
    const offline_rebal_events *ev;
    offline_rebal_summary *sum;
    char state_path[4200];
    offline_rebal_state st;
    offline_rebal_plan plan;
    coord_map *old_map, *new_map; /* parsed from st.old_json / st.new_json */
    offline_rebal_net *net;
    offline_rebal_report rep;     /* the stage running */
    uint64_t t0_us, scanned_t0;   /* for the rate limit */
    uint64_t saved_us;            /* the state file's last save */
} rebal_run;

/* Scans every old group from the state's group and cursor for the state's phase: copy (moving
 * items to their new group), switch and final (moving items deleted from the old group);
 * records each page in the state file. */
cr_err rebal_pass(rebal_run *R);

/* Dry run: counts what would move (keys-only scans, nothing written). */
cr_err rebal_count(rebal_run *R);

#endif
