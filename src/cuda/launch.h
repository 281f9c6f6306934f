/* The kernel launchers: one extern "C" function per op, defined in <op>.cu. Each picks a
 * kernel variant, launches it on the stream and returns the launch's error. pdl: the device
 * supports programmatic dependent launch (sm_90+), so kernels may overlap their launch with
 * the previous kernel's tail (they wait for it before touching memory that kernels write;
 * model weights, which no kernel writes, may be read before the wait). */
#ifndef MLXN_CUDA_LAUNCH_H
#define MLXN_CUDA_LAUNCH_H

#include <cuda_runtime_api.h>
#include <stdbool.h>

#include "../core/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t mlxn_cuda_launch_rms_norm(const mlxn_rms_norm_args *a, cudaStream_t stream,
                                      bool pdl);
cudaError_t mlxn_cuda_launch_qmatmul_mlx(const mlxn_qmatmul_mlx_args *a, cudaStream_t stream,
                                         bool pdl);
cudaError_t mlxn_cuda_launch_qmatmul(const mlxn_qmatmul_args *a, cudaStream_t stream, bool pdl);
/* Whether a q, k, v projection's rope and KV append (rope_on, kv_on) can run in the epilogue of
 * its mat-vec (mlxn_cuda_launch_qmatmul_qkv); the backend runs them as their own ops otherwise. */
bool mlxn_cuda_qmatmul_fuses_qkv(const mlxn_qmatmul_op_args *o);
cudaError_t mlxn_cuda_launch_qmatmul_qkv(const mlxn_qmatmul_op_args *o, cudaStream_t stream, bool pdl);
/* The streamed decode mat-vec (qmatmul_stream.cu) when it takes the call (M = 1, its formats and
 * shapes, sm_90+): true with the launch's status in *e; false when another kernel must run. The
 * second, for MLX weights of the widths it takes. */
bool mlxn_cuda_launch_qmatmul_stream(const mlxn_qmatmul_args *a, cudaStream_t stream, bool pdl, cudaError_t *e);
bool mlxn_cuda_launch_qmatmul_mlx_stream(const mlxn_qmatmul_mlx_args *a, cudaStream_t stream, bool pdl,
                                         cudaError_t *e);
/* The short-row Q8_0 decode mat-vec (qmatmul_short.cu: output heads of small models, packed rows of
 * K a multiple of 64 and not of 256, several 32-row tiles per SM, sm_90+), with the same contract. */
