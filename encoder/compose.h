/* compose.h — composition heads: turn (reference image embedding, caption) into one query
 * vector for composed image retrieval.
 *
 *   enc_composer *cmp;
 *   rc = enc_composer_open(&cmp, model, tok, "phi.safetensors", "combiner.safetensors");
 *   enc_compose_input in = {.ref = raw_image_embedding, .caption = "is red",
 *                           .method = ENC_COMPOSE_SEARLE};
 *   rc = enc_composer_run(cmp, &in, 1, out, truncated);     // out: normalized, embed_dim
 *   enc_composer_close(&cmp);
 *
 * Methods:
 *   SEARLE   — SEARLE / iSEARLE textual inversion: phi (Linear, GELU(erf), Linear, GELU,
 *              Linear) maps the raw image embedding to a pseudo-word embedding that replaces
 *              the first `$` (token 259) of "a photo of $ that {caption}" (template
 *              configurable, must contain one `$`); the text tower encodes it; normalized.
 *   COMBINER — CLIP4Cir Combiner on the unnormalized image and text features; normalized.
 *   SUM      — normalize(image + text) on unnormalized features.
 *   TEXT / IMAGE — the caption or the reference alone (baselines), normalized.
 * caption2 (optional): the FashionIQ protocol — "{c1} and {c2}" and "{c2} and {c1}" are each
 * composed and the two normalized results averaged, then normalized again.
 * An empty caption is allowed ("the same as this"); a caption past 77 tokens is truncated
 * and reported in truncated[i].
 *
 * Thread rules: the composer is read-only after open; enc_composer_run may be called from
 * several threads at once (the model's forward passes are).
 */
#ifndef ENC_COMPOSE_H
#define ENC_COMPOSE_H

#include <stddef.h>

#include "common/err.h"
#include "encoder/clip_model.h"
#include "encoder/tokenizer.h"

typedef enum enc_compose_method {
    ENC_COMPOSE_SEARLE = 1,
    ENC_COMPOSE_COMBINER = 2,
    ENC_COMPOSE_SUM = 3,
    ENC_COMPOSE_TEXT = 4,
    ENC_COMPOSE_IMAGE = 5
} enc_compose_method;

#define ENC_COMPOSE_DEFAULT_TEMPLATE "a photo of $ that {}"

typedef struct enc_composer enc_composer;

/* model and tok are borrowed and must outlive the composer. phi_path / combiner_path may be
 * NULL, or name a file that does not exist (logged as a warning): that method is then
 * unavailable (CR_ERR_UNSUPPORTED at run, the message says why). Head shapes are checked
 * against the model (CR_ERR_MODEL naming the file, the tensor and both shapes): phi
 * `layers.{0,3,6}` maps embed_dim -> text width; the Combiner's `text_projection_layer`,
 * `image_projection_layer` take embed_dim, `output_layer` gives embed_dim, `combiner_layer`
 * and `dynamic_scalar.0` take 2 x projection, `dynamic_scalar.3` gives 1. Hidden sizes are
 * read from the file. An unreadable or corrupt head file is an error (CR_ERR_MODEL/IO). */
cr_err enc_composer_open(enc_composer **out, const enc_clip *model, const enc_tokenizer *tok,
                         const char *phi_path, const char *combiner_path);
void enc_composer_close(enc_composer **pp);

/* 1 when the method can run (its head is loaded, or it needs none). */
int enc_composer_has(const enc_composer *c, enc_compose_method m);

/* "searle|combiner|sum|text|image" <-> enum. */
cr_err enc_compose_method_parse(const char *name, enc_compose_method *out);
const char *enc_compose_method_name(enc_compose_method m);

typedef struct enc_compose_input {
    const float *ref;            /* raw (unnormalized) image embedding, embed_dim floats */
    const char *caption;         /* UTF-8; "" allowed (NULL reads as ""); ignored by IMAGE */
    const char *caption2;        /* NULL, or the second FashionIQ caption */
    enc_compose_method method;
    const char *prompt_template; /* SEARLE only. NULL = ENC_COMPOSE_DEFAULT_TEMPLATE; must hold
                                  * exactly one '$' and one "{}" (= caption), else
                                  * CR_ERR_INVALID. The template's '$' token is replaced (also
                                  * when "{}" comes first and the caption holds '$' too). */
} enc_compose_input;

/* Composes n inputs (batched through the text tower) into out[i * embed_dim], L2-normalized.
 * truncated (may be NULL) gets 1 for inputs whose text was cut to 77 tokens. Errors:
 * CR_ERR_UNSUPPORTED (head not loaded), CR_ERR_INVALID (bad method, NULL ref, non-finite ref,
 * bad template, invalid UTF-8; the message names the input), CR_ERR_NOMEM. */
cr_err enc_composer_run(const enc_composer *c, const enc_compose_input *in, size_t n,
                        float *out, int *truncated);

/* The heads alone, batched (n rows). enc_composer_phi: raw image embeddings [n, embed_dim] ->
 * pseudo-word embeddings [n, text_width] (SEARLE's phi). enc_composer_combine: CLIP4Cir
 * combine_features(image [n, embed_dim], text [n, embed_dim]) -> out [n, embed_dim],
 * normalized; inputs unnormalized. CR_ERR_UNSUPPORTED when the head is not loaded. */
cr_err enc_composer_phi(const enc_composer *c, const float *ref, size_t n, float *out);
cr_err enc_composer_combine(const enc_composer *c, const float *image, const float *text,
                            size_t n, float *out);

#endif
