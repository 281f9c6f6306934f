/* Which CUDA attention kernel serves a call, as far as shapes decide it (plain C: the launcher
 * and the tests' tolerances share it). Pointer alignment, checked by the launcher, can still
 * send a call to the generic kernel.
 *
 *   rows per KV head (Hq / Hkv * Tq) <= MLXN_CUDA_ATTENTION_DECODE_ROWS, D a multiple of 8:
 *       decode kernel: f32 arithmetic, split over the keys (q8_0 caches too, read as stored)
 *   f16 / bf16 cache, D in {64, 80, 96, 128, 256}, more rows:
 *       tensor-core kernels (mma.sync; wgmma for D 64, 128, 256 on sm_90): q rounded to the cache's
 *       type, P rounded to it before P V
 *   otherwise (q8_0 caches with more rows included): the generic SIMT kernel (f32 arithmetic) */
#ifndef MLXN_CUDA_ATTENTION_PLAN_H
#define MLXN_CUDA_ATTENTION_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "mlxn.h"

#define MLXN_CUDA_ATTENTION_DECODE_ROWS 8

static inline bool mlxn_cuda_attention_on_tensor_cores(int kv_dtype, int64_t D, int64_t rows_per_kv_head)
{
    return (kv_dtype == MLXN_DTYPE_F16 || kv_dtype == MLXN_DTYPE_BF16) &&
           (D == 64 || D == 80 || D == 96 || D == 128 || D == 256) &&
           !(rows_per_kv_head <= MLXN_CUDA_ATTENTION_DECODE_ROWS && D % 8 == 0);
}

#endif
