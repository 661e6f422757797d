/* Zero-shot attribute tagging with a CLIP model (CLIP's zero-shot classifier), shared by
 * `cirrus tag` and `cirrus ingest --tag`: each value of an attribute gets a text embedding —
 * one template with '{}' replaced by the value, the normalized mean over several templates
 * (CLIP's prompt ensembling), or learned context vectors in CoOp's layout (tensor `ctx`
 * [n_ctx, text width]: the prompt "X ... X <value>." with the n_ctx placeholders' token
 * embeddings replaced by ctx, as CoOp / KDPL train them) — and an image's probabilities over
 * the values are softmax(100 x cos(image, value)). */
#ifndef CLI_TAGGER_H
#define CLI_TAGGER_H

#include "common/err.h"
#include "encoder/batcher.h"

#define CLI_TAG_MAX_ATTRS 16
#define CLI_TAG_MAX_VALUES 256
#define CLI_TAG_MAX_TEMPLATES 32
#define CLI_TAG_DEFAULT_TEMPLATE "a photo of a {}."

typedef struct cli_tag_attr {
    char *name; /* "color" (owns the split copy of the spec) */
    char *values[CLI_TAG_MAX_VALUES];
    int n;
} cli_tag_attr;

/* "color=red,blue" -> *a (free with cli_tag_attr_clear). CR_ERR_INVALID with a message on a
 * spec without '=', an empty name or value, or more than CLI_TAG_MAX_VALUES values. */
cr_err cli_tag_attr_parse(const char *spec, cli_tag_attr *a);
void cli_tag_attr_clear(cli_tag_attr *a);

typedef struct cli_tagger cli_tagger;

/* Text embeddings of every value of attrs[0..na) (borrowed: they must outlive the tagger),
 * from `templates` (n_templates >= 1, each with '{}' exactly once) or, when ctx_path is not
 * NULL, from the learned context there (templates must then be empty). svc (borrowed)
 * embeds texts and, later, images. Errors: CR_ERR_INVALID (bad template, both kinds of
 * prompt), those of the text tower and of reading ctx_path (named). */
cr_err cli_tagger_open(cli_tagger **out, enc_service *svc, const cli_tag_attr *attrs, int na,
                       const char *const *templates, int n_templates, const char *ctx_path);
void cli_tagger_close(cli_tagger **pp);

/* Values over all attributes (the row length of cli_tagger_probs' output). */
int cli_tagger_total_values(const cli_tagger *t);

/* probs[i * total + off_a + v] = P(value v of attribute a | image i), off_a the number of
 * values of the attributes before a. Errors: those of enc_service_embed_images. */
cr_err cli_tagger_probs(cli_tagger *t, const enc_blob *images, size_t n, double *probs);

/* The most probable value of attribute a in one row of probs; *p gets its probability. */
int cli_tagger_best(const cli_tagger *t, int a, const double *row, double *p);

#endif
