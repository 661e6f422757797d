/* eval_run.c — CIRCO / FashionIQ / CIRR through a live endpoint (see eval_run.h). */
#include "common/fileio.h"
#include "eval/run.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/jsonfile.h"
#include "common/log.h"

#define PATH_LEN CIRRUS_EVAL_RUN_PATH_MAX
#define MAX_LOGGED 20 /* per-item problems printed one by one; then only counted */

static const char *const fiq_cats[CIRRUS_EVAL_FIQ_NCATS] = {"dress", "shirt", "toptee"};
static const char *const image_exts[] = {".png", ".jpg", ".jpeg", ".webp"};

typedef struct gimage {
    char *id;
    char *path;    /* resolved file, or NULL (FashionIQ: resolved at read time) */
    unsigned cats; /* FashionIQ: bit i = listed in category i's split */
} gimage;

typedef struct query {
    long long num;        /* CIRCO id, CIRR pairid, FashionIQ line number */
    char *ref;            /* catalog id of the reference image */
    char *caption, *caption2;
    int cat;              /* FashionIQ category, else -1 */
    char *target;         /* FashionIQ target name; NULL when not annotated */
    const json_t *members; /* CIRR img_set.members (borrowed from the annotations) */
    char **rank;
    size_t n_rank;
    char **subset;
    size_t n_subset;
    int failed, subset_failed;
} query;

typedef struct run {
    const cirrus_eval_run_params *p;
    cirrus_client *c;
    FILE *log;
    cirrus_eval_run_report *rep;
    gimage *imgs;
    size_t n_imgs, cap_imgs;
    query *qs;
    size_t n_qs, cap_qs;
    json_t *ann[CIRRUS_EVAL_FIQ_NCATS]; /* parsed annotation files (kept: members borrow) */
    char ann_path[PATH_LEN];            /* CIRCO / CIRR annotations, for the metrics */
    int has_gt, has_members;
    char bases[2][PATH_LEN];            /* CIRR: directories image paths are relative to */
    int n_bases;
    size_t n_logged;
} run;

/* ---- small helpers -------------------------------------------------------------------- */

static cr_err path_fmt(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cr_err path_fmt(char *buf, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, PATH_LEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_LEN)
        return cr_error_set(CR_ERR_INVALID, "path too long: %.60s...", buf);
    return CR_OK;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static cr_err mkdir_p(const char *dir)
{
    char buf[PATH_LEN];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof buf)
        return cr_error_set(CR_ERR_INVALID, "bad output directory '%s'", dir);
    memcpy(buf, dir, len + 1);
    for (char *s = buf + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char save = *s;
            *s = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return cr_error_set(CR_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
            *s = save;
            if (!save)
                break;
        }
    }
    if (!is_dir(dir))
        return cr_error_set(CR_ERR_IO, "%s: not a directory", dir);
    return CR_OK;
}

/* Loads r->ann_path (already formatted) into r->ann[0]: a non-empty JSON array of queries. */
static cr_err load_query_array(run *r, json_t **out)
{
    cr_err rc = cr_json_load_file(r->ann_path, &r->ann[0]);
    if (rc)
        return rc;
    if (!json_is_array(r->ann[0]) || json_array_size(r->ann[0]) == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: expected a non-empty JSON array of queries",
                            r->ann_path);
    *out = r->ann[0];
    return CR_OK;
}

