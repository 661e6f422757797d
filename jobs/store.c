/* store.c — LMDB under the job broker (see store.h). The only file of jobs/ that sees LMDB. */
#include "jobs/store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

struct jobs_store {
    MDB_env *env;
    MDB_dbi jobs;
};

static cr_err store_err(int rc, const char *what)
{
    if (rc == MDB_MAP_FULL)
        return cr_error_set(CR_ERR_STORE, "job store full (%s): raise --job-store-mb", what);
    return cr_error_set(CR_ERR_STORE, "job store %s: %s", what, mdb_strerror(rc));
}

cr_err jobs_store_open(jobs_store **out, const char *dir, size_t map_mb)
{
    jobs_store *st = calloc(1, sizeof *st);
    MDB_txn *txn = NULL;
    int rc;
    cr_err err = CR_OK;

    if (!st)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        err = cr_error_set(CR_ERR_IO, "cannot make the jobs directory %s: %s", dir,
                           strerror(errno));
        goto out;
    }
    if ((rc = mdb_env_create(&st->env))) {
        err = store_err(rc, "create");
        goto out;
    }
    rc = mdb_env_set_maxdbs(st->env, 4);
    if (!rc)
        rc = mdb_env_set_mapsize(st->env, (map_mb ? map_mb : 1) << 20);
    if (!rc)
        /* commits do not sync: jobs_store_sync does, from the broker's sync thread */
        rc = mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOSYNC, 0644);
    if (!rc)
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, "jobs", MDB_CREATE, &st->jobs);
    if (!rc) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc)
        err = store_err(rc, dir);
out:
    if (txn)
        mdb_txn_abort(txn);
    if (err) {
        jobs_store_close(&st);
        return err;
    }
    *out = st;
    return CR_OK;
}

void jobs_store_close(jobs_store **pp)
{
    jobs_store *st = pp ? *pp : NULL;
    if (!st)
        return;
    if (st->env)
        mdb_env_close(st->env);
    free(st);
    *pp = NULL;
}

static MDB_val key_of(const char *id)
{
    MDB_val k = {strlen(id), (void *)id};
    return k;
}

cr_err jobs_store_put(jobs_store *st, Cirrus__V1__JobRecord *const *recs, size_t n)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    for (size_t i = 0; i < n && !rc; i++) {
        const Cirrus__V1__JobRecord *r = recs[i];
        MDB_val k = key_of(r->job_id), v;
        if (!k.mv_size || k.mv_size > 200) {
            mdb_txn_abort(txn);
            return cr_error_set(CR_ERR_INVALID, "job record without a valid id");
        }
        v.mv_size = cirrus__v1__job_record__get_packed_size(r);
        /* MDB_RESERVE: pack straight into the page, no copy */
        rc = mdb_put(txn, st->jobs, &k, &v, MDB_RESERVE);
        if (!rc)
            cirrus__v1__job_record__pack(r, v.mv_data);
    }
    if (rc) {
        if (txn)
            mdb_txn_abort(txn);
        return store_err(rc, "put");
    }
    if ((rc = mdb_txn_commit(txn)))
        return store_err(rc, "commit");
    return CR_OK;
}

cr_err jobs_store_sync(jobs_store *st)
{
    int rc = mdb_env_sync(st->env, 1);
    return rc ? store_err(rc, "sync") : CR_OK;
}

cr_err jobs_store_delete(jobs_store *st, const char *const *ids, size_t n)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    for (size_t i = 0; i < n && !rc; i++) {
        MDB_val k = key_of(ids[i]);
        rc = mdb_del(txn, st->jobs, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc) {
        if (txn)
            mdb_txn_abort(txn);
        return store_err(rc, "delete");
    }
    if ((rc = mdb_txn_commit(txn)))
        return store_err(rc, "commit");
    return CR_OK;
}

cr_err jobs_store_get(jobs_store *st, const char *id, Cirrus__V1__JobRecord **out)
{
    MDB_txn *txn = NULL;
    MDB_val k = key_of(id), v;
    cr_err err = CR_OK;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return store_err(rc, "read");
    rc = mdb_get(txn, st->jobs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        err = cr_error_set(CR_NOTFOUND, "no job %s", id);
    } else if (rc) {
        err = store_err(rc, "get");
    } else {
        *out = cirrus__v1__job_record__unpack(NULL, v.mv_size, v.mv_data);
        if (!*out)
            err = cr_error_set(CR_ERR_STORE, "job %s: stored record does not unpack", id);
    }
    mdb_txn_abort(txn);
    return err;
}

cr_err jobs_store_each(jobs_store *st, jobs_store_fn fn, void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (!rc)
        rc = mdb_cursor_open(txn, st->jobs, &cur);
    for (int op = MDB_FIRST; !rc; op = MDB_NEXT) {
        Cirrus__V1__JobRecord *r;
        rc = mdb_cursor_get(cur, &k, &v, op);
        if (rc)
            break;
        r = cirrus__v1__job_record__unpack(NULL, v.mv_size, v.mv_data);
        if (!r) {
            CR_WARN("jobs", "skipping a job record that does not unpack (%.*s)",
                    (int)(k.mv_size < 64 ? k.mv_size : 64), (const char *)k.mv_data);
            continue;
        }
        if (fn(ctx, r))
            break;
    }
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    if (rc && rc != MDB_NOTFOUND)
        return store_err(rc, "iterate");
    return CR_OK;
}

void jobs_store_usage(jobs_store *st, size_t *used, size_t *size)
{
    MDB_envinfo info;
    MDB_stat stat;
    mdb_env_info(st->env, &info);
    mdb_env_stat(st->env, &stat);
    *used = (info.me_last_pgno + 1) * (size_t)stat.ms_psize;
    *size = info.me_mapsize;
}
