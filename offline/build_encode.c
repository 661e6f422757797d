/* build_encode.c — a catalog build: the images of a JSONL catalog encoded in-process (the
 * encoder's own service, batched, raw vectors as the encoder server gives them), in catalog
 * order, into a spill (OUT/.build/encoded[-G].fvecs + .jsonl: one row per line of the groups
 * built, bad lines as error records) that the write stage then reads like any vector input.
 * The encode stage resumes from its own progress record (encode[-G].json, written after the
 * spill is synced), truncating the spill to it. */
#include "offline/build_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "encoder/image.h"
#include "encoder/server.h"
#include "offline/train.h"

#define ENC_BATCH 8 /* images per forward pass */

typedef struct enc_entry {
    char *id;
    uint64_t line;
    uint8_t *image;
    size_t image_len;
    json_t *attrs; /* the catalog's "attributes" value, or NULL */
    char *why;     /* a bad line: why (no image) */
    size_t slot;   /* its vector in build_encoder.out, when good */
} enc_entry;

/* Images waiting for one forward pass. Each group has its own, cut only when full or at a
 * checkpoint (every `checkpoint` catalog lines): so a group's batches — and with them the
 * floating-point rounding of its vectors — are the same whether the build is resumed, builds
 * every group or only this one. */
typedef struct enc_batch {
    enc_entry e[ENC_BATCH];
    size_t n;
} enc_batch;

typedef struct build_encoder {
    enc_service *svc;
    FILE *cat;
    FILE *vec, *side; /* the spill being written */
    char vec_path[OFFLINE_PATH_MAX], side_path[OFFLINE_PATH_MAX], state_path[OFFLINE_PATH_MAX];
    enc_batch *batches; /* one per group built; [0] for the training sample */
    int n_batches;
    float *out; /* ENC_BATCH x dim */
    float *zero;
    uint64_t rows, side_bytes;
} build_encoder;

static void entry_clear(enc_entry *e)
{
    free(e->id);
    free(e->image);
    json_decref(e->attrs);
    free(e->why);
    memset(e, 0, sizeof *e);
}

/* ---- open / close -------------------------------------------------------------------------- */

static cr_err count_lines(FILE *f, uint64_t *n)
{
    char buf[65536];
    size_t got;
    int last = '\n';
    *n = 0;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++)
            *n += buf[i] == '\n';
        last = buf[got - 1];
    }
    *n += last != '\n';
    rewind(f);
    return ferror(f) ? cr_error_set(CR_ERR_IO, "catalog: read error") : CR_OK;
}

cr_err build_encode_open(build_run *b)
{
    const offline_build_opts *o = b->o;
    enc_service_opts eo = enc_service_default_opts();
    build_encoder *e = calloc(1, sizeof *e);
    const char *sfx = o->group >= 0 ? "-" : "";
    char gs[16] = "";
    cr_err rc;
    if (!e)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    b->enc = e;
    if (o->group >= 0)
        snprintf(gs, sizeof gs, "%d", o->group);
    snprintf(e->vec_path, sizeof e->vec_path, "%s/encoded%s%s.fvecs", b->build_dir, sfx, gs);
    snprintf(e->side_path, sizeof e->side_path, "%s/encoded%s%s.jsonl", b->build_dir, sfx, gs);
    snprintf(e->state_path, sizeof e->state_path, "%s/encode%s%s.json", b->build_dir, sfx, gs);
    if (!(e->cat = fopen(o->catalog, "rb")))
        return cr_error_set(CR_ERR_IO, "cannot open %s: %s", o->catalog, strerror(errno));
    if ((rc = count_lines(e->cat, &b->records)))
        return rc;
    eo.model = o->model;
    eo.phi = o->phi;
    eo.threads = o->threads;
    eo.max_batch = ENC_BATCH;
    eo.batch_wait_ms = 0;
    if (o->preprocess && (rc = enc_preprocess_parse(o->preprocess, &eo.preprocess)))
        return rc;
    if ((rc = enc_service_open(&e->svc, &eo)))
        return cr_error_wrap(rc, "model %s", o->model);
    b->dim = enc_service_embed_dim(e->svc);
    e->n_batches = o->group >= 0 ? 1 : o->groups;
    e->batches = calloc((size_t)e->n_batches, sizeof *e->batches);
    e->out = malloc(ENC_BATCH * (size_t)b->dim * sizeof *e->out);
    e->zero = calloc((size_t)b->dim, sizeof *e->zero);
    if (!e->batches || !e->out || !e->zero)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}

