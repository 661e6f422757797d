/* jobs_json.c — JobInfo and JobList as JSON (jobs_json.h). */
#include "gateway/jobs_json.h"

#include "client/cirrus.h"
#include "gateway/json.h"

static json_t *attempt_json(const Cirrus__V1__JobAttempt *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "worker", json_string(a->worker ? a->worker : ""));
    json_object_set_new(o, "reason", json_string(a->reason ? a->reason : ""));
    json_object_set_new(o, "started_ms", cirrus_json_u64(a->started_ms));
    json_object_set_new(o, "ended_ms", cirrus_json_u64(a->ended_ms));
    return o;
}

json_t *cirrus_job_info_json(const Cirrus__V1__JobInfo *j)
{
    json_t *o = json_object(), *log = json_array();
    json_object_set_new(o, "job_id", json_string(j->job_id ? j->job_id : ""));
    json_object_set_new(o, "kind", json_string(cirrus_job_kind_name((cirrus_job_kind)j->kind)));
    json_object_set_new(o, "state",
                        json_string(cirrus_job_state_name((cirrus_job_state)j->state)));
    json_object_set_new(o, "progress", json_real(j->progress));
    json_object_set_new(o, "step", json_integer(j->step));
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    json_object_set_new(o, "worker", json_string(j->worker ? j->worker : ""));
    json_object_set_new(o, "error", json_string(j->error ? j->error : ""));
    json_object_set_new(o, "has_image", json_boolean(j->has_image || j->image.len));
    json_object_set_new(o, "created_ms", cirrus_json_u64(j->created_ms));
    json_object_set_new(o, "started_ms", cirrus_json_u64(j->started_ms));
    json_object_set_new(o, "ended_ms", cirrus_json_u64(j->ended_ms));
    for (size_t i = 0; i < j->n_attempt_log; i++)
        if (j->attempt_log[i])
            json_array_append_new(log, attempt_json(j->attempt_log[i]));
    json_object_set_new(o, "attempt_log", log);
    return o;
}

json_t *cirrus_job_list_json(const Cirrus__V1__JobList *l)
{
    json_t *o = json_object(), *arr = json_array();
    for (size_t i = 0; l && i < l->n_jobs; i++)
        if (l->jobs[i])
            json_array_append_new(arr, cirrus_job_info_json(l->jobs[i]));
    json_object_set_new(o, "jobs", arr);
    return o;
}
