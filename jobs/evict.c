/* evict.c — results are kept result_ttl_ms within half the store's map (the oldest first);
 * an evicted job keeps its record, says so in its error, and loses only its image. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "jobs/broker_impl.h"

size_t jobs_result_budget(const jobs_broker *b)
{
    return b->o.store_mb * (size_t)(1u << 20) / 2;
}

void jobs_result_add(jobs_broker *b, jobs_job *j)
{
    j->res_next = NULL;
    j->res_prev = b->res_tail;
    if (b->res_tail)
        b->res_tail->res_next = j;
    else
        b->res_head = j;
    b->res_tail = j;
    b->results_bytes += j->stored_image;
}

void jobs_result_remove(jobs_broker *b, jobs_job *j)
{
    if (j->res_prev)
        j->res_prev->res_next = j->res_next;
    else if (b->res_head == j)
        b->res_head = j->res_next;
    else
        return; /* not on the list */
    if (j->res_next)
        j->res_next->res_prev = j->res_prev;
    else
        b->res_tail = j->res_prev;
    j->res_prev = j->res_next = NULL;
    b->results_bytes -= j->stored_image;
}

void jobs_evict(jobs_broker *b, uint64_t now_ms)
{
    size_t budget = jobs_result_budget(b);
    while (b->res_head) {
        jobs_job *j = b->res_head;
        int old = j->ended_ms + b->o.result_ttl_ms <= now_ms;
        if (!old && b->results_bytes <= budget)
            break;
        jobs_result_remove(b, j);
        j->evict = 1; /* the flush writes the record without its image */
        snprintf(j->error, sizeof j->error, "result evicted (%s)",
                 old ? "older than --job-result-ttl" : "over --job-store-mb");
        jobs_dirty(b, j);
        jobs_metrics_count(b, &b->m.evicted);
        CR_INFO("jobs", "%s: %s", j->id, j->error);
    }
}
