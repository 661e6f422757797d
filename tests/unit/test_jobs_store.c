/* test_jobs_store.c — jobs/store.c over a real LMDB directory: put, get, replace, delete,
 * iterate, reopen (what was committed is there after close), a full map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/test.h"
#include "jobs/store.h"

typedef struct seen {
    int n;
    char ids[8][32];
    int states[8];
} seen;

static int collect(void *ctx, Cirrus__V1__JobRecord *rec)
{
    seen *s = ctx;
    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", rec->job_id);
        s->states[s->n] = rec->state;
    }
    s->n++;
    cirrus__v1__job_record__free_unpacked(rec, NULL);
    return 0;
}

static void record(Cirrus__V1__JobRecord *r, Cirrus__V1__GenerateRequest *g, const char *id,
                   Cirrus__V1__JobState state, uint64_t seq)
{
    cirrus__v1__job_record__init(r);
    cirrus__v1__generate_request__init(g);
    g->kind = CIRRUS__V1__JOB_KIND__JOB_TRYON;
    g->idempotency_key = "key-1";
    g->person_image.data = (uint8_t *)"person";
    g->person_image.len = 6;
    r->job_id = (char *)id;
    r->request = g;
    r->state = state;
    r->seq = seq;
    r->created_ms = 1000 + seq;
}

int main(void)
{
    char dir[] = "/tmp/cirrus-jobs-store-XXXXXX";
    jobs_store *st = NULL;
    Cirrus__V1__JobRecord a, b, *recs[2], *got = NULL;
    Cirrus__V1__GenerateRequest ga, gb;
    Cirrus__V1__JobAttempt at = CIRRUS__V1__JOB_ATTEMPT__INIT;
    Cirrus__V1__JobAttempt *atp = &at;
    seen s = {0};
    char cmd[128];
    size_t used = 0, size = 0;

    CR_TEST_BEGIN();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    CR_CHECK(jobs_store_open(&st, dir, 4) == CR_OK);
    record(&a, &ga, "j-a", CIRRUS__V1__JOB_STATE__JOB_QUEUED, 1);
    record(&b, &gb, "j-b", CIRRUS__V1__JOB_STATE__JOB_RUNNING, 2);
    at.worker = "w1";
    at.reason = "worker lost";
    b.attempt_log = &atp;
    b.n_attempt_log = 1;
    b.attempts = 1;
    recs[0] = &a;
    recs[1] = &b;
    CR_CHECK(jobs_store_put(st, recs, 2) == CR_OK);
    CR_CHECK(jobs_store_get(st, "j-none", &got) == CR_NOTFOUND);
    CR_CHECK(jobs_store_get(st, "j-b", &got) == CR_OK);
    CR_CHECK(got && got->n_attempt_log == 1 && strcmp(got->attempt_log[0]->reason,
                                                      "worker lost") == 0);
    CR_CHECK(got && got->request && got->request->person_image.len == 6 &&
             strcmp(got->request->idempotency_key, "key-1") == 0);
    cirrus__v1__job_record__free_unpacked(got, NULL);
    got = NULL;
    /* replace: a state change of the same job */
    b.state = CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED;
    b.image.data = (uint8_t *)"\x89PNG";
    b.image.len = 4;
    CR_CHECK(jobs_store_put(st, &recs[1], 1) == CR_OK);
    jobs_store_usage(st, &used, &size);
    CR_CHECK(used > 0 && size == 4u << 20);
    jobs_store_close(&st);
    CR_CHECK(st == NULL);

    /* reopen: both committed records are there, the replacement won */
    CR_CHECK(jobs_store_open(&st, dir, 4) == CR_OK);
    CR_CHECK(jobs_store_each(st, collect, &s) == CR_OK);
    CR_CHECK(s.n == 2);
    CR_CHECK(strcmp(s.ids[0], "j-a") == 0 && strcmp(s.ids[1], "j-b") == 0);
    CR_CHECK(s.states[1] == CIRRUS__V1__JOB_STATE__JOB_SUCCEEDED);
    CR_CHECK(jobs_store_get(st, "j-b", &got) == CR_OK && got && got->image.len == 4);
    if (got)
        cirrus__v1__job_record__free_unpacked(got, NULL);
    got = NULL;

    /* delete, then a record too large for the map: refused, nothing half-written */
    {
        const char *ids[] = {"j-a", "j-gone"};
        CR_CHECK(jobs_store_delete(st, ids, 2) == CR_OK);
        CR_CHECK(jobs_store_get(st, "j-a", &got) == CR_NOTFOUND);
    }
    {
        size_t big = 8u << 20;
        uint8_t *img = calloc(1, big);
        CR_CHECK(img != NULL);
        b.image.data = img;
        b.image.len = big;
        b.job_id = "j-big";
        CR_CHECK(jobs_store_put(st, &recs[1], 1) == CR_ERR_STORE);
        CR_CHECK(jobs_store_get(st, "j-big", &got) == CR_NOTFOUND);
        free(img);
    }
    /* an invalid id is refused */
    b.job_id = "";
    b.image.len = 0;
    CR_CHECK(jobs_store_put(st, &recs[1], 1) == CR_ERR_INVALID);
    jobs_store_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
