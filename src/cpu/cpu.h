/* The CPU backend's internals: the device state and the kernel set of each SIMD level. */
#ifndef MLXN_CPU_H
#define MLXN_CPU_H

#include "../core/internal.h"
#include "threadpool.h"

/* qmatmul: rows n0 .. n1 - 1 of W against the a->M rows of x, given as f32 [M, K] contiguous,
 * with xsum [M, xss] their span sums (mlxn_cpu_qmm_xsums) and, from MLXN_CPU_QMM_PANEL rows
 * with K a multiple of 32, xt: the same rows in panels (mlxn_cpu_qmm_panels), else NULL */
typedef void (*mlxn_cpu_qmatmul_rows_fn)(const mlxn_qmatmul_args *a, const float *x, const float *xsum,
                                         int64_t xss, const float *xt, int64_t n0, int64_t n1);

/* qmatmul_mlx: the same for MLX affine weights (mlx), a holding M, N, K and y (x, its sums and
 * its panels as above; at one row of x, 4-bit weights on VNNI read its _HALVES integer form) */
typedef void (*mlxn_cpu_qmatmul_mlx_rows_fn)(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx,
                                             const float *x, const float *xsum, int64_t xss, const float *xt,
                                             int64_t n0, int64_t n1);

/* Row-range kernels of one SIMD level; the threading lives in the op's dispatcher. */
typedef struct mlxn_cpu_kernel_set {
    const char *name;
    /* stream: write outputs with non-temporal stores */
    void (*rms_norm_rows)(const mlxn_rms_norm_args *a, int64_t r0, int64_t r1, bool stream);
    /* rows r0 .. r1 - 1; w: radians per position of each pair */
    void (*rope_rows)(const mlxn_rope_args *a, const double *w, int64_t r0, int64_t r1);
    /* units u0 .. u1 - 1 of ((b * Hkv + kv head) * tiles + tile): a tile of queries
     * (mlxn_cpu_att_tile_queries) of one group of heads; scratch: mlxn_cpu_att_scratch_floats(D) */
    void (*attention_units)(const mlxn_attention_args *a, int64_t u0, int64_t u1, float *scratch);
    /* softmax rows r0 .. r1 - 1 */
    void (*softmax_rows)(const mlxn_softmax_args *a, int64_t r0, int64_t r1);
    /* activation rows r0 .. r1 - 1 */
    void (*act_rows)(const mlxn_act_args *a, int64_t r0, int64_t r1);
    /* y[i] = act(x[i]) (* up[i] where up) (+ y[i] when accumulate), n f32 elements: the GLU
     * epilogue of qmatmul */
    void (*act_f32)(int act, const float *x, const float *up, float *y, int64_t n, bool accumulate);
    /* the qmatmul row kernel for a W dtype, NULL where the level has none (or NULL itself):
     * the generic path decodes rows with the reference decoder */
    mlxn_cpu_qmatmul_rows_fn (*qmatmul_rows)(int w_dtype);
    /* the integer form of x (MLXN_CPU_QMM_X_*) that the row kernel for w_dtype reads at one row
     * of x; NULL: none */
    int (*qmatmul_x_form)(int w_dtype);
    /* x's MLXN_CPU_QMM_X_INT32, _HALVES or _HALVES_SUMS form (`form`): the unit scales and
     * digits of xsum's row (cpu.h); false where x is not finite or a unit's largest |x| is below
     * MLXN_CPU_QMM_XINT_TINY. NULL on levels whose kernels do not read it. */
    bool (*qmatmul_xint32)(const float *x, int64_t K, int form, float *scales, int8_t *digits);
    /* the MLX affine row kernel (every width), NULL where the level has none */
    mlxn_cpu_qmatmul_mlx_rows_fn qmatmul_mlx_rows;
} mlxn_cpu_kernel_set;

/* A row of xsum: the sums of x over each 32-element unit, zero-padded to a multiple of 16
 * (mlxn_cpu_qmm_xs32 of them), then over each 16 elements, zero-padded likewise. The kernels
 * apply the formats' offsets through them: per unit, or per 16 for Q2_K, Q3_K and Q6_K.
 * The row goes on (from mlxn_cpu_qmm_xdig) with x as integers for the integer kernels at one row
 * of x (qmatmul_impl.h): a flag (the MLXN_CPU_QMM_X_* form present), padded to 16 floats, then
 * that form: x = s (65536 d2 + 256 d1 + d0) to within s, three balanced base-256 int8 digits
 * per element (d2 in -127 .. 127, d1 and d0 in -128 .. 127), s from the largest |x| of a span:
 *  - MLXN_CPU_QMM_X_INT256 (AVX2's K-quant kernel; K a multiple of 256): per 256-block a scale
 *    (padded to 16 floats), then per block 768 bytes: d0, d1, d2 of its 256 elements;
 *  - MLXN_CPU_QMM_X_INT32 and _INT32_HALVES (the VNNI kernels): per 32-element unit a scale
 *    (padded to 16 floats), then per 128 elements (the last zero-padded) 384 bytes: d2, d1, d0,
 *    each as two vectors of 64 bytes in the order the kernel's code vectors hold the elements:
 *    INT32 the 128 in order; _HALVES (blocks of 32 taken four at a time) elements 0-15 of each
 *    of the four 32-element units, then elements 16-31 of each;
 *  - MLXN_CPU_QMM_X_INT32_HALVES_SUMS (IQ4_NL's VNNI kernel): _HALVES with 512 bytes per 128
 *    elements: after the digits, for each 32-bit lane l of a vector, 128 times the sum of its
 *    d2 (16 int32), then 128 times the sum of its 256 d1 + d0 (16 int32), over the lane's
 *    elements in both vectors (bytes 4l .. 4l + 3 of each). */
