/* store.h — the job broker's durable job records (LMDB; DESIGN §7b).
 *
 * One LMDB environment in the jobs directory, one named database `jobs`: job id -> a packed
 * JobRecord (proto/cirrus.proto). A put commits without syncing (MDB_NOSYNC): once it returns
 * its records are in the page cache and survive kill -9 of the process; jobs_store_sync
 * (fdatasync) makes every commit before it survive a crash of the machine too, so a job's id
 * is acknowledged only after the sync that followed its put. Idempotency keys and the
 * submission order are fields of the record; the broker rebuilds its indexes from them at
 * start (jobs_store_each).
 *
 *   jobs_store *st; rc = jobs_store_open(&st, "/var/lib/cirrus/jobs", 1024);
 *   rc = jobs_store_put(st, recs, n);          // one transaction for n records, not synced
 *   rc = jobs_store_sync(st);                  // every put before it is durable
 *   rc = jobs_store_get(st, "j-...", &rec);    // CR_NOTFOUND when absent
 *   cirrus__v1__job_record__free_unpacked(rec, NULL);
 *   jobs_store_close(&st);
 *
 * Thread rules: a handle is used by one thread (the broker's), except jobs_store_sync, which
 * another thread may call at any time, also while a put runs (LMDB's mdb_env_sync on an
 * environment without MDB_WRITEMAP is an fdatasync of the data file).
 *
 * Power loss: without a sync between a commit's data pages and its meta page (MDB_NOSYNC),
 * a crash of the machine in the middle of a sync may leave a meta page on disk whose pages
 * are not; kill -9 of the process cannot (the page cache keeps every write).
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

/* Writes n records (insert or replace by job_id) in one transaction, committed (readable,
 * surviving kill -9) but not synced. CR_ERR_STORE (MDB_MAP_FULL: "job store full") leaves
 * none of them written. */
cr_err jobs_store_put(jobs_store *st, Cirrus__V1__JobRecord *const *recs, size_t n);
/* Flushes every commit made before the call to disk (fdatasync). CR_ERR_STORE on an I/O
 * error (the commits since the last good sync may not survive a crash of the machine). Any
 * thread (see above). */
cr_err jobs_store_sync(jobs_store *st);
/* Deletes the records of ids (absent ones are skipped), one transaction, not synced. */
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
