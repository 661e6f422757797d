#include "offline/build_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/attrs_json.h"
#include "offline/vecfile.h"

struct offline_input {
    cr_vecfile *vf;
    FILE *side;
    char *side_path;
    const char *prefix;
    int items_mode;
    uint64_t next;   /* the record offline_input_next returns */
    uint64_t offset; /* side-file offset past the current record */
    char *line;      /* the current record's side line */
    size_t cap;
    ssize_t len;
    json_t *parsed;  /* items mode: the current line */
    char id[320];
};

static cr_err count_lines(FILE *f, const char *path, uint64_t *n)
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
    if (ferror(f))
        return cr_error_set(CR_ERR_IO, "%s: read error", path);
    *n += last != '\n'; /* a last line without its newline */
    rewind(f);
    return CR_OK;
}

cr_err offline_input_open(offline_input **out, const char *vectors, const char *side,
                          const char *prefix, int items_mode)
{
    offline_input *in = calloc(1, sizeof *in);
    uint64_t lines = 0;
    cr_err rc;
    if (!in)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    in->prefix = prefix ? prefix : "";
    in->items_mode = items_mode;
    rc = cr_vecfile_open(&in->vf, vectors);
    if (!rc && cr_vecfile_is_int(in->vf))
        rc = cr_error_set(CR_ERR_INVALID, "%s holds integers, not float vectors", vectors);
    if (!rc && items_mode && !side)
        rc = cr_error_set(CR_ERR_INVALID, "items mode needs a side file");
    if (!rc && side) {
        in->side_path = strdup(side);
        in->side = fopen(side, "rb");
        if (!in->side || !in->side_path)
            rc = cr_error_set(CR_ERR_IO, "cannot open %s", side);
        if (!rc)
            rc = count_lines(in->side, side, &lines);
        if (!rc && lines < cr_vecfile_rows(in->vf))
            rc = cr_error_set(CR_ERR_INVALID, "%s has %llu lines for %zu vectors in %s", side,
                              (unsigned long long)lines, cr_vecfile_rows(in->vf), vectors);
    }
    if (rc) {
        offline_input_close(&in);
        return rc;
    }
    *out = in;
    return CR_OK;
}

void offline_input_close(offline_input **pp)
{
    offline_input *in = pp ? *pp : NULL;
    if (!in)
        return;
    cr_vecfile_close(&in->vf);
    if (in->side)
        fclose(in->side);
    json_decref(in->parsed);
    free(in->side_path);
    free(in->line);
    free(in);
    *pp = NULL;
}

uint64_t offline_input_records(const offline_input *in)
{
    return cr_vecfile_rows(in->vf);
}

int offline_input_dim(const offline_input *in)
{
    return (int)cr_vecfile_dim(in->vf);
}

cr_err offline_input_seek(offline_input *in, uint64_t index, uint64_t side_offset)
{
    if (index > offline_input_records(in))
        return cr_error_set(CR_ERR_INVALID, "resume point %llu past the input's %llu records",
                            (unsigned long long)index,
                            (unsigned long long)offline_input_records(in));
    if (in->side && fseeko(in->side, (off_t)side_offset, SEEK_SET) != 0)
        return cr_error_set(CR_ERR_IO, "%s: cannot seek to %llu", in->side_path,
                            (unsigned long long)side_offset);
    in->next = index;
    in->offset = side_offset;
    return CR_OK;
}

/* Items mode: the id and catalog line of the current side line. */
static cr_err parse_item_line(offline_input *in, offline_record *rec)
{
    json_error_t err;
    json_t *id, *line;
    json_decref(in->parsed);
    in->parsed = json_loadb(in->line, (size_t)in->len, 0, &err);
    id = json_object_get(in->parsed, "id");
    line = json_object_get(in->parsed, "line");
    if (!json_is_string(id) || !json_is_integer(line) || json_integer_value(line) < 1)
        return cr_error_set(CR_ERR_INVALID, "%s line %llu: not an item record", in->side_path,
                            (unsigned long long)rec->index + 1);
    snprintf(in->id, sizeof in->id, "%s", json_string_value(id));
    rec->line = (uint64_t)json_integer_value(line);
    return CR_OK;
}

cr_err offline_input_next(offline_input *in, offline_record *rec)
{
    if (in->next >= offline_input_records(in))
        return CR_NOTFOUND;
    rec->index = in->next++;
    rec->line = rec->index + 1;
    rec->id = in->id;
    if (in->side) {
        in->len = getline(&in->line, &in->cap, in->side);
        if (in->len < 0)
            return cr_error_set(CR_ERR_IO, "%s ends before record %llu", in->side_path,
                                (unsigned long long)rec->index);
        in->offset += (uint64_t)in->len;
    }
    if (in->items_mode)
        return parse_item_line(in, rec);
    snprintf(in->id, sizeof in->id, "%s%llu", in->prefix, (unsigned long long)rec->index);
    return CR_OK;
}

cr_err offline_input_load(offline_input *in, float *vec, Cirrus__V1__Attribute ***attrs,
                          size_t *n_attrs)
{
    json_error_t err;
    json_t *j = NULL;
    const json_t *obj;
    cr_err rc = CR_OK;
    *attrs = NULL;
    *n_attrs = 0;
    cr_vecfile_row_f32(in->vf, (size_t)(in->next - 1), vec);
    if (!in->side)
        return CR_OK;
    if (in->items_mode) {
        obj = json_object_get(in->parsed, "attributes");
    } else {
        if (strspn(in->line, " \t\r\n") == (size_t)in->len)
            return CR_OK; /* an empty line: no attributes */
        j = json_loadb(in->line, (size_t)in->len, 0, &err);
        if (!j)
            return cr_error_set(CR_ERR_INVALID, "bad JSON: %s", err.text);
        obj = j;
    }
    if (in->items_mode && json_is_string(json_object_get(in->parsed, "error")))
        return cr_error_set(CR_ERR_INVALID, "%s",
                            json_string_value(json_object_get(in->parsed, "error")));
    if (obj)
        rc = cr_attrs_from_json(obj, attrs, n_attrs);
    json_decref(j);
    return rc;
}

uint64_t offline_input_offset(const offline_input *in)
{
    return in->offset;
}

void offline_input_row(const offline_input *in, uint64_t index, float *vec)
{
    cr_vecfile_row_f32(in->vf, (size_t)index, vec);
}
