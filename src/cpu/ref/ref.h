/* The oracle kernels: scalar, obvious, f64 accumulation, never optimized. Every other backend
 * is tested against these. */
#ifndef MLXN_REF_H
#define MLXN_REF_H

#include "../../core/internal.h"

/* Element i of a plain f32/f16/bf16 array, as a double. */
double mlxn_ref_load(int dtype, const void *p, int64_t i);
/* Stores v rounded to dtype; returns the stored value. */
double mlxn_ref_store(int dtype, void *p, int64_t i, double v);
/* 1 / sqrt(mean(x^2) + eps) over the n elements of a plain array: the RMS norm's scale. */
double mlxn_ref_inv_rms(int dtype, const void *x, int64_t n, double eps);

void mlxn_ref_rms_norm(const mlxn_rms_norm_args *a);
void mlxn_ref_qmatmul_mlx(const mlxn_qmatmul_mlx_args *a);
void mlxn_ref_qmatmul(const mlxn_qmatmul_args *a);
/* act (mlxn_act) in f64 */
double mlxn_ref_act_f64(int act, double x);
void mlxn_ref_act(const mlxn_act_args *a);
void mlxn_ref_softmax(const mlxn_softmax_args *a);
void mlxn_ref_rope(const mlxn_rope_args *a);
void mlxn_ref_get_rows(const mlxn_get_rows_args *a);
void mlxn_ref_binary(const mlxn_binary_args *a);
void mlxn_ref_scale(const mlxn_scale_args *a);
void mlxn_ref_argmax(const mlxn_argmax_args *a);
mlxn_status mlxn_ref_attention(const mlxn_attention_args *a); /* OUT_OF_MEMORY for its row buffers */
void mlxn_ref_kv_append(const mlxn_kv_append_args *a);
void mlxn_ref_sample(const mlxn_sample_args *a);
void mlxn_ref_moe_gate(const mlxn_moe_gate_args *a);
void mlxn_ref_moe_reduce(const mlxn_moe_reduce_args *a);
void mlxn_ref_copy(const mlxn_copy_args *a);
void mlxn_ref_l2_norm(const mlxn_l2_norm_args *a);
void mlxn_ref_cumsum(const mlxn_cumsum_args *a);
void mlxn_ref_moe_route_map(const mlxn_moe_route_map_args *a);
void mlxn_ref_qmatmul_id(const mlxn_qmatmul_id_args *a);

/* The oracle's token for row r of a sample call, and whether one of its decisions (the rank
 * at a top-k or top-p cut, the top-p sum, a min-p test, the draw) lies within `margin`
 * (relative) of its boundary, where the backends' f32 weights may decide the other way.
 * probs, if not NULL, gets the V probabilities of the final distribution. */
typedef struct mlxn_ref_sample_result {
    int32_t token;
    bool near_boundary;
    double margin;
} mlxn_ref_sample_result;
mlxn_ref_sample_result mlxn_ref_sample_row(const mlxn_sample_args *a, int64_t r, double *probs);
/* Elements k0 .. k0 + 31 (k0 a multiple of 32) of a row of W (GGML blocks or f32/f16/bf16). */
void mlxn_ref_weight_unit(int w_dtype, const uint8_t *w, int64_t k0, float *out);

#endif