/* One problem with one item: printed for the first MAX_LOGGED, then only counted. */
static void item_problem(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void item_problem(run *r, const char *fmt, ...)
{
    va_list ap;
    if (r->n_logged++ >= MAX_LOGGED) {
        if (r->n_logged == MAX_LOGGED + 1)
            fprintf(r->log, "eval run: further problems are only counted\n");
        return;
    }
    fputs("eval run: ", r->log);
    va_start(ap, fmt);
    vfprintf(r->log, fmt, ap);
    va_end(ap);
    fputc('\n', r->log);
}

static cr_err add_image(run *r, const char *id, const char *path, unsigned cats)
{
    gimage *g;
    if (r->n_imgs == r->cap_imgs) {
        size_t cap = r->cap_imgs ? 2 * r->cap_imgs : 1024;
        gimage *n = realloc(r->imgs, cap * sizeof *n);
        if (!n)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        r->imgs = n;
        r->cap_imgs = cap;
    }
    g = &r->imgs[r->n_imgs];
    g->id = strdup(id);
    g->path = path ? strdup(path) : NULL;
    g->cats = cats;
    if (!g->id || (path && !g->path)) {
        free(g->id);
        free(g->path);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    r->n_imgs++;
    return CR_OK;
}

static query *add_query(run *r)
{
    query *q;
    if (r->n_qs == r->cap_qs) {
        size_t cap = r->cap_qs ? 2 * r->cap_qs : 256;
        query *n = realloc(r->qs, cap * sizeof *n);
        if (!n)
            return NULL;
        r->qs = n;
        r->cap_qs = cap;
    }
    q = &r->qs[r->n_qs++];
    memset(q, 0, sizeof *q);
    q->cat = -1;
    return q;
}

static char *dup_or_null(const json_t *s)
{
    return json_is_string(s) ? strdup(json_string_value(s)) : NULL;
}

/* The caption with FashionIQ's leading/trailing " .?," removed (SEARLE's strip('.?, ')). */
static char *fiq_caption(const char *s)
{
    const char *junk = " .?,";
    size_t a = strspn(s, junk), b = strlen(s);
    char *out;
    while (b > a && strchr(junk, s[b - 1]))
        b--;
    out = malloc(b - a + 1);
    if (out) {
        memcpy(out, s + a, b - a);
        out[b - a] = '\0';
    }
    return out;
}

/* ---- readers -------------------------------------------------------------------------- */

static cr_err circo_gallery(run *r)
{
    const char *root = r->p->root;
    char dir[PATH_LEN], info[PATH_LEN], path[PATH_LEN];
    const char *dirs[] = {"COCO2017_unlabeled/unlabeled2017", "unlabeled2017", "images"};
    const char *infos[] = {"COCO2017_unlabeled/annotations/image_info_unlabeled2017.json",
                           "annotations/image_info_unlabeled2017.json"};
    json_t *j = NULL;
    DIR *d = NULL;
    cr_err rc = CR_OK;
    int found = 0;

    for (size_t i = 0; !found && i < sizeof dirs / sizeof dirs[0]; i++) {
        if ((rc = path_fmt(dir, "%s/%s", root, dirs[i])))
            return rc;
        found = is_dir(dir);
    }
    if (!found)
        return cr_error_set(CR_ERR_IO, "%s/COCO2017_unlabeled/unlabeled2017: no such directory "
                                       "(the CIRCO gallery images; also looked for "
                                       "%s/unlabeled2017 and %s/images)", root, root, root);
    found = 0;
    for (size_t i = 0; !found && i < sizeof infos / sizeof infos[0]; i++) {
        if ((rc = path_fmt(info, "%s/%s", root, infos[i])))
            return rc;
        found = is_file(info);
    }
    if (found) {
        json_t *imgs;
        size_t i;
        json_t *e;
        if ((rc = cr_json_load_file(info, &j)))
            return rc;
        imgs = json_object_get(j, "images");
        if (!json_is_array(imgs)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: expected {\"images\": [...]}", info);
            goto out;
        }
        json_array_foreach(imgs, i, e) {
            const json_t *id = json_object_get(e, "id"), *fn = json_object_get(e, "file_name");
            char idbuf[32];
            if (!json_is_integer(id) || json_integer_value(id) < 0 || !json_is_string(fn) ||
                strstr(json_string_value(fn), "..")) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: images[%zu] needs a non-negative \"id\" "
                                  "and a \"file_name\"", info, i);
                goto out;
            }
            snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id));
            if ((rc = path_fmt(path, "%s/%s", dir, json_string_value(fn))) ||
                (rc = add_image(r, idbuf, path, 0)))
                goto out;
        }
        goto out;
    }
    /* No image list: every <number>.<image extension> in the directory. */
    d = opendir(dir);
    if (!d)
        return cr_error_set(CR_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    for (struct dirent *de = readdir(d); de; de = readdir(d)) {
        const char *name = de->d_name, *dot = strrchr(name, '.');
        size_t digits = strspn(name, "0123456789");
        int ext_ok = 0;
        char idbuf[32];
        if (!dot || digits == 0 || name + digits != dot || digits > 18)
            continue;
        for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++)
            ext_ok |= strcasecmp(dot, image_exts[i]) == 0;
        if (!ext_ok)
            continue;
        snprintf(idbuf, sizeof idbuf, "%lld", strtoll(name, NULL, 10));
        if ((rc = path_fmt(path, "%s/%s", dir, name)) || (rc = add_image(r, idbuf, path, 0)))
            goto out;
    }
    if (r->n_imgs == 0)
        rc = cr_error_set(CR_ERR_IO, "%s: no images named <COCO id>.jpg", dir);
out:
    if (d)
        closedir(d);
    json_decref(j);
    return rc;
}

static cr_err circo_read(run *r)
{
    json_t *a, *e;
    size_t i, with_gt = 0;
    cr_err rc;
    if ((rc = path_fmt(r->ann_path, "%s/annotations/%s.json", r->p->root, r->rep->split)) ||
        (rc = load_query_array(r, &a)))
        return rc;
    json_array_foreach(a, i, e) {
        const json_t *id = json_object_get(e, "id"), *ref = json_object_get(e, "reference_img_id"),
                     *cap = json_object_get(e, "relative_caption"),
                     *gt = json_object_get(e, "gt_img_ids");
        char buf[32];
        query *q;
        if (!json_is_integer(id) || !json_is_integer(ref) || !json_is_string(cap))
            return cr_error_set(CR_ERR_INVALID, "%s: entry %zu needs integer \"id\" and "
                                "\"reference_img_id\" and a string \"relative_caption\"",
                                r->ann_path, i);
        if (!(q = add_query(r)))
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        q->num = json_integer_value(id);
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(ref));
        q->ref = strdup(buf);
        q->caption = strdup(json_string_value(cap));
        if (!q->ref || !q->caption)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        with_gt += json_is_array(gt) && json_array_size(gt) > 0;
    }
    r->has_gt = with_gt == r->n_qs;
    if (r->p->index_catalog)
        return circo_gallery(r);
    return CR_OK;
}

static cr_err fiq_read(run *r)
{
    char path[PATH_LEN], first[PATH_LEN] = "";
    json_t *seen = json_object(); /* image name -> index in r->imgs */
    size_t with_target = 0;
    int n_cats = 0;
    cr_err rc = CR_OK;

    if (!seen)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int c = 0; c < CIRRUS_EVAL_FIQ_NCATS; c++) {
        size_t i;
        json_t *e, *split = NULL;
        if ((rc = path_fmt(path, "%s/captions/cap.%s.%s.json", r->p->root, fiq_cats[c],
                           r->rep->split)))
            goto out;
        if (!first[0])
            memcpy(first, path, sizeof first);
        if (!is_file(path))
            continue;
        n_cats++;
        if ((rc = cr_json_load_file(path, &r->ann[c])))
            goto out;
        if (!json_is_array(r->ann[c])) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: expected a JSON array of queries", path);
            goto out;
        }
        json_array_foreach(r->ann[c], i, e) {
            const json_t *cand = json_object_get(e, "candidate"),
                         *caps = json_object_get(e, "captions"), *tg = json_object_get(e, "target");
            const json_t *c1 = json_array_get(caps, 0), *c2 = json_array_get(caps, 1);
            query *q;
            if (!json_is_string(cand) || !json_is_string(c1) || (c2 && !json_is_string(c2))) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu needs a string \"candidate\" "
                                  "and \"captions\": [string, string]", path, i);
                goto out;
            }
            if (!(q = add_query(r))) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
            q->num = (long long)i;
            q->cat = c;
            q->ref = strdup(json_string_value(cand));
            q->caption = fiq_caption(json_string_value(c1));
            q->caption2 = c2 ? fiq_caption(json_string_value(c2)) : NULL;
            q->target = dup_or_null(tg);
            with_target += q->target != NULL;
            if (!q->ref || !q->caption || (c2 && !q->caption2)) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        if (!r->p->index_catalog)
            continue;
        if ((rc = path_fmt(path, "%s/image_splits/split.%s.%s.json", r->p->root, fiq_cats[c],
                           r->rep->split)) ||
            (rc = cr_json_load_file(path, &split)))
            goto out;
        if (!json_is_array(split)) {
            json_decref(split);
            rc = cr_error_set(CR_ERR_INVALID, "%s: expected a JSON array of image names", path);
            goto out;
        }
        json_array_foreach(split, i, e) {
            const char *name = json_string_value(e);
            json_t *at;
            if (!name || !name[0] || strchr(name, '/')) {
                json_decref(split);
                rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu is not an image name", path, i);
                goto out;
            }
            at = json_object_get(seen, name);
            if (at) {
                r->imgs[json_integer_value(at)].cats |= 1u << c;
                continue;
            }
            if ((rc = add_image(r, name, NULL, 1u << c)) ||
                json_object_set_new(seen, name, json_integer((json_int_t)(r->n_imgs - 1)))) {
                json_decref(split);
                rc = rc ? rc : cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        json_decref(split);
    }
    if (n_cats == 0)
        rc = cr_error_set(CR_ERR_IO, "%s: cannot open: %s (no FashionIQ caption file for split "
                          "'%s' under %s/captions)", first, strerror(ENOENT), r->rep->split,
                          r->p->root);
    r->has_gt = r->n_qs > 0 && with_target == r->n_qs;
out:
    json_decref(seen);
    return rc;
}

