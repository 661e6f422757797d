/* One scan of the old groups: page by page, each page's moving items copied (copy) or deleted
 * from the old group (switch, final), the page recorded in the state file before the next. */
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "common/clock.h"
#include "offline/rebalance_impl.h"

#define REBAL_SAVE_US 1000000u

static void advance(rebal_run *R, uint64_t n)
{
    if (R->ev && R->ev->advance)
        R->ev->advance(R->ev->ctx, n);
}

/* Sleeps so that items scanned since the stage began stay within the rate. */
static void throttle(rebal_run *R)
{
    uint64_t done = R->rep.scanned, el_ms, want_ms;
    if (!R->o->rate || !done)
        return;
    el_ms = (cr_clock_mono_us() - R->t0_us) / 1000;
    want_ms = done * 1000 / R->o->rate;
    if (want_ms > el_ms)
        cr_clock_sleep_ms(want_ms - el_ms);
}

/* copy: the page's live items that move, grouped by their new group, to every replica of it. */
static cr_err copy_page(rebal_run *R, int g, const Cirrus__V1__ScanResult *page, uint64_t *n)
{
    int G = R->plan.new_groups;
    size_t *cnt = calloc((size_t)G, sizeof *cnt);
    Cirrus__V1__Item **by = calloc((size_t)G * (page->n_items ? page->n_items : 1), sizeof *by);
    cr_err rc = cnt && by ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < page->n_items; i++) {
        Cirrus__V1__Item *it = page->items[i];
        int to;
        if ((i < page->n_deleted && page->deleted[i]) || !it->vector || !it->vector->n_values)
            continue; /* tombstones stay: the new owner never had the item */
        if ((to = offline_rebal_target(&R->plan, it->id, g)) < 0)
            continue;
        by[(size_t)to * page->n_items + cnt[to]++] = it;
    }
    for (int t = 0; !rc && t < G; t++) {
        rc = offline_rebal_put(R->net, R->new_map, t, &by[(size_t)t * page->n_items], cnt[t]);
        *n += cnt[t];
    }
    free(cnt);
    free(by);
    return rc;
}

/* switch, final: the page's live items that group g no longer owns, deleted from g at their
 * versions (a newer write, from a coordinator still writing to both owners, is kept). */
static cr_err clean_page(rebal_run *R, int g, const Cirrus__V1__ScanResult *page, uint64_t *n)
{
    Cirrus__V1__DeleteItem *dels = calloc(page->n_items ? page->n_items : 1, sizeof *dels);
    Cirrus__V1__DeleteItem **ptrs = calloc(page->n_items ? page->n_items : 1, sizeof *ptrs);
    size_t m = 0;
    cr_err rc = dels && ptrs ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < page->n_items; i++) {
        const Cirrus__V1__Item *it = page->items[i];
        if ((i < page->n_deleted && page->deleted[i]) ||
            offline_rebal_target(&R->plan, it->id, g) < 0)
            continue;
        cirrus__v1__delete_item__init(&dels[m]);
        dels[m].id = it->id;
        dels[m].version = it->version;
        ptrs[m] = &dels[m];
        m++;
    }
    if (!rc)
        rc = offline_rebal_del(R->net, R->old_map, g, ptrs, m);
    if (!rc)
        *n += m;
    free(dels);
    free(ptrs);
    return rc;
}

/* One page of group g from the state's cursor: handled, then recorded (see below). *done at
 * its end. */
static cr_err pass_page(rebal_run *R, int g, int *done)
{
    int copy = R->st.phase == OFFLINE_REBAL_COPY;
    Cirrus__V1__Response *resp = NULL;
    const Cirrus__V1__ScanResult *page;
    uint64_t n = 0;
    cr_err rc = offline_rebal_scan(R->net, R->old_map, g, R->st.cursor, R->o->batch, !copy,
                                   &resp);
    if (rc)
        return rc;
    page = resp->scan;
    rc = copy ? copy_page(R, g, page, &n) : clean_page(R, g, page, &n);
    if (!rc)
        rc = offline_rebal_state_cursor(&R->st, page->done ? "" : page->next_cursor);
    if (!rc) {
        *done = page->done || !page->n_items;
        R->rep.scanned += page->n_items;
        R->st.scanned += page->n_items;
        if (copy) {
            R->rep.copied += n;
            R->st.copied += n;
        } else {
            R->rep.deleted += n;
            R->st.deleted += n;
        }
        if (*done)
            R->st.group = g + 1;
        /* Recorded at most once a second (each save is two fsyncs) and at a group's end: a
         * resume redoes the pages after the last record, which is harmless. */
        if (*done || cr_clock_mono_us() - R->saved_us >= REBAL_SAVE_US) {
            rc = offline_rebal_state_save(R->state_path, &R->st);
            R->saved_us = cr_clock_mono_us();
        }
        advance(R, page->n_items);
    }
    cirrus_response_free(resp);
    return rc;
}

cr_err rebal_pass(rebal_run *R)
{
    cr_err rc = CR_OK;
    R->t0_us = cr_clock_mono_us();
    for (int g = R->st.group; !rc && g < R->plan.old_groups; g++) {
        int done = 0;
        while (!rc && !done) {
            rc = pass_page(R, g, &done);
            throttle(R);
        }
        if (rc)
            rc = cr_error_wrap(rc, "%s, group %d", offline_rebal_phase_name(R->st.phase), g);
    }
    return rc;
}

cr_err rebal_count(rebal_run *R)
{
    cr_err rc = CR_OK;
    for (int g = 0; !rc && g < R->plan.old_groups; g++) {
        char *cursor = NULL;
        int done = 0;
        while (!rc && !done) {
            Cirrus__V1__Response *resp = NULL;
            const Cirrus__V1__ScanResult *page;
            rc = offline_rebal_scan(R->net, R->old_map, g, cursor ? cursor : "", R->o->batch, 1,
                                    &resp);
            if (rc)
                break;
            page = resp->scan;
            for (size_t i = 0; i < page->n_items; i++) {
                int to;
                if (i < page->n_deleted && page->deleted[i])
                    continue;
                if ((to = offline_rebal_target(&R->plan, page->items[i]->id, g)) >= 0) {
                    R->sum->moving_to[to]++;
                    R->sum->moving++;
                }
            }
            R->rep.scanned += page->n_items;
            advance(R, page->n_items);
            done = page->done || !page->n_items;
            free(cursor);
            cursor = done ? NULL : strdup(page->next_cursor ? page->next_cursor : "");
            if (!done && !cursor)
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            cirrus_response_free(resp);
        }
        free(cursor);
    }
    return rc;
}
