/* clip_resnet.h — CLIP's ModifiedResNet image tower (RN50, RN101, RN50x4, RN50x16, ...), internal
 * to the encoder module; clip_model.c opens it when a checkpoint has `visual.layer1.0.conv1.weight`.
 *
 *     enc_rn *rn = NULL;
 *     if (enc_rn_load(&rn, st, 0) == CR_OK)               // st: an open safetensors (borrowed)
 *         enc_rn_forward(rn, pixels, n, out);             // n x 3 x S x S -> n x embed
 *     enc_rn_close(&rn);
 *
 * The architecture is OpenAI CLIP's `clip/model.py`: a stem of three 3x3 convolutions (the
 * first with stride 2) each followed by BatchNorm and ReLU, then a 2x2 average pool; four stages
 * of Bottleneck blocks (1x1, 3x3, 1x1 convolutions, expansion 4) whose strided blocks downsample
 * with an average pool (after the 3x3 convolution, and before the 1x1 convolution of the
 * shortcut) instead of a strided convolution; and AttentionPool2d (the mean of the final grid
 * prepended as a query token, a positional embedding, one multi-head attention whose query is
 * only that token, an output projection to the embedding).
 *
 * Hyper-parameters come from the shapes as CLIP's `build_model` derives them: blocks per stage
 * = the number of `visual.layer<s>.<i>.` blocks, width = the output channels of
 * `visual.layer1.0.conv1`, image size = 32 x sqrt(positions - 1) of the attention pool, heads =
 * width x 32 / 64 (unless given), embedding = the rows of `visual.attnpool.c_proj.weight`.
 *
 * Loading folds every BatchNorm (eps 1e-5, running statistics) into the convolution before it,
 * in double precision: w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var +
 * eps). Weights are kept as fp32 in the layout of the forward pass: activations are NHWC (one
 * row per pixel, channels contiguous), a 1x1 convolution is one cblas_sgemm over every pixel of
 * the chunk, a 3x3 one is im2col (rows of (ky, kx, c)) in bounded blocks followed by a GEMM.
 *
 * Thread rules: as enc_clip (read-only after load; every forward allocates its own scratch).
 */
#ifndef ENC_CLIP_RESNET_H
#define ENC_CLIP_RESNET_H

#include <stddef.h>

#include "common/err.h"
#include "encoder/safetensors.h"

/* Scratch bound of one forward pass: images are processed in chunks whose largest activation
 * holds at most this many floats (at least one image per chunk). */
#define ENC_RN_CHUNK_FLOATS (8u << 20)

typedef struct enc_rn enc_rn;

/* 1 when `st` holds a ModifiedResNet image tower (OpenAI names), else 0. */
int enc_rn_detect(const enc_st *st);

/* Loads the image tower from `st` (borrowed). heads > 0 overrides width * 32 / 64. Writes *out
 * only on success; CR_ERR_MODEL (naming the tensor) for a missing tensor or a wrong shape,
 * CR_ERR_NOMEM. */
cr_err enc_rn_load(enc_rn **out, const enc_st *st, int heads);

/* NULL-safe; sets *pp to NULL. */
void enc_rn_close(enc_rn **pp);

/* pixels: n x 3 x S x S (S = enc_rn_image_size(), normalized); out: n x embed floats, the
 * attention pool's output, NOT normalized. CR_OK or CR_ERR_NOMEM. */
cr_err enc_rn_forward(const enc_rn *rn, const float *pixels, int n, float *out);

int enc_rn_image_size(const enc_rn *rn);
int enc_rn_embed_dim(const enc_rn *rn);
int enc_rn_width(const enc_rn *rn);      /* stem output channels (64 for RN50) */
int enc_rn_heads(const enc_rn *rn);      /* attention-pool heads */
int enc_rn_blocks(const enc_rn *rn, int stage); /* blocks of stage 0..3 */
size_t enc_rn_weight_bytes(const enc_rn *rn);
/* Multiply-adds x 2 of one image's forward pass (convolutions, pool projections, attention). */
double enc_rn_flops(const enc_rn *rn);

#endif
