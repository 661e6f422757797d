/* clip_model.h — a CLIP model (ViT or ModifiedResNet image tower + causal text tower) on the
 * CPU.
 *
 *     enc_clip_params p = enc_clip_default_params();
 *     enc_clip *m = NULL;
 *     if (enc_clip_open(&m, "models/ViT-B-32.safetensors", &p) != CR_OK)
 *         fprintf(stderr, "%s\n", cr_error_message());
 *     float *emb = malloc(n * enc_clip_embed_dim(m) * sizeof *emb);
 *     enc_clip_encode_images(m, pixels, n, emb);      // pixels: n x 3 x S x S, normalized
 *     enc_clip_encode_tokens(m, tokens, n, emb);      // tokens: n x context_length
 *     enc_clip_close(&m);
 *
 * A checkpoint with `visual.layer1.0.conv1.weight` (OpenAI names) has CLIP's ResNet image tower
 * (RN50, RN50x4, ...; clip_resnet.h): BatchNorm folded at load, convolutions as GEMMs, the same
 * text tower and entry points.
 *
 * Weights: one .safetensors file (F32, F16 or BF16) with OpenAI/OpenCLIP names
 * (`visual.conv1.weight`, `transformer.resblocks.N...`) or Hugging Face names
 * (`vision_model.encoder.layers.N...`), or a Hugging Face directory holding `model.safetensors`
 * and `config.json`. The naming scheme is detected from the tensor names. Hyper-parameters come
 * from the shapes (widths, layer counts, patch size, image size = sqrt(positions - 1) x patch,
 * embed dim, vocabulary, context length); heads and activation come from the params, else from
 * config.json (`num_attention_heads`, `hidden_act`, `layer_norm_eps`), else default to
 * width / 64 heads and QuickGELU. A config.json next to a Hugging Face-named file is read too
 * (never for OpenAI-named files, which default to QuickGELU; pass ENC_CLIP_ACT_GELU for
 * LAION OpenCLIP models trained with exact GELU).
 *
 * Loading converts every weight once to fp32 in the layout the GEMMs use (Linear weights as
 * [out, in], q/k/v fused into one [3w, w] matrix, projections as [embed, width]) and unmaps the
 * file; resident memory during the load stays near the size of the fp32 weights.
 *
 * Forward passes run every matrix product through OpenBLAS (`cblas_sgemm`); a batch is one
 * GEMM per linear layer over all its tokens (larger batches run as several passes, see
 * ENC_CLIP_CHUNK). Our own loops are single-threaded.
 *
 * Thread rules: after open, the handle is read-only — every forward allocates its own scratch
 * (a few MB per image for ViT-B) — so several threads may encode on one handle at once. The
 * OpenBLAS thread count is process-wide: enc_clip_set_threads() changes it for everyone, and
 * concurrent forwards multiply it (use 1 BLAS thread per worker thread in that case).
 * enc_clip_close() must not race with a forward.
 */
#ifndef ENC_CLIP_MODEL_H
#define ENC_CLIP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "encoder/safetensors.h"

/* Most images / sequences processed in one pass, and most image tokens per pass (bound the
 * per-call scratch: about 2048 x (5 x width + mlp) floats, e.g. 44 MB for ViT-B/32 at 32 images,
 * 75 MB for ViT-L/14 at 7 images). */
#define ENC_CLIP_CHUNK 32
#define ENC_CLIP_CHUNK_ROWS 2048

typedef enum enc_clip_act {
    ENC_CLIP_ACT_AUTO = -1,      /* config.json hidden_act, else QuickGELU */
    ENC_CLIP_ACT_QUICK_GELU = 0, /* x * sigmoid(1.702 x): OpenAI CLIP */
    ENC_CLIP_ACT_GELU = 1        /* exact erf GELU: most LAION OpenCLIP models */
} enc_clip_act;

typedef enum enc_clip_precision {
    ENC_CLIP_FP32 = 0, /* the reference: every product in fp32 */
    /* The transformer blocks' four Linear layers (both towers) in bf16 with fp32 accumulation
     * (gemm_bf16.h, weights packed once at load); LayerNorm, softmax, attention, residuals,
     * patch embedding, projections and ResNet convolutions stay fp32. Needs AVX512_BF16. */
    ENC_CLIP_BF16 = 1
} enc_clip_precision;

/* "fp32" / "bf16" -> *out; CR_ERR_INVALID otherwise. */
cr_err enc_clip_parse_precision(const char *s, enc_clip_precision *out);
const char *enc_clip_precision_name(enc_clip_precision p);