static cr_err cirr_read(run *r)
{
    const char *root = r->p->root;
    char dir[PATH_LEN], path[PATH_LEN];
    json_t *a, *e, *split = NULL;
    const char *key;
    json_t *val;
    size_t i, with_gt = 0, with_members = 0;
    cr_err rc;

    /* ROOT/cirr/captions, or ROOT is the cirr directory itself. */
    if ((rc = path_fmt(dir, "%s/cirr", root)))
        return rc;
    if ((rc = path_fmt(path, "%s/captions", dir)))
        return rc;
    if (is_dir(path)) {
        memcpy(r->bases[0], root, strlen(root) + 1);
        r->n_bases = 1;
    } else {
        if ((rc = path_fmt(path, "%s/captions", root)))
            return rc;
        if (is_dir(path)) {
            memcpy(dir, root, strlen(root) + 1);
            memcpy(r->bases[0], root, strlen(root) + 1);
            if ((rc = path_fmt(r->bases[1], "%s/..", root)))
                return rc;
            r->n_bases = 2;
        } else {
            memcpy(r->bases[0], root, strlen(root) + 1);
            r->n_bases = 1;
        }
    }
    if ((rc = path_fmt(r->ann_path, "%s/captions/cap.rc2.%s.json", dir, r->rep->split)) ||
        (rc = load_query_array(r, &a)))
        return rc;
    json_array_foreach(a, i, e) {
        const json_t *pid = json_object_get(e, "pairid"), *ref = json_object_get(e, "reference"),
                     *cap = json_object_get(e, "caption"), *tg = json_object_get(e, "target_hard"),
                     *mem = json_object_get(json_object_get(e, "img_set"), "members");
        query *q;
        if (!json_is_integer(pid) || !json_is_string(ref) || !json_is_string(cap))
            return cr_error_set(CR_ERR_INVALID, "%s: entry %zu needs an integer \"pairid\" and "
                                "strings \"reference\" and \"caption\"", r->ann_path, i);
        if (!(q = add_query(r)))
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        q->num = json_integer_value(pid);
        q->ref = strdup(json_string_value(ref));
        q->caption = strdup(json_string_value(cap));
        if (!q->ref || !q->caption)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        if (json_is_array(mem) && json_array_size(mem) > 0) {
            size_t m;
            json_t *x;
            json_array_foreach(mem, m, x) {
                if (!json_is_string(x))
                    return cr_error_set(CR_ERR_INVALID, "%s: pairid %lld: img_set.members[%zu] "
                                        "is not a string", r->ann_path, q->num, m);
            }
            q->members = mem;
            with_members++;
        }
        with_gt += json_is_string(tg);
    }
    r->has_gt = with_gt == r->n_qs;
    r->has_members = with_members == r->n_qs;
    if (!r->p->index_catalog)
        return CR_OK;

    if ((rc = path_fmt(path, "%s/image_splits/split.rc2.%s.json", dir, r->rep->split)) ||
        (rc = cr_json_load_file(path, &split)))
        return rc;
    if (!json_is_object(split) || json_object_size(split) == 0) {
        json_decref(split);
        return cr_error_set(CR_ERR_INVALID, "%s: expected a JSON object mapping image names to "
                            "paths", path);
    }
    json_object_foreach(split, key, val) {
        const char *rel = json_string_value(val);
        char img[PATH_LEN] = "";
        if (!rel || strstr(rel, "..") || !key[0]) {
            json_decref(split);
            return cr_error_set(CR_ERR_INVALID, "%s: \"%s\": not a relative image path", path,
                                key);
        }
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        for (int b = 0; b < r->n_bases; b++) {
            if ((rc = path_fmt(img, "%s/%s", r->bases[b], rel))) {
                json_decref(split);
                return rc;
            }
            if (is_file(img))
                break;
        }
        /* Not found: the first candidate, so that the failure names it. */
        if (!is_file(img))
            path_fmt(img, "%s/%s", r->bases[0], rel);
        if ((rc = add_image(r, key, img, 0))) {
            json_decref(split);
            return rc;
        }
    }
    json_decref(split);
    return CR_OK;
}

/* ---- indexing ------------------------------------------------------------------------- */

typedef struct ingest_item {
    Cirrus__V1__Item item;
    Cirrus__V1__Attribute attr, *attrp[1];
    Cirrus__V1__AttrValue val;
    Cirrus__V1__StringList list;
    char *cats[CIRRUS_EVAL_FIQ_NCATS];
    uint8_t *image;
    size_t len;
    size_t img; /* index in r->imgs */
} ingest_item;