void build_encode_close(build_run *b)
{
    build_encoder *e = b->enc;
    if (!e)
        return;
    for (int g = 0; e->batches && g < e->n_batches; g++)
        for (size_t i = 0; i < ENC_BATCH; i++)
            entry_clear(&e->batches[g].e[i]);
    free(e->batches);
    if (e->cat)
        fclose(e->cat);
    if (e->vec)
        fclose(e->vec);
    if (e->side)
        fclose(e->side);
    enc_service_close(&e->svc);
    free(e->out);
    free(e->zero);
    free(e);
    b->enc = NULL;
}

/* ---- catalog lines ------------------------------------------------------------------------- */

/* One catalog line into *en: its id, image bytes and attributes, or why it is bad. */
static void parse_line(const build_run *b, const char *text, size_t len, uint64_t lineno,
                       enc_entry *en)
{
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err), *id, *img;
    char path[OFFLINE_PATH_MAX], why[512] = "";
    memset(en, 0, sizeof *en);
    en->line = lineno;
    id = json_object_get(j, "id");
    img = json_object_get(j, "image");
    en->id = strdup(json_is_string(id) ? json_string_value(id) : "");
    if (!j)
        snprintf(why, sizeof why, "bad JSON: %s", err.text);
    else if (!json_is_string(id) || !json_is_string(img))
        snprintf(why, sizeof why, "needs string fields \"id\" and \"image\"");
    else if (strstr(json_string_value(img), ".."))
        snprintf(why, sizeof why, "image path may not contain '..'");
    else if (snprintf(path, sizeof path, "%s/%s", b->o->images, json_string_value(img)) >=
             (int)sizeof path)
        snprintf(why, sizeof why, "image path too long");
    else if (cr_file_read(path, &en->image, &en->image_len))
        snprintf(why, sizeof why, "%s", cr_error_message());
    if (why[0])
        en->why = strdup(why);
    else if ((en->attrs = json_object_get(j, "attributes")))
        json_incref(en->attrs);
    json_decref(j);
}

static int blank(const char *s, ssize_t len)
{
    return strspn(s, " \t\r\n") == (size_t)len;
}

/* Encodes the batch's good images into e->out[slot] (bad ones get `why`): one forward pass,
 * or one image at a time when the pass fails, so that only the bad ones are left out. Only a
 * failure of the machinery (memory, the model) is returned. */
