/* store.h — the job broker's durable job records (LMDB; DESIGN §7b).
 *
 * One LMDB environment in the jobs directory, one named database `jobs`: job id -> a packed
 * JobRecord (proto/cirrus.proto). Every put commits with sync before it returns, so a job
 * whose id was acknowledged after jobs_store_put survives kill -9. Idempotency keys and the
 * submission order are fields of the record; the broker rebuilds its indexes from them at
 * start (jobs_store_each).
 *
 *   jobs_store *st; rc = jobs_store_open(&st, "/var/lib/cirrus/jobs", 1024);
 *   rc = jobs_store_put(st, recs, n);          // one synced transaction for n records
 *   rc = jobs_store_get(st, "j-...", &rec);    // CR_NOTFOUND when absent
 *   cirrus__v1__job_record__free_unpacked(rec, NULL);
 *   jobs_store_close(&st);
 *
 * Thread rules: a handle is used by one thread (the broker's).
 */
#ifndef JOBS_STORE_H
#define JOBS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct jobs_store jobs_store;

/* Opens (creating) the directory's environment with a map of map_mb MiB (>= 1). CR_ERR_IO
 * when the directory cannot be made, CR_ERR_STORE on LMDB errors. */
cr_err jobs_store_open(jobs_store **out, const char *dir, size_t map_mb);
void jobs_store_close(jobs_store **pp);

/* Writes n records (insert or replace by job_id) in one transaction, synced before it
 * returns. CR_ERR_STORE (MDB_MAP_FULL: "job store full") leaves none of them written. */
cr_err jobs_store_put(jobs_store *st, Cirrus__V1__JobRecord *const *recs, size_t n);
/* Deletes the records of ids (absent ones are skipped), one synced transaction. */
cr_err jobs_store_delete(jobs_store *st, const char *const *ids, size_t n);
/* Reads one record; free *out with cirrus__v1__job_record__free_unpacked(*out, NULL).
 * CR_NOTFOUND when absent, CR_ERR_STORE when the stored bytes do not unpack. */
cr_err jobs_store_get(jobs_store *st, const char *id, Cirrus__V1__JobRecord **out);

/* Calls fn for every record in id order; fn takes ownership of rec (free it as above) and
 * returns 0 to go on. A record that does not unpack is logged and skipped. */
typedef int (*jobs_store_fn)(void *ctx, Cirrus__V1__JobRecord *rec);
cr_err jobs_store_each(jobs_store *st, jobs_store_fn fn, void *ctx);

/* Bytes of the map in use (pages * page size) and the map size. */
void jobs_store_usage(jobs_store *st, size_t *used, size_t *size);

#endif