enum {
    MLXN_CPU_QMM_X_NONE,
    MLXN_CPU_QMM_X_INT256,
    MLXN_CPU_QMM_X_INT32,
    MLXN_CPU_QMM_X_INT32_HALVES,
    MLXN_CPU_QMM_X_INT32_HALVES_SUMS
};
/* The largest |X|: 127 (65536 + 256 + 1), so that the balanced digits of any integer up to it
 * stay in -127 .. 127 for d2 and -128 .. 127 below. A span whose largest |x| is below
 * MLXN_CPU_QMM_XINT_TINY has no integer form (its scale times W's neared underflow: |x| ~ 1e-30
 * failed the harness bound), nor one holding Inf or NaN. */
#define MLXN_CPU_QMM_XINT_MAX 8355711
#define MLXN_CPU_QMM_XINT_TINY 1e-18f
static inline int64_t mlxn_cpu_qmm_xs32(int64_t K) { return (K / 32 + 15) / 16 * 16; }
static inline int64_t mlxn_cpu_qmm_xdig(int64_t K) { return mlxn_cpu_qmm_xs32(K) + (K / 16 + 15) / 16 * 16; }
/* bytes per 128 elements of an INT32 form: the digits, and for _HALVES_SUMS the lanes' sums */
static inline int mlxn_cpu_qmm_xquad(int form) { return form == MLXN_CPU_QMM_X_INT32_HALVES_SUMS ? 512 : 384; }
static inline int64_t mlxn_cpu_qmm_xss(int64_t K)
{
    /* INT32_HALVES_SUMS's size, which is at least the other forms' (INT256: scales for 8x the
     * spans; the same digits) */
    return mlxn_cpu_qmm_xdig(K) + 16 + mlxn_cpu_qmm_xs32(K) +
           (K + 127) / 128 * (mlxn_cpu_qmm_xquad(MLXN_CPU_QMM_X_INT32_HALVES_SUMS) / 4);
}
/* xsum's row (mlxn_cpu_qmm_xss(K) floats) for the row x of K floats; the integer form of x
 * `form` (MLXN_CPU_QMM_X_*) where it can be made (x finite, no span's largest |x| below TINY,
 * K a multiple of 256 for INT256; the INT32 forms by the level `ks`), its flag says which */
void mlxn_cpu_qmm_xsums(const float *x, int64_t K, float *xsum, int form, const mlxn_cpu_kernel_set *ks);

/* x's whole panels of MLXN_CPU_QMM_PANEL rows for the row kernels' many-row path
 * (qmatmul_impl.h): panel p holds rows 32 p .. 32 p + 31 transposed, element k of row 32 p + i at
 * xt[(p K + k) 32 + i]; floor(M / 32) 32 K floats. Made where mlxn_cpu_qmm_panels_apply: from 32
 * rows, K whole units (the rows past the last panel go to register blocks of a few rows; panels
 * padded with zero rows below 32 lost up to 20% to them: bench/NOTES.md). The kernels take rows
 * of W MLXN_CPU_QMM_PANEL_W a register block (6, its half, on AVX2): the threads' chunks of rows
 * come in multiples of it. */
#define MLXN_CPU_QMM_PANEL 32
#define MLXN_CPU_QMM_PANEL_W 12
static inline bool mlxn_cpu_qmm_panels_apply(int64_t M, int64_t K)
{
    return M >= MLXN_CPU_QMM_PANEL && K % 32 == 0;
}
static inline int64_t mlxn_cpu_qmm_panel_floats(int64_t M, int64_t K)
{
    return M / MLXN_CPU_QMM_PANEL * MLXN_CPU_QMM_PANEL * K;
}
/* the panels' units of work: 16 elements of K of one panel */
static inline int64_t mlxn_cpu_qmm_panel_units(int64_t M, int64_t K)
{
    return M / MLXN_CPU_QMM_PANEL * ((K + 15) / 16);
}
/* units u0 .. u1 - 1 of the panels xt of x [M, K] */
void mlxn_cpu_qmm_panels(const float *x, int64_t K, int64_t u0, int64_t u1, float *xt);