/* Reads image `g` into `it` and fills its protobuf Item. */
static cr_err item_prepare(run *r, size_t gi, ingest_item *it)
{
    gimage *g = &r->imgs[gi];
    char path[PATH_LEN];
    cr_err rc;
    memset(it, 0, sizeof *it);
    it->img = gi;
    if (g->path) {
        rc = cr_file_read(g->path, &it->image, &it->len);
    } else { /* FashionIQ: images/<name>.<ext> */
        int found = 0;
        rc = CR_OK;
        for (size_t e = 0; !found && e < sizeof image_exts / sizeof image_exts[0]; e++) {
            if ((rc = path_fmt(path, "%s/images/%s%s", r->p->root, g->id, image_exts[e])))
                return rc;
            if ((found = is_file(path)))
                rc = cr_file_read(path, &it->image, &it->len);
        }
        if (!found)
            rc = cr_error_set(CR_ERR_IO, "%s/images/%s.png: no such image (also tried .jpg, "
                              ".jpeg, .webp)", r->p->root, g->id);
    }
    if (rc)
        return rc;
    cirrus__v1__item__init(&it->item);
    it->item.id = g->id;
    it->item.image.data = it->image;
    it->item.image.len = it->len;
    cirrus__v1__attribute__init(&it->attr);
    cirrus__v1__attr_value__init(&it->val);
    cirrus__v1__string_list__init(&it->list);
    it->attr.value = &it->val;
    it->attrp[0] = &it->attr;
    if (r->p->dataset == CIRRUS_EVAL_RUN_FASHIONIQ) {
        for (int c = 0; c < CIRRUS_EVAL_FIQ_NCATS; c++)
            if (g->cats & (1u << c))
                it->cats[it->list.n_values++] = (char *)fiq_cats[c];
        it->attr.name = "category";
        if (it->list.n_values == 1) {
            it->val.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
            it->val.s = it->cats[0];
        } else {
            it->list.values = it->cats;
            it->val.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
            it->val.strings = &it->list;
        }
        it->item.attributes = it->attrp;
        it->item.n_attributes = 1;
    } else if (r->p->dataset == CIRRUS_EVAL_RUN_CIRR) {
        it->attr.name = "name";
        it->val.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        it->val.s = g->id;
        it->item.attributes = it->attrp;
        it->item.n_attributes = 1;
    }
    return CR_OK;
}

/* Upserts items[0..n). Per-item failures are counted; returns non-OK only when the endpoint
 * could not be asked. A batch refused as a whole is retried item by item. */
static cr_err upsert_items(run *r, ingest_item *items, size_t n)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item *ptrs[256];
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;

    for (size_t i = 0; i < n; i++)
        ptrs[i] = &items[i].item;
    up.items = ptrs;
    up.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = cirrus_client_call(r->c, &req, r->p->timeout_ms, &resp);
    if (rc == CR_TIMEOUT)
        return cr_error_set(CR_ERR_UNAVAILABLE, "upsert: no reply within %u ms",
                            (unsigned)r->p->timeout_ms);
    if (rc)
        return rc;
    if (cirrus_response_error(resp)) {
        cirrus_response_free(resp);
        if (n == 1) {
            item_problem(r, "image %s: %s", items[0].item.id, cr_error_message());
            r->rep->n_index_failed++;
            return CR_OK;
        }
        for (size_t i = 0; i < n; i++)
            if ((rc = upsert_items(r, &items[i], 1)))
                return rc;
        return CR_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const Cirrus__V1__ItemStatus *st =
            resp->upsert && i < resp->upsert->n_items ? resp->upsert->items[i] : NULL;
        int code = st && st->status ? st->status->code : CR_ERR_PROTO;
        if (code < 0) {
            item_problem(r, "image %s: %s", items[i].item.id,
                         st && st->status ? st->status->message : "no status in the reply");
            r->rep->n_index_failed++;
        } else {
            r->rep->n_indexed++;
        }
    }
    cirrus_response_free(resp);
    return CR_OK;
}

/* Progress goes to the caller's callbacks (the tool draws bars), if it gave any. */
static void prog_begin(run *r, const char *label, uint64_t total)
{
    if (r->p->progress.begin)
        r->p->progress.begin(r->p->progress.ctx, label, total);
}

static void prog_add(run *r, uint64_t n)
{
    if (r->p->progress.add)
        r->p->progress.add(r->p->progress.ctx, n);
}

static void prog_end(run *r)
{
    if (r->p->progress.end)
        r->p->progress.end(r->p->progress.ctx);
}

static cr_err index_gallery(run *r)
{
    size_t batch = (size_t)r->p->batch, n = 0;
    ingest_item *items = calloc(batch, sizeof *items);
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = CR_OK;

    if (!items)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    r->rep->n_images = r->n_imgs;
    prog_begin(r, "index", r->n_imgs);
    for (size_t i = 0; i <= r->n_imgs; i++) {
        if (i < r->n_imgs) {
            rc = item_prepare(r, i, &items[n]);
            if (rc == CR_ERR_NOMEM)
                break;
            if (rc) {
                item_problem(r, "image %s: %s", r->imgs[i].id, cr_error_message());
                r->rep->n_index_failed++;
                free(items[n].image);
                prog_add(r, 1);
                rc = CR_OK;
                continue;
            }
            n++;
        }
        if (n == batch || (i == r->n_imgs && n)) {
            rc = upsert_items(r, items, n);
            for (size_t k = 0; k < n; k++)
                free(items[k].image);
            prog_add(r, n);
            n = 0;
            if (rc)
                break;
        }
    }
    for (size_t k = 0; k < n; k++)
        free(items[k].image);
    prog_end(r);
    free(items);
    r->rep->seconds_index = (double)(cr_clock_mono_us() - t0) / 1e6;
    return rc;
}

/* ---- searching ------------------------------------------------------------------------ */

typedef struct search_req {
    Cirrus__V1__Request req;
    Cirrus__V1__SearchRequest sr;
    Cirrus__V1__Query q;
    Cirrus__V1__Composed comp;
    Cirrus__V1__Reference ref;
    Cirrus__V1__Filter filter;
    Cirrus__V1__Compare cmp;
    Cirrus__V1__InSet in;
    Cirrus__V1__AttrValue val;
    Cirrus__V1__AttrValue *vals;
    Cirrus__V1__AttrValue **valp;
} search_req;