typedef struct enc_clip_params {
    enc_clip_act activation; /* default ENC_CLIP_ACT_AUTO */
    int vision_heads;        /* 0 = config.json, else vision width / 64 */
    int text_heads;          /* 0 = config.json, else text width / 64 */
    float layer_norm_eps;    /* 0 = config.json, else 1e-5 */
    int threads;             /* > 0: OpenBLAS threads set at open (process-wide); 0 = leave */
    enc_clip_precision precision; /* default ENC_CLIP_FP32; BF16 on a CPU without AVX512_BF16
                                     fails the open with CR_ERR_UNSUPPORTED */
} enc_clip_params;

enc_clip_params enc_clip_default_params(void);

typedef struct enc_clip enc_clip;

/* Opens a .safetensors file or a Hugging Face model directory (see top). `params` may be
 * NULL (defaults). Writes *out only on success. CR_ERR_MODEL for missing tensors, wrong shapes,
 * inconsistent hyper-parameters or a corrupt file (the message names the tensor); CR_ERR_IO
 * when the path cannot be read; CR_ERR_UNSUPPORTED for an unknown config.json hidden_act. */
cr_err enc_clip_open(enc_clip **out, const char *path, const enc_clip_params *params);

/* Same from an already open safetensors handle (borrowed; it may be closed afterwards) and an
 * optional config.json path (NULL: none). */
cr_err enc_clip_load(enc_clip **out, const enc_st *st, const char *config_path,
                     const enc_clip_params *params);

/* Frees the model; NULL-safe; sets *pp to NULL. */
void enc_clip_close(enc_clip **pp);

/* Hyper-parameters. */
int enc_clip_embed_dim(const enc_clip *m);
int enc_clip_image_size(const enc_clip *m);
int enc_clip_patch_size(const enc_clip *m);
int enc_clip_vision_width(const enc_clip *m);
int enc_clip_vision_layers(const enc_clip *m);
int enc_clip_vision_heads(const enc_clip *m);
int enc_clip_text_width(const enc_clip *m);
int enc_clip_text_layers(const enc_clip *m);
int enc_clip_text_heads(const enc_clip *m);
int enc_clip_context_length(const enc_clip *m);
int enc_clip_vocab_size(const enc_clip *m);
enc_clip_act enc_clip_activation(const enc_clip *m); /* never AUTO */
/* 1 when the image tower is CLIP's ModifiedResNet (RN50, RN101, RN50x4, RN50x16; see
 * clip_resnet.h): then patch_size is 0, vision_width is the stem's width (64 for RN50),
 * vision_layers the number of Bottleneck blocks, vision_heads the attention pool's heads. */
int enc_clip_is_resnet(const enc_clip *m);
/* Bottleneck blocks of ResNet stage 0..3 (0 for a ViT). */
int enc_clip_resnet_blocks(const enc_clip *m, int stage);
/* Floating-point operations (2 per multiply-add) of one image through the image tower. */
double enc_clip_image_flops(const enc_clip *m);
/* Bytes of fp32 weights held by the handle. */
size_t enc_clip_weight_bytes(const enc_clip *m);

/* Sets the OpenBLAS thread count (process-wide, see the thread rules); n >= 1. */
void enc_clip_set_threads(enc_clip *m, int n);
int enc_clip_threads(const enc_clip *m);
enc_clip_precision enc_clip_get_precision(const enc_clip *m);

/* Image tower. pixels: n x 3 x S x S floats (S = enc_clip_image_size(), already normalized);
 * out: n x embed_dim floats, the projected class token, NOT normalized. n >= 0. */
cr_err enc_clip_encode_images(const enc_clip *m, const float *pixels, int n, float *out);

/* Text tower. tokens: n x context_length ids in [0, vocab); the end-of-text position of each
 * row is the argmax of its ids (as in CLIP) and the tower runs only up to it. out: n x embed_dim,
 * NOT normalized. CR_ERR_INVALID for an id outside the vocabulary. */
cr_err enc_clip_encode_tokens(const enc_clip *m, const int32_t *tokens, int n, float *out);

/* Text tower where, in each row, the token embedding at the FIRST occurrence of `pseudo_id` is
 * replaced by the row's pseudo-word embedding (pseudo: n x text_width), as SEARLE's
 * encode_with_pseudo_tokens does. A row without `pseudo_id` is encoded unchanged. */
cr_err enc_clip_encode_tokens_pseudo(const enc_clip *m, const int32_t *tokens, int n,
                                     const float *pseudo, int32_t pseudo_id, float *out);

/* Text tower with learned context vectors in CoOp's layout: in every row, the token embeddings
 * at positions 1 .. n_ctx (the placeholders after the start token) are replaced by the rows of
 * ctx (n_ctx x text_width, shared by all rows); the rest (class-name tokens, '.', end of text)
 * are the rows' own. CR_ERR_INVALID when a row's end of text lies within the context. */
cr_err enc_clip_encode_tokens_ctx(const enc_clip *m, const int32_t *tokens, int n,
                                  const float *ctx, int n_ctx, float *out);

#endif