/* Attention's tiles (attention_impl.h): up to MLXN_CPU_ATT_ROWS rows of (query, head) of one KV
 * head share each block of MLXN_CPU_ATT_KEYS keys read, so a prefill's queries go several a tile
 * where the group has fewer heads; a thread's scratch holds the rows' q, sums and totals and a
 * block of keys and values, each row D floats padded to 16. */
#define MLXN_CPU_ATT_ROWS 16
#define MLXN_CPU_ATT_KEYS 8
static inline int64_t mlxn_cpu_att_tile_queries(int64_t group)
{
    return group >= MLXN_CPU_ATT_ROWS ? 1 : MLXN_CPU_ATT_ROWS / group;
}
static inline size_t mlxn_cpu_att_scratch_floats(int64_t D)
{
    return (size_t)(3 * MLXN_CPU_ATT_ROWS + 2 * MLXN_CPU_ATT_KEYS) * (size_t)((D + 15) / 16 * 16);
}

extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_portable;
extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx2;
extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx512;
extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx512_bf16;

typedef struct mlxn_cpu_device {
    mlxn_cpu_kernels level;          /* any but AUTO */
    const mlxn_cpu_kernel_set *kernels; /* NULL for REFERENCE */
    mlxn_threadpool *pool;
    size_t llc_bytes; /* last-level cache; 0 if unknown */
} mlxn_cpu_device;

/* Whether an op writing `bytes` should bypass the caches: outputs of more than a quarter of
 * the last-level cache would mostly be evicted before anyone reads them, and non-temporal
 * stores save the read for ownership (a third of the traffic of a streaming op). */
static inline bool mlxn_cpu_stream_output(const mlxn_cpu_device *d, double bytes)
{
    return d->llc_bytes && bytes > (double)d->llc_bytes / 4;
}

static inline mlxn_cpu_device *mlxn_cpu_dev(const mlxn_stream *s)
{
    return (mlxn_cpu_device *)s->device->impl;
}

mlxn_status mlxn_cpu_rms_norm(mlxn_stream *s, const mlxn_rms_norm_args *a);
mlxn_status mlxn_cpu_qmatmul_mlx(mlxn_stream *s, const mlxn_qmatmul_mlx_args *a);
mlxn_status mlxn_cpu_qmatmul(mlxn_stream *s, const mlxn_qmatmul_op_args *a);
mlxn_status mlxn_cpu_act(mlxn_stream *s, const mlxn_act_args *a);
mlxn_status mlxn_cpu_softmax(mlxn_stream *s, const mlxn_softmax_args *a);
mlxn_status mlxn_cpu_rope(mlxn_stream *s, const mlxn_rope_args *a);
mlxn_status mlxn_cpu_get_rows(mlxn_stream *s, const mlxn_get_rows_args *a);
mlxn_status mlxn_cpu_binary(mlxn_stream *s, const mlxn_binary_args *a);
mlxn_status mlxn_cpu_scale(mlxn_stream *s, const mlxn_scale_args *a);
mlxn_status mlxn_cpu_argmax(mlxn_stream *s, const mlxn_argmax_args *a);
/* the argmax of one row of n f32/f16/bf16 values (mlxn_argmax's rules; -1 where all are NaN) */
int32_t mlxn_cpu_argmax_row(const void *row, int dtype, int64_t n);
mlxn_status mlxn_cpu_attention(mlxn_stream *s, const mlxn_attention_args *a);
mlxn_status mlxn_cpu_kv_append(mlxn_stream *s, const mlxn_kv_append_args *a);
mlxn_status mlxn_cpu_sample(mlxn_stream *s, const mlxn_sample_args *a);
mlxn_status mlxn_cpu_moe_gate(mlxn_stream *s, const mlxn_moe_gate_args *a);
mlxn_status mlxn_cpu_moe_reduce(mlxn_stream *s, const mlxn_moe_reduce_args *a);
mlxn_status mlxn_cpu_copy(mlxn_stream *s, const mlxn_copy_args *a);
mlxn_status mlxn_cpu_l2_norm(mlxn_stream *s, const mlxn_l2_norm_args *a);
mlxn_status mlxn_cpu_cumsum(mlxn_stream *s, const mlxn_cumsum_args *a);
mlxn_status mlxn_cpu_moe_route_map(mlxn_stream *s, const mlxn_moe_route_map_args *a);
mlxn_status mlxn_cpu_qmatmul_id(mlxn_stream *s, const mlxn_qmatmul_id_args *a);

/* The routing map of ids (T rows of k) over E experts into offsets [E + 1] and rows [T * k]
 * (mlxn.h's definition), on the calling thread. */
void mlxn_cpu_route_map_build(const mlxn_rows *ids, int64_t T, int64_t k, int E, int32_t *offsets, int32_t *rows);

#endif