/* Job j: query j / per; kind j % per (0 = the ranking, 1 = CIRR's subset ranking). */
static cr_err job_send(run *r, size_t job, uint64_t *id)
{
    int per = r->p->dataset == CIRRUS_EVAL_RUN_CIRR ? 2 : 1, subset = (int)(job % (size_t)per);
    query *q = &r->qs[job / (size_t)per];
    search_req s;
    cr_err rc;

    memset(&s, 0, sizeof s);
    cirrus__v1__request__init(&s.req);
    cirrus__v1__search_request__init(&s.sr);
    cirrus__v1__query__init(&s.q);
    cirrus__v1__composed__init(&s.comp);
    cirrus__v1__reference__init(&s.ref);
    s.ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
    s.ref.item_id = q->ref;
    s.comp.reference = &s.ref;
    s.comp.caption = q->caption;
    s.comp.caption2 = q->caption2 ? q->caption2 : (char *)"";
    s.comp.method = (Cirrus__V1__ComposeMethod)r->p->method;
    s.q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
    s.q.composed = &s.comp;
    s.q.k = (uint32_t)r->p->k + (r->p->dataset == CIRRUS_EVAL_RUN_CIRR);
    s.q.include_metadata = 0;
    if (r->p->dataset == CIRRUS_EVAL_RUN_FASHIONIQ) {
        cirrus__v1__filter__init(&s.filter);
        cirrus__v1__compare__init(&s.cmp);
        cirrus__v1__attr_value__init(&s.val);
        s.val.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        s.val.s = (char *)fiq_cats[q->cat];
        s.cmp.attr = "category";
        s.cmp.op = CIRRUS__V1__COMPARE_OP__CMP_EQ;
        s.cmp.value = &s.val;
        s.filter.expr_case = CIRRUS__V1__FILTER__EXPR_CMP;
        s.filter.cmp = &s.cmp;
        s.q.filter = &s.filter;
    } else if (subset) {
        size_t m = json_array_size(q->members);
        s.vals = calloc(m, sizeof *s.vals);
        s.valp = calloc(m, sizeof *s.valp);
        if (!s.vals || !s.valp) {
            free(s.vals);
            free(s.valp);
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < m; i++) {
            cirrus__v1__attr_value__init(&s.vals[i]);
            s.vals[i].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
            s.vals[i].s = (char *)json_string_value(json_array_get(q->members, i));
            s.valp[i] = &s.vals[i];
        }
        cirrus__v1__filter__init(&s.filter);
        cirrus__v1__in_set__init(&s.in);
        s.in.attr = "name";
        s.in.values = s.valp;
        s.in.n_values = m;
        s.filter.expr_case = CIRRUS__V1__FILTER__EXPR_IN;
        s.filter.in = &s.in;
        s.q.filter = &s.filter;
        s.q.k = (uint32_t)m + 1;
    }
    s.sr.query = &s.q;
    s.req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    s.req.search = &s.sr;
    s.req.deadline_ms = r->p->timeout_ms;
    rc = cirrus_client_send(r->c, &s.req, id);
    free(s.vals);
    free(s.valp);
    return rc;
}

static int is_member(const json_t *members, const char *id)
{
    size_t i;
    const json_t *x;
    json_array_foreach(members, i, x) {
        if (strcmp(json_string_value(x), id) == 0)
            return 1;
    }
    return 0;
}

static int is_number(const char *s)
{
    size_t n = strspn(s, "0123456789");
    return n > 0 && n < 19 && s[n] == '\0';
}