bool mlxn_cuda_launch_qmatmul_short(const mlxn_qmatmul_args *a, cudaStream_t stream, bool pdl, cudaError_t *e);
cudaError_t mlxn_cuda_launch_act(const mlxn_act_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_softmax(const mlxn_softmax_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_rope(const mlxn_rope_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_get_rows(const mlxn_get_rows_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_binary(const mlxn_binary_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_scale(const mlxn_scale_args *a, cudaStream_t stream, bool pdl);
/* Argmax and sampling split a row over many blocks when the batch is small; their partial
 * results live in stream memory of this fixed size (zeroed when made; NULL: no split, one block
 * per row). Each op's kernels leave it ready for the next call. */
#define MLXN_CUDA_SAMPLE_SCRATCH_BYTES ((size_t)4 << 20)
cudaError_t mlxn_cuda_launch_argmax(const mlxn_argmax_args *a, void *scratch, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_kv_append(const mlxn_kv_append_args *a, cudaStream_t stream, bool pdl);
/* scratch: device memory, zeroed when made, for the partial results of an attention split over
 * keys (NULL: no split): MLXN_CUDA_ATTENTION_COUNTER_BYTES of counters for the decode kernel's
 * last-split merge (each call leaves them zero), then the partials; sms: the device's
 * multiprocessors (the split aims at a few blocks per SM). */
#define MLXN_CUDA_ATTENTION_COUNTER_BYTES ((size_t)64 << 10)
cudaError_t mlxn_cuda_launch_attention(const mlxn_attention_args *a, void *scratch, size_t scratch_bytes, int sms,
                                       cudaStream_t stream, bool pdl);
/* The decode kernel (up to MLXN_CUDA_ATTENTION_DECODE_ROWS rows per KV head, D a multiple of 8,
 * 16-byte aligned K and V rows): mlxn_cuda_launch_attention sends those calls here. */
cudaError_t mlxn_cuda_launch_attention_decode(const mlxn_attention_args *a, void *scratch, size_t scratch_bytes,
                                              int sms, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_sample(const mlxn_sample_args *a, void *scratch, cudaStream_t stream, bool pdl);
/* The fusions of mlxn_qmatmul_fused for calls past the decode kernels (M > 8), as passes around
 * the plain product: x normalized into out [M][K] f32; y from the plain product yt [M][N]. */
cudaError_t mlxn_cuda_launch_qmatmul_norm_x(const mlxn_qmatmul_args *a, float *out, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_qmatmul_epilogue(const mlxn_qmatmul_args *a, const float *yt, cudaStream_t stream,
                                              bool pdl);
cudaError_t mlxn_cuda_launch_moe_gate(const mlxn_moe_gate_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_moe_reduce(const mlxn_moe_reduce_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_copy(const mlxn_copy_args *a, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_l2_norm(const mlxn_l2_norm_args *a, cudaStream_t stream, bool pdl);
/* Long rows with few of them scan all their tiles at once, chained through per-tile flags in
 * stream memory of this fixed size (a counter and one 8-byte flag per tile of 2048 elements:
 * 1 MiB covers 131071 tiles, some 268M elements; larger calls, or scratch NULL, scan a row per
 * block). sms: the device's multiprocessors (fewer rows than two per SM take the look-back). */
#define MLXN_CUDA_SCAN_SCRATCH_BYTES ((size_t)1 << 20)
cudaError_t mlxn_cuda_launch_cumsum(const mlxn_cumsum_args *a, void *scratch, size_t scratch_bytes, int sms,
                                    cudaStream_t stream, bool pdl);
/* The routing map of the T * k pairs of ids (mlxn_moe_route_map's definition) into offsets
 * [E + 1] and rows [T * k], counts being E integers of device scratch; with tile_rows > 0 also
 * tile_off [E + 1] (expert e's tiles of tile_rows pairs are tile_off[e] .. tile_off[e + 1] - 1)
 * and tile_expert [tile_off[E]] (the expert of each tile). Kernels only: graph-capturable. */
cudaError_t mlxn_cuda_route_map_build(const mlxn_rows *ids, int64_t T, int64_t k, int E, int32_t *counts,
                                      int32_t *offsets, int32_t *rows, int tile_rows, int32_t *tile_off,
                                      int32_t *tile_expert, cudaStream_t stream, bool pdl);
cudaError_t mlxn_cuda_launch_moe_route_map(const mlxn_moe_route_map_args *a, int32_t *counts, cudaStream_t stream,
                                           bool pdl);
/* The expert-routed matmul: mat-vecs per pair up to this many pairs (no scratch), tensor-core
 * tiles over a routing map in `scratch` (mlxn_cuda_qmatmul_id_scratch_bytes, 0 for the mat-vecs)
 * beyond. */
#define MLXN_CUDA_QMATMUL_ID_DECODE_PAIRS 64
size_t mlxn_cuda_qmatmul_id_scratch_bytes(const mlxn_qmatmul_id_args *a);
cudaError_t mlxn_cuda_launch_qmatmul_id(const mlxn_qmatmul_id_args *a, void *scratch, cudaStream_t stream, bool pdl);
/* W decoded to bf16 [N][K] and x rounded to bf16 [M][K] (contiguous), for a tensor-core GEMM. */
cudaError_t mlxn_cuda_launch_qmatmul_to_bf16(const mlxn_qmatmul_args *a, void *w_bf16, void *x_bf16,
                                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