static cr_err encode_batch(build_run *b, enc_batch *bt)
{
    build_encoder *e = b->enc;
    enc_blob blobs[ENC_BATCH];
    size_t idx[ENC_BATCH], n = 0;
    cr_err rc;
    for (size_t i = 0; i < bt->n; i++)
        if (!bt->e[i].why) {
            blobs[n] = (enc_blob){bt->e[i].image, bt->e[i].image_len};
            bt->e[i].slot = n;
            idx[n++] = i;
        }
    if (n == 0 || !enc_service_embed_images(e->svc, blobs, n, ENC_SERVICE_PREPROCESS_DEFAULT, 0,
                                            e->out))
        return CR_OK;
    for (size_t k = 0; k < n; k++) {
        rc = enc_service_embed_images(e->svc, &blobs[k], 1, ENC_SERVICE_PREPROCESS_DEFAULT, 0,
                                      e->out + k * (size_t)b->dim);
        if (rc == CR_ERR_NOMEM || rc == CR_ERR_MODEL || rc == CR_ERR_INTERNAL)
            return rc;
        if (rc && !(bt->e[idx[k]].why = strdup(cr_error_message())))
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    return CR_OK;
}

static void batch_clear(enc_batch *bt)
{
    for (size_t i = 0; i < bt->n; i++)
        entry_clear(&bt->e[i]);
    bt->n = 0;
}

/* ---- the training sample ------------------------------------------------------------------- */

/* The sample batch's good vectors appended to x. */
static cr_err sample_flush(build_run *b, float *x, uint64_t *got)
{
    enc_batch *bt = &b->enc->batches[0];
    cr_err rc = encode_batch(b, bt);
    for (size_t i = 0; !rc && i < bt->n; i++)
        if (!bt->e[i].why)
            memcpy(x + (*got)++ * (size_t)b->dim, b->enc->out + bt->e[i].slot * (size_t)b->dim,
                   (size_t)b->dim * sizeof *x);
    batch_clear(bt);
    return rc;
}

cr_err build_encode_sample(build_run *b, uint64_t want, float *x, uint64_t *got)
{
    build_encoder *e = b->enc;
    enc_batch *bt = &e->batches[0];
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t next = 0, k = 0;
    cr_err rc = CR_OK;
    *got = 0;
    rewind(e->cat);
    while (!rc && next < want && (len = getline(&line, &cap, e->cat)) > 0) {
        if (k++ != offline_train_pick(next, b->records, want))
            continue;
        next++;
        build_stage_advance(b, 1);
        if (blank(line, len))
            continue;
        parse_line(b, line, (size_t)len, k, &bt->e[bt->n++]);
        if (bt->n == ENC_BATCH)
            rc = sample_flush(b, x, got);
    }
    if (!rc && bt->n)
        rc = sample_flush(b, x, got);
    batch_clear(bt);
    free(line);
    return rc;
}

/* ---- the encode stage ---------------------------------------------------------------------- */

typedef struct enc_state {
    uint64_t next;       /* catalog lines consumed */
    uint64_t offset;     /* catalog byte offset there */
    uint64_t rows;       /* spill rows */
    uint64_t side_bytes; /* spill .jsonl length */
    int done;
} enc_state;

static cr_err state_load(const char *path, enc_state *st)
{
    offline_group_state g;
    /* The same file shape as a group's progress record: next, side_offset, stored, errors. */
    cr_err rc = offline_state_load(path, &g);
    memset(st, 0, sizeof *st);
    if (rc == CR_OK) {
        st->next = g.next;
        st->offset = g.side_offset;
        st->rows = g.stored;
        st->side_bytes = g.errors_bytes;
        st->done = g.done;
    }
    return rc < 0 ? rc : CR_OK;
}

static cr_err state_save(const char *path, const enc_state *st)
{
    offline_group_state g = {.next = st->next, .side_offset = st->offset, .stored = st->rows,
                             .errors_bytes = st->side_bytes, .done = st->done};
    return offline_state_save(path, &g);
}

/* The spill as of the progress record: anything after it is written again. */
static cr_err spill_open(build_run *b, const enc_state *st)
{
    build_encoder *e = b->enc;
    off_t vbytes = (off_t)(st->rows * (4 + 4 * (uint64_t)b->dim));
    if ((access(e->vec_path, F_OK) == 0 && truncate(e->vec_path, vbytes)) ||
        (access(e->side_path, F_OK) == 0 && truncate(e->side_path, (off_t)st->side_bytes)))
        return cr_error_set(CR_ERR_IO, "spill: %s", strerror(errno));
    e->vec = fopen(e->vec_path, "ab");
    e->side = fopen(e->side_path, "ab");
    if (!e->vec || !e->side)
        return cr_error_set(CR_ERR_IO, "spill %s: %s", e->vec_path, strerror(errno));
    e->rows = st->rows;
    e->side_bytes = st->side_bytes;
    if (fseeko(e->cat, (off_t)st->offset, SEEK_SET) != 0)
        return cr_error_set(CR_ERR_IO, "%s: cannot seek", b->o->catalog);
    return CR_OK;
}

/* One spill row: the vector (zeros for a bad line) and its record. */
static cr_err spill_put(build_run *b, const enc_entry *en)
{
    build_encoder *e = b->enc;
    int32_t d = b->dim;
    const float *v = en->why ? e->zero : e->out + en->slot * (size_t)b->dim;
    json_t *j = json_pack("{sssI}", "id", en->id ? en->id : "", "line", (json_int_t)en->line);
    char *text;
    int ok;
    if (!j)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (en->why)
        json_object_set_new(j, "error", json_string(en->why));
    else if (en->attrs)
        json_object_set(j, "attributes", en->attrs);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    ok = fwrite(&d, 4, 1, e->vec) == 1 && fwrite(v, 4, (size_t)d, e->vec) == (size_t)d &&
         fprintf(e->side, "%s\n", text) >= 0;
    e->side_bytes += strlen(text) + 1;
    free(text);
    e->rows++;
    return ok ? CR_OK : cr_error_set(CR_ERR_IO, "spill: %s", strerror(errno));
}

static cr_err batch_flush(build_run *b, enc_batch *bt, uint64_t *failed)
{
    cr_err rc = encode_batch(b, bt);
    for (size_t i = 0; !rc && i < bt->n; i++) {
        *failed += bt->e[i].why != NULL;
        rc = spill_put(b, &bt->e[i]);
    }
    batch_clear(bt);
    return rc;
}

static cr_err checkpoint(build_run *b, enc_state *st, uint64_t *failed)
{
    build_encoder *e = b->enc;
    cr_err rc = CR_OK;
    for (int g = 0; !rc && g < e->n_batches; g++)
        rc = batch_flush(b, &e->batches[g], failed);
    if (rc)
        return rc;
    if (fflush(e->vec) || fsync(fileno(e->vec)) || fflush(e->side) || fsync(fileno(e->side)))
        return cr_error_set(CR_ERR_IO, "spill: %s", strerror(errno));
    st->rows = e->rows;
    st->side_bytes = e->side_bytes;
    st->offset = (uint64_t)ftello(e->cat);
    rc = state_save(e->state_path, st);
    if (!rc)
        build_fault_point(b);
    return rc;
}

/* The batch of catalog line `id`'s group, or NULL when this build does not keep it. */
static enc_batch *batch_of(const build_run *b, const char *id)
{
    int g = coord_placement_group(b->placement, id, b->o->groups);
    if (b->o->group >= 0)
        return g == b->o->group ? &b->enc->batches[0] : NULL;
    return &b->enc->batches[g];
}

static cr_err encode_lines(build_run *b, enc_state *st, offline_stage_report *r)
{
    build_encoder *e = b->enc;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    cr_err rc = CR_OK;
    while (!rc && (len = getline(&line, &cap, e->cat)) > 0) {
        enc_entry en;
        enc_batch *bt;
        st->next++;
        r->items++;
        build_stage_advance(b, 1);
        if (!blank(line, len)) {
            parse_line(b, line, (size_t)len, st->next, &en);
            if ((bt = batch_of(b, en.id))) {
                bt->e[bt->n++] = en;
                if (bt->n == ENC_BATCH)
                    rc = batch_flush(b, bt, &r->failed);
            } else {
                entry_clear(&en);
            }
        }
        if (!rc && st->next % b->o->checkpoint == 0)
            rc = checkpoint(b, st, &r->failed);
    }
    free(line);
    if (!rc && ferror(e->cat))
        rc = cr_error_set(CR_ERR_IO, "%s: read error", b->o->catalog);
    if (!rc) {
        st->done = 1;
        rc = checkpoint(b, st, &r->failed);
    }
    return rc;
}

cr_err build_encode_stage(build_run *b)
{
    build_encoder *e = b->enc;
    offline_stage_report r = {.stage = "encode"};
    uint64_t t0 = cr_clock_mono_us();
    enc_state st;
    cr_err rc = state_load(e->state_path, &st);
    if (!rc && !st.done) {
        r.resumed_at = st.next;
        build_stage_begin(b, "encode", b->records - st.next);
        rc = spill_open(b, &st);
        if (!rc)
            rc = encode_lines(b, &st, &r);
        if (e->vec)
            fclose(e->vec);
        if (e->side)
            fclose(e->side);
        e->vec = e->side = NULL;
    } else {
        r.skipped = 1;
    }
    if (rc)
        return rc;
    build_stage_end(b, &r, t0);
    enc_service_close(&e->svc); /* the write stage needs the memory more */
    b->records = st.rows;
    if (st.rows == 0)
        return CR_OK; /* nothing for the groups built: b->in stays NULL */
    return offline_input_open(&b->in, e->vec_path, e->side_path, NULL, 1);
}

void build_encode_cleanup(build_run *b)
{
    if (!b->enc)
        return;
    unlink(b->enc->vec_path);
    unlink(b->enc->side_path);
}