/* Appends id to a ranking of at most `max`. */
static cr_err rank_add(char ***list, size_t *n, size_t max, const char *id)
{
    if (!*list && !(*list = calloc(max, sizeof **list)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (*n >= max)
        return CR_OK;
    if (!((*list)[*n] = strdup(id)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    (*n)++;
    return CR_OK;
}

static void job_failed(run *r, size_t job, const char *msg)
{
    int per = r->p->dataset == CIRRUS_EVAL_RUN_CIRR ? 2 : 1;
    query *q = &r->qs[job / (size_t)per];
    if (job % (size_t)per) {
        q->subset_failed = 1;
        return;
    }
    q->failed = 1;
    r->rep->n_failed++;
    if (strstr(msg, "not found") && strstr(msg, q->ref))
        r->rep->n_missing_reference++;
    if (r->p->dataset == CIRRUS_EVAL_RUN_FASHIONIQ)
        item_problem(r, "%s query %lld (reference %s): %s", fiq_cats[q->cat], q->num, q->ref,
                     msg);
    else
        item_problem(r, "query %lld (reference %s): %s", q->num, q->ref, msg);
}

static cr_err job_done(run *r, size_t job, const Cirrus__V1__Response *resp)
{
    int per = r->p->dataset == CIRRUS_EVAL_RUN_CIRR ? 2 : 1, subset = (int)(job % (size_t)per);
    query *q = &r->qs[job / (size_t)per];
    const Cirrus__V1__SearchResult *res = resp->search;
    cr_err rc;

    if (cirrus_response_error(resp)) {
        job_failed(r, job, cr_error_message());
        return CR_OK;
    }
    if (!res) {
        job_failed(r, job, "reply without a search result");
        return CR_OK;
    }
    for (size_t i = 0; i < res->n_hits; i++) {
        const char *id = res->hits[i]->id;
        if (!id)
            continue;
        if (subset) {
            if (strcmp(id, q->ref) == 0 || !is_member(q->members, id))
                continue;
            rc = rank_add(&q->subset, &q->n_subset, CIRRUS_EVAL_CIRR_NSUBSET, id);
        } else {
            if (r->p->dataset == CIRRUS_EVAL_RUN_CIRR && strcmp(id, q->ref) == 0)
                continue;
            if (r->p->dataset == CIRRUS_EVAL_RUN_CIRCO && !is_number(id))
                continue; /* not a COCO image of this gallery */
            rc = rank_add(&q->rank, &q->n_rank, (size_t)r->p->k, id);
        }
        if (rc)
            return rc;
    }
    if (res->partial && !subset)
        job_failed(r, job, "partial result (a shard group did not answer)");
    return CR_OK;
}

static int job_needed(const run *r, size_t job)
{
    if (r->p->dataset != CIRRUS_EVAL_RUN_CIRR || job % 2 == 0)
        return 1;
    return r->qs[job / 2].members != NULL;
}

typedef struct slot {
    uint64_t id;
    size_t job;
    int used;
} slot;

static cr_err run_searches(run *r)
{
    size_t per = r->p->dataset == CIRRUS_EVAL_RUN_CIRR ? 2 : 1, n_jobs = r->n_qs * per;
    size_t next = 0, inflight = 0, window = (size_t)r->p->window;
    slot *slots = calloc(window, sizeof *slots);
    int timeouts = 0;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = CR_OK;

    if (!slots)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    prog_begin(r, "queries", r->n_qs);
    while (next < n_jobs || inflight > 0) {
        Cirrus__V1__Response *resp = NULL;
        size_t s;
        while (inflight < window && next < n_jobs) {
            size_t job = next++;
            uint64_t id;
            if (!job_needed(r, job))
                continue;
            if ((rc = job_send(r, job, &id)))
                goto out;
            for (s = 0; slots[s].used; s++)
                ;
            slots[s] = (slot){id, job, 1};
            inflight++;
        }
        if (!inflight)
            break;
        rc = cirrus_client_recv(r->c, r->p->timeout_ms, &resp);
        if (rc == CR_TIMEOUT) {
            char msg[64];
            snprintf(msg, sizeof msg, "no reply within %u ms", (unsigned)r->p->timeout_ms);
            for (s = 0; s < window; s++) {
                if (!slots[s].used)
                    continue;
                job_failed(r, slots[s].job, msg);
                if (slots[s].job % per == 0)
                    prog_add(r, 1);
                slots[s].used = 0;
            }
            inflight = 0;
            if (++timeouts >= 3) {
                rc = cr_error_set(CR_ERR_UNAVAILABLE, "the endpoint stopped answering (%d "
                                  "windows of %u ms without a reply)", timeouts,
                                  (unsigned)r->p->timeout_ms);
                goto out;
            }
            rc = CR_OK;
            continue;
        }
        if (rc)
            goto out;
        timeouts = 0;
        for (s = 0; s < window && !(slots[s].used && slots[s].id == resp->id); s++)
            ;
        if (s == window) { /* a late reply to a request already given up on */
            cirrus_response_free(resp);
            continue;
        }
        rc = job_done(r, slots[s].job, resp);
        cirrus_response_free(resp);
        if (slots[s].job % per == 0)
            prog_add(r, 1);
        slots[s].used = 0;
        inflight--;
        if (rc)
            goto out;
    }
out:
    prog_end(r);
    free(slots);
    r->rep->seconds_search = (double)(cr_clock_mono_us() - t0) / 1e6;
    return rc;
}

/* CIRR: subset rankings the filtered search could not give come from the top-k list. */
static cr_err cirr_subset_fallback(run *r)
{
    for (size_t i = 0; i < r->n_qs; i++) {
        query *q = &r->qs[i];
        if (!q->members || q->failed || !q->subset_failed)
            continue;
        r->rep->n_subset_fallback++;
        for (size_t j = 0; j < q->n_rank; j++) {
            cr_err rc;
            if (!is_member(q->members, q->rank[j]))
                continue;
            if ((rc = rank_add(&q->subset, &q->n_subset, CIRRUS_EVAL_CIRR_NSUBSET, q->rank[j])))
                return rc;
        }
    }
    if (r->rep->n_subset_fallback)
        fprintf(r->log, "eval run: %zu subset rankings taken from the top-%d lists (the filtered "
                "search failed; index the gallery with --index-catalog so that items carry "
                "the attribute `name`)\n", r->rep->n_subset_fallback, r->p->k);
    return CR_OK;
}

/* ---- output --------------------------------------------------------------------------- */

static json_t *names_json(char **names, size_t n, int as_int)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, as_int ? json_integer(strtoll(names[i], NULL, 10))
                                        : json_string(names[i]));
    return a;
}

static cr_err dump(json_t *j, const char *path)
{
    cr_err rc = CR_OK;
    if (!j)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (json_dump_file(j, path, JSON_COMPACT | JSON_REAL_PRECISION(17)) != 0)
        rc = cr_error_set(CR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    json_decref(j);
    return rc;
}

static cr_err write_predictions(run *r)
{
    cirrus_eval_run_report *rep = r->rep;
    const char *out = r->p->out_dir, *name = cirrus_eval_run_dataset_name(r->p->dataset);
    cr_err rc;

    if (r->p->dataset == CIRRUS_EVAL_RUN_FASHIONIQ) {
        FILE *f;
        if ((rc = path_fmt(rep->predictions, "%s/%s_%s.jsonl", out, name, rep->split)))
            return rc;
        if (!(f = fopen(rep->predictions, "w")))
            return cr_error_set(CR_ERR_IO, "%s: cannot write: %s", rep->predictions,
                                strerror(errno));
        for (size_t i = 0; i < r->n_qs; i++) {
            const query *q = &r->qs[i];
            json_t *o = json_object();
            char *s;
            json_object_set_new(o, "category", json_string(fiq_cats[q->cat]));
            json_object_set_new(o, "candidate", json_string(q->ref));
            if (q->target)
                json_object_set_new(o, "target", json_string(q->target));
            json_object_set_new(o, "ranking", names_json(q->rank, q->n_rank, 0));
            s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            if (!s) {
                fclose(f);
                return cr_error_set(CR_ERR_NOMEM, "out of memory");
            }
            fprintf(f, "%s\n", s);
            free(s);
        }
        if (fclose(f) != 0)
            return cr_error_set(CR_ERR_IO, "%s: cannot write: %s", rep->predictions,
                                strerror(errno));
        return CR_OK;
    }
    if (r->p->dataset == CIRRUS_EVAL_RUN_CIRCO) {
        json_t *o = json_object();
        if ((rc = path_fmt(rep->predictions, "%s/%s_%s.json", out, name, rep->split))) {
            json_decref(o);
            return rc;
        }
        for (size_t i = 0; o && i < r->n_qs; i++) {
            char key[32];
            snprintf(key, sizeof key, "%lld", r->qs[i].num);
            json_object_set_new(o, key, names_json(r->qs[i].rank, r->qs[i].n_rank, 1));
        }
        return dump(o, rep->predictions);
    }
    /* CIRR: the recall file and the recall_subset file. */
    for (int subset = 0; subset < 2; subset++) {
        json_t *o = json_pack("{s:s, s:s}", "version", "rc2", "metric",
                              subset ? "recall_subset" : "recall");
        char *path = subset ? rep->subset_predictions : rep->predictions;
        if (subset && !r->has_members) {
            json_decref(o);
            break;
        }
        if ((rc = path_fmt(path, subset ? "%s/%s_%s_subset.json" : "%s/%s_%s.json", out, name,
                           rep->split))) {
            json_decref(o);
            return rc;
        }
        for (size_t i = 0; o && i < r->n_qs; i++) {
            char key[32];
            snprintf(key, sizeof key, "%lld", r->qs[i].num);
            json_object_set_new(o, key, subset ? names_json(r->qs[i].subset, r->qs[i].n_subset, 0)
                                               : names_json(r->qs[i].rank, r->qs[i].n_rank, 0));
        }
        if ((rc = dump(o, path)))
            return rc;
    }
    return CR_OK;
}

static cr_err compute_metrics(run *r)
{
    cirrus_eval_run_report *rep = r->rep;
    cr_err rc;
    if (!r->has_gt)
        return CR_OK;
    switch (r->p->dataset) {
    case CIRRUS_EVAL_RUN_CIRCO:
        rc = cirrus_eval_circo_compute(r->ann_path, rep->predictions, &rep->circo);
        break;
    case CIRRUS_EVAL_RUN_FASHIONIQ:
        rc = cirrus_eval_fiq_compute(rep->predictions, &rep->fiq);
        break;
    default:
        rc = cirrus_eval_cirr_compute(r->ann_path, rep->predictions,
                                      rep->subset_predictions[0] ? rep->subset_predictions : NULL,
                                      &rep->cirr);
        break;
    }
    if (rc)
        return cr_error_wrap(rc, "metrics");
    rep->has_metrics = 1;
    if ((rc = path_fmt(rep->metrics_path, "%s/%s_%s_metrics.json", r->p->out_dir,
                       cirrus_eval_run_dataset_name(r->p->dataset), rep->split)))
        return rc;
    return dump(cirrus_eval_run_json(rep), rep->metrics_path);
}

/* ---- public --------------------------------------------------------------------------- */

cirrus_eval_run_params cirrus_eval_run_default_params(void)
{
    cirrus_eval_run_params p;
    memset(&p, 0, sizeof p);
    p.split = "val";
    p.out_dir = ".";
    p.k = 50;
    p.batch = 16;
    p.window = 16;
    p.timeout_ms = 30000;
    return p;
}

cr_err cirrus_eval_run_dataset_parse(const char *name, cirrus_eval_run_dataset *out)
{
    if (strcmp(name, "circo") == 0)
        *out = CIRRUS_EVAL_RUN_CIRCO;
    else if (strcmp(name, "fashioniq") == 0 || strcmp(name, "fiq") == 0)
        *out = CIRRUS_EVAL_RUN_FASHIONIQ;
    else if (strcmp(name, "cirr") == 0)
        *out = CIRRUS_EVAL_RUN_CIRR;
    else
        return cr_error_set(CR_ERR_INVALID, "unknown dataset '%s' (circo, fashioniq, cirr)",
                            name);
    return CR_OK;
}

const char *cirrus_eval_run_dataset_name(cirrus_eval_run_dataset d)
{
    return d == CIRRUS_EVAL_RUN_CIRCO ? "circo" : d == CIRRUS_EVAL_RUN_FASHIONIQ ? "fashioniq"
                                                                                  : "cirr";
}

static cr_err check_params(const cirrus_eval_run_params *p, cirrus_eval_run_report *rep)
{
    const char *split = p->split ? p->split : "val";
    if (!p->root || !p->root[0])
        return cr_error_set(CR_ERR_INVALID, "no dataset root given");
    if (!is_dir(p->root))
        return cr_error_set(CR_ERR_IO, "%s: no such directory (the dataset root)", p->root);
    if (p->k < 1 || p->k > 999 || p->batch < 1 || p->batch > 256 || p->window < 1 ||
        p->window > CIRRUS_EVAL_RUN_MAX_WINDOW || !p->out_dir || p->timeout_ms == 0)
        return cr_error_set(CR_ERR_INVALID, "bad parameters (k 1..999, batch 1..256, window "
                            "1..%d, out_dir and timeout required)", CIRRUS_EVAL_RUN_MAX_WINDOW);
    if (strcmp(split, "val") && strcmp(split, "test") && strcmp(split, "train") &&
        strcmp(split, "test1"))
        return cr_error_set(CR_ERR_INVALID, "unknown split '%s' (val, test, train)", split);
    if (p->dataset == CIRRUS_EVAL_RUN_CIRR && strcmp(split, "test") == 0)
        split = "test1";
    if (p->dataset != CIRRUS_EVAL_RUN_CIRR && strcmp(split, "test1") == 0)
        split = "test";
    if (p->dataset == CIRRUS_EVAL_RUN_CIRCO && strcmp(split, "train") == 0)
        return cr_error_set(CR_ERR_INVALID, "CIRCO has no train split (val, test)");
    snprintf(rep->split, sizeof rep->split, "%s", split);
    return CR_OK;
}

/* The endpoint answers at all (so that a wrong address fails fast and clearly). */
static cr_err ping(run *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    uint32_t t = r->p->timeout_ms < 5000 ? r->p->timeout_ms : 5000;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    rc = cirrus_client_call(r->c, &req, t, &resp);
    if (rc == CR_TIMEOUT)
        return cr_error_set(CR_ERR_UNAVAILABLE, "the endpoint did not answer a health check "
                            "within %u ms", (unsigned)t);
    cirrus_response_free(resp);
    return rc;
}

cr_err cirrus_eval_run_execute(cirrus_client *c, const cirrus_eval_run_params *p,
                               cirrus_eval_run_report *out)
{
    run r;
    cr_err rc;

    memset(out, 0, sizeof *out);
    memset(&r, 0, sizeof r);
    out->dataset = p->dataset;
    r.p = p;
    r.c = c;
    r.rep = out;
    r.log = p->log ? p->log : stderr;
    if ((rc = check_params(p, out)))
        goto done;
    switch (p->dataset) {
    case CIRRUS_EVAL_RUN_CIRCO: rc = circo_read(&r); break;
    case CIRRUS_EVAL_RUN_FASHIONIQ: rc = fiq_read(&r); break;
    case CIRRUS_EVAL_RUN_CIRR: rc = cirr_read(&r); break;
    default: rc = cr_error_set(CR_ERR_INVALID, "unknown dataset %d", (int)p->dataset); break;
    }
    if (rc)
        goto done;
    out->n_queries = r.n_qs;
    if ((rc = mkdir_p(p->out_dir)) || (rc = ping(&r)))
        goto done;
    if (p->index_catalog && (rc = index_gallery(&r)))
        goto done;
    if ((rc = run_searches(&r)))
        goto done;
    if (p->dataset == CIRRUS_EVAL_RUN_CIRR && (rc = cirr_subset_fallback(&r)))
        goto done;
    if ((rc = write_predictions(&r)))
        goto done;
    rc = compute_metrics(&r);
done:
    for (size_t i = 0; i < r.n_imgs; i++) {
        free(r.imgs[i].id);
        free(r.imgs[i].path);
    }
    free(r.imgs);
    for (size_t i = 0; i < r.n_qs; i++) {
        query *q = &r.qs[i];
        for (size_t j = 0; j < q->n_rank; j++)
            free(q->rank[j]);
        for (size_t j = 0; j < q->n_subset; j++)
            free(q->subset[j]);
        free(q->rank);
        free(q->subset);
        free(q->ref);
        free(q->caption);
        free(q->caption2);
        free(q->target);
    }
    free(r.qs);
    for (int i = 0; i < CIRRUS_EVAL_FIQ_NCATS; i++)
        json_decref(r.ann[i]);
    return rc;
}

json_t *cirrus_eval_run_json(const cirrus_eval_run_report *r)
{
    json_t *o = json_object(), *files = json_object(), *secs = json_object(), *m = NULL;
    if (!o || !files || !secs) {
        json_decref(o);
        json_decref(files);
        json_decref(secs);
        return NULL;
    }
    json_object_set_new(o, "dataset", json_string(cirrus_eval_run_dataset_name(r->dataset)));
    json_object_set_new(o, "split", json_string(r->split));
    json_object_set_new(o, "queries", json_integer((json_int_t)r->n_queries));
    json_object_set_new(o, "failed", json_integer((json_int_t)r->n_failed));
    json_object_set_new(o, "missing_reference", json_integer((json_int_t)r->n_missing_reference));
    json_object_set_new(o, "images", json_integer((json_int_t)r->n_images));
    json_object_set_new(o, "indexed", json_integer((json_int_t)r->n_indexed));
    json_object_set_new(o, "index_failed", json_integer((json_int_t)r->n_index_failed));
    if (r->dataset == CIRRUS_EVAL_RUN_CIRR)
        json_object_set_new(o, "subset_fallback", json_integer((json_int_t)r->n_subset_fallback));
    if (r->predictions[0])
        json_object_set_new(files, "predictions", json_string(r->predictions));
    if (r->subset_predictions[0])
        json_object_set_new(files, "subset_predictions", json_string(r->subset_predictions));
    if (r->metrics_path[0])
        json_object_set_new(files, "metrics", json_string(r->metrics_path));
    json_object_set_new(o, "files", files);
    if (r->has_metrics) {
        if (r->dataset == CIRRUS_EVAL_RUN_CIRCO)
            m = cirrus_eval_circo_json(&r->circo);
        else if (r->dataset == CIRRUS_EVAL_RUN_FASHIONIQ)
            m = cirrus_eval_fiq_json(&r->fiq);
        else
            m = cirrus_eval_cirr_json(&r->cirr);
        json_object_set_new(o, "metrics", m ? m : json_null());
    }
    json_object_set_new(secs, "index", json_real(r->seconds_index));
    json_object_set_new(secs, "search", json_real(r->seconds_search));
    json_object_set_new(o, "seconds", secs);
    return o;
}

void cirrus_eval_run_print(FILE *out, const cirrus_eval_run_report *r)
{
    fprintf(out, "%s %s: %zu queries", cirrus_eval_run_dataset_name(r->dataset), r->split,
            r->n_queries);
    if (r->n_failed)
        fprintf(out, ", %zu FAILED (%zu with the reference not in the catalog)", r->n_failed,
                r->n_missing_reference);
    fprintf(out, " in %.1f s\n", r->seconds_search);
    if (r->n_images)
        fprintf(out, "gallery: %zu of %zu images indexed%s in %.1f s\n", r->n_indexed,
                r->n_images, r->n_index_failed ? " (some FAILED)" : "", r->seconds_index);
    if (r->predictions[0])
        fprintf(out, "predictions: %s\n", r->predictions);
    if (r->subset_predictions[0])
        fprintf(out, "subset predictions: %s\n", r->subset_predictions);
    if (!r->has_metrics) {
        fprintf(out, "no ground truth in this split: submit the predictions to the benchmark's "
                     "evaluation server\n");
        return;
    }
    fprintf(out, "metrics: %s\n\n", r->metrics_path);
    if (r->dataset == CIRRUS_EVAL_RUN_CIRCO)
        cirrus_eval_circo_print(out, &r->circo);
    else if (r->dataset == CIRRUS_EVAL_RUN_FASHIONIQ)
        cirrus_eval_fiq_print(out, &r->fiq);
    else
        cirrus_eval_cirr_print(out, &r->cirr);
}
