/* jobs_json.h — generation jobs as JSON, the shape the HTTP API and the CLI's --json print:
 *   {"job_id","kind","state","progress","step","attempts","worker","error","has_image",
 *    "created_ms","started_ms","ended_ms","attempt_log":[{"worker","reason","started_ms",
 *    "ended_ms"}]}
 * (times in ms since the epoch, 0 when not reached; "error" is "" unless the job failed or
 * expired). */
#ifndef GW_JOBS_JSON_H
#define GW_JOBS_JSON_H

#include <jansson.h>

#include "cirrus.pb-c.h"

/* New reference. */
json_t *cirrus_job_info_json(const Cirrus__V1__JobInfo *j);
/* {"jobs": [...]} newest first. New reference. */
json_t *cirrus_job_list_json(const Cirrus__V1__JobList *l);

#endif
