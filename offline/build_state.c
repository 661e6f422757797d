#include "offline/build_state.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonfile.h"

/* fsync of the directory holding path, so that a rename survives a crash. */
static void sync_parent(const char *path)
{
    char copy[4096];
    int fd;
    snprintf(copy, sizeof copy, "%s", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

cr_err offline_json_save(const char *path, const json_t *j)
{
    char tmp[4096];
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1));
    FILE *f = NULL;
    cr_err rc = CR_OK;
    int ok;
    if (!text)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    /* The pid in the name: builds of several groups may share the directory (build.json,
     * cluster.json, the same content from each). */
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(text);
        return cr_error_set(CR_ERR_INVALID, "%s: path too long", path);
    }
    if (!(f = fopen(tmp, "wb"))) {
        rc = cr_error_set(CR_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    sync_parent(path);
out:
    free(text);
    return rc;
}

static uint64_t get_u64(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

cr_err offline_state_load(const char *path, offline_group_state *st)
{
    json_t *j = NULL;
    cr_err rc;
    memset(st, 0, sizeof *st);
    if (access(path, F_OK) != 0)
        return CR_NOTFOUND;
    rc = cr_json_load_file(path, &j);
    if (rc)
        return rc;
    if (!json_is_object(j)) {
        json_decref(j);
        return cr_error_set(CR_ERR_INVALID, "%s: not a progress record", path);
    }
    st->next = get_u64(j, "next");
    st->side_offset = get_u64(j, "side_offset");
    st->errors = get_u64(j, "errors");
    st->errors_bytes = get_u64(j, "errors_bytes");
    st->stored = get_u64(j, "stored");
    st->done = json_is_true(json_object_get(j, "done"));
    st->items = get_u64(j, "items");
    json_decref(j);
    return CR_OK;
}

cr_err offline_state_save(const char *path, const offline_group_state *st)
{
    json_t *j = json_pack("{sIsIsIsIsIsbsI}", "next", (json_int_t)st->next, "side_offset",
                          (json_int_t)st->side_offset, "errors", (json_int_t)st->errors,
                          "errors_bytes", (json_int_t)st->errors_bytes, "stored",
                          (json_int_t)st->stored, "done", st->done, "items",
                          (json_int_t)st->items);
    cr_err rc;
    if (!j)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = offline_json_save(path, j);
    json_decref(j);
    return rc;
}

cr_err offline_manifest_check(const char *path, const json_t *want)
{
    json_t *have = NULL, *v;
    const char *key;
    cr_err rc = CR_OK;
    if (access(path, F_OK) != 0)
        return offline_json_save(path, want);
    rc = cr_json_load_file(path, &have);
    if (rc)
        return rc;
    json_object_foreach((json_t *)want, key, v)
    {
        json_t *h = json_object_get(have, key);
        if (!h || !json_equal(h, v)) {
            char *a = json_dumps(h ? h : json_null(), JSON_ENCODE_ANY);
            char *b = json_dumps(v, JSON_ENCODE_ANY);
            rc = cr_error_set(CR_ERR_INVALID, "the build in progress there has %s %s, not %s "
                              "(finish it with the same command, or use another --out)", key,
                              a ? a : "?", b ? b : "?");
            free(a);
            free(b);
            break;
        }
    }
    json_decref(have);
    return rc;
}
