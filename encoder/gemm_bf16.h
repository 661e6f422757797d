/* gemm_bf16.h — C = A W^T (+ C) with bf16 inputs and fp32 accumulation (AVX512_BF16).
 *
 *     if (!enc_bf16_supported()) ...refuse --precision bf16...
 *     uint16_t *wp = enc_bf16_pack(W, N, K);          // once, at load; free() it
 *     enc_bf16_gemm_nt(rows, N, K, A, lda, wp, 0.f, C, ldc);
 *
 * W is [N, K] fp32 row-major (a Linear weight, y = x W^T). The packed copy holds panels of 16
 * output columns; inside a panel each K pair (2p, 2p+1) of the 16 columns is 32 consecutive
 * bf16, the operand layout of vdpbf16ps. K is padded to even and N to 16 with zeros. A is
 * rounded to bf16 (nearest even) per call; C stays fp32. Runs on up to
 * openblas_get_num_threads() OpenMP threads (the encoder's thread count), one when the
 * product is small. */
#ifndef ENC_GEMM_BF16_H
#define ENC_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the CPU (and OS) support AVX512F/BW and AVX512_BF16. */
int enc_bf16_supported(void);

/* Elements (uint16_t) of the packed copy of an [N, K] matrix. */
size_t enc_bf16_packed_len(int N, int K);

/* A malloc'd packed bf16 copy of W [N, K], NULL on allocation failure or without support. */
uint16_t *enc_bf16_pack(const float *W, int N, int K);

/* C[rows, N] = A[rows, K] Wp^T + beta C, beta 0 or 1. Needs enc_bf16_supported(). 0, or -1
 * (C untouched) when the per-call bf16 copy of A cannot be allocated. */
int enc_bf16_gemm_nt(int rows, int N, int K, const float *A, int lda, const uint16_t *Wp,
                     float beta, float *C, int ldc);

#endif
