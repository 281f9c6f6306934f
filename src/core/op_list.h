/* The op list: one line per op, used to generate the op kinds, the argument union, the
 * backends' op tables and the dispatch. Adding an op adds a line here; the harness refuses to
 * run when an op has no cases (tests/test_ops.c). */
#ifndef MLXN_OP_LIST_H
#define MLXN_OP_LIST_H

#include "mlxn.h"
#include "rows.h"

/* X(op, ARGS_TYPE) */
#define MLXN_OP_LIST(X) \
    X(rms_norm, mlxn_rms_norm_args) \
    X(qmatmul_mlx, mlxn_qmatmul_mlx_args) \
    X(qmatmul, mlxn_qmatmul_op_args) \
    X(act, mlxn_act_args) \
    X(softmax, mlxn_softmax_args) \
    X(rope, mlxn_rope_args) \
    X(get_rows, mlxn_get_rows_args) \
    X(binary, mlxn_binary_args) \
    X(scale, mlxn_scale_args) \
    X(argmax, mlxn_argmax_args) \
    X(attention, mlxn_attention_args) \
    X(kv_append, mlxn_kv_append_args) \
    X(sample, mlxn_sample_args) \
    X(moe_gate, mlxn_moe_gate_args) \
    X(moe_reduce, mlxn_moe_reduce_args) \
    X(copy, mlxn_copy_args) \
    X(l2_norm, mlxn_l2_norm_args) \
    X(cumsum, mlxn_cumsum_args) \
    X(moe_route_map, mlxn_moe_route_map_args) \
    X(qmatmul_id, mlxn_qmatmul_id_args)

#define MLXN_OP_COUNT_EXPECTED 20

/* rms_norm family: y = norm(x [+ r or + norm(r) * r_w]) [* w] [* m]; see mlxn.h. */
typedef struct mlxn_rms_norm_args {
    int64_t n_rows;        /* product of the leading dims */
    int64_t n;             /* row length */
    int dtype;             /* mlxn_dtype of x, r, m, sum, y */
    mlxn_rows x, r, m, sum, y; /* r, m, sum: base NULL when absent */
    const void *w;         /* n elements, or NULL for no scale */
    int w_dtype;           /* mlxn_dtype of w: F32 or dtype */
    bool norm_r;           /* r is normalized (times r_w) before the add */
    const void *r_w;       /* with norm_r: n elements, or NULL for no scale */
    int r_w_dtype;         /* mlxn_dtype of r_w: F32 or dtype */
    float eps;
} mlxn_rms_norm_args;

/* qmatmul_mlx: y[M, N] = x[M, K] . dequant(W)^T, W MLX-affine quantized (see mlxn_quant.h). */
typedef struct mlxn_qmatmul_mlx_args {
    int64_t M, N, K;
    int bits, group_size;
    int x_dtype;           /* f32, f16 or bf16 */
    mlxn_rows x;           /* M rows of K */
    const uint8_t *w;      /* N rows of K * bits / 8 bytes */
    int64_t w_stride;      /* bytes between rows of w */
    const void *scales, *biases; /* [N, K / group_size] */
    int s_dtype;           /* f32, f16 or bf16 */
    int64_t s_stride, b_stride;  /* bytes between rows of scales, biases */
    mlxn_rows y;           /* M rows of N, f32 */
} mlxn_qmatmul_mlx_args;

/* rope: rotary position embedding of each head of x; see mlxn.h. x and y are rows of
 * head_dim, row r = (b, t, h) with h fastest (x.d1 = T, x.d2 = H). */
typedef struct mlxn_rope_args {
    int64_t n_rows, head_dim, n_tok, n_head;
    int dtype;                  /* f32, f16 or bf16: x, y */
    int style;                  /* mlxn_rope_style; NEOX for multi-section rope */
    int n_rot;                  /* even, 2 .. head_dim */
    float base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    int n_ctx_orig;
    float corr_lo, corr_hi;     /* YaRN ramp bounds in pairs (ggml's f32 correction dims) */
    double freq_log2;           /* log2 of base^(-2 / n_rot): w_i = exp2(i * freq_log2) */
    float mscale;               /* attn_factor, times the YaRN magnitude factor when ext_factor != 0 */
    int sections[4];            /* all 0: one position per token */
    bool interleaved;           /* imrope */
    const float *freq_factors;  /* [n_rot / 2], NULL when absent */
    const float *norm_w;        /* head_dim weights of head 0 of the per-head RMS norm; NULL: no norm */
    int64_t norm_w_stride;      /* bytes from head h's weights to head h + 1's; 0: shared by every head */
    float norm_eps;
    const char *pos;            /* i32: position (b, row s, t) at pos + b*pos_sb + s*pos_ss + 4t */
    int64_t pos_sb, pos_ss;     /* byte strides; pos_sb 0 when positions are shared by the batch */
    mlxn_rows x, y;
} mlxn_rope_args;

/* kv_append: cache[b, h, (pos[b] + t) % S] = src[b, t, h], rounded to the cache's dtype (q8_0:
 * quantized per 32 elements as the reference quantizer does). Rows:
 * src [B, T, H] (s0 = b, s1 = t, s2 = head), cache [B, H, S] (s0 = b, s1 = head, s2 = slot). */
typedef struct mlxn_kv_append_args {
    int64_t B, T, H, S, D;
    int src_dtype;         /* f32, f16 or bf16 */
    int cache_dtype;       /* f32, f16, bf16 or q8_0 (rows of D / 32 blocks, ggml_encode.h) */
    mlxn_rows src, cache;
    const int32_t *pos;    /* [B] */
} mlxn_kv_append_args;

/* qmatmul: y[M, N] = x[M, K] . W[N, K]^T, W in a GGML block format (ggml_decode.h) or f32, f16
 * or bf16. */
typedef struct mlxn_qmatmul_args {
    int64_t M, N, K;
    int w_dtype;           /* mlxn_dtype of W */
    int x_dtype;           /* f32, f16 or bf16 */
    mlxn_rows x;           /* M rows of K */
    const uint8_t *w;      /* N rows of K elements */
    int64_t w_stride;      /* bytes between rows of w */
    mlxn_rows y;           /* M rows of N (N / 2 with glu), f32 */
    /* fusions (mlxn_qmatmul_fused; all zero: none) */
    const float *norm_w;   /* K weights: x's rows RMS-normalized and scaled first, or NULL */
    float norm_eps;
    bool glu;              /* y = act(rows [0, N/2) of the product) * rows [N/2, N) */
    int glu_act;           /* mlxn_act */
    bool accumulate;       /* y += the result */
} mlxn_qmatmul_args;

/* The qmatmul op: the product (what the product kernels take), then rope and kv_append over
 * views of y (mlxn_qmatmul_fusion's rope and kv_cache). Apart, so that the product kernels'
 * parameters, copied at every launch, stay small. */
typedef struct mlxn_qmatmul_op_args {
    mlxn_qmatmul_args mm;
    bool rope_on, kv_on;
    mlxn_rope_args rope;
    mlxn_kv_append_args kv;
} mlxn_qmatmul_op_args;

/* act: y = act(x) [* up], elementwise. */
typedef struct mlxn_act_args {
    int64_t n_rows, n;     /* rows of n elements */
    int dtype;             /* f32, f16 or bf16: x, up, y */
    int act;               /* mlxn_act */
    mlxn_rows x, up, y;    /* up: base NULL for a plain activation */
} mlxn_act_args;

/* softmax: y = (log-)softmax(softcap(x * scale) + mask) over rows. */
typedef struct mlxn_softmax_args {
    int64_t n_rows, n;
    int dtype;             /* f32, f16 or bf16: x, mask, y */
    float scale, softcap;  /* softcap 0: none */
    bool log;
    mlxn_rows x, mask, y;  /* mask: base NULL when absent */
} mlxn_softmax_args;


/* get_rows: y[t, :] = scale * table[ids[t], :]; an id outside [0, V) gives a row of NaN. */
typedef struct mlxn_get_rows_args {
    int64_t n_tokens;      /* ids (and rows of y) in all */
    int64_t n;             /* D: elements per row of the table and of y */
    int table_dtype;       /* a GGML block format (ggml_decode.h) or f32, f16, bf16 */
    const uint8_t *table;  /* V rows of D elements */
    int64_t table_rows;    /* V */
    int64_t table_stride;  /* bytes between rows of the table */
    mlxn_rows ids;         /* i32, rows of ids_len: token t is element t % ids_len of row t / ids_len */
    int64_t ids_len;
    int y_dtype;           /* f32, f16 or bf16 */
    mlxn_rows y;           /* n_tokens rows of D */
    float scale;
} mlxn_get_rows_args;

/* binary: y = a op b with b broadcast over a. */
typedef struct mlxn_binary_args {
    int64_t n_rows, n;     /* rows of n elements of a and y */
    int op;                /* mlxn_binop */
    int dtype;             /* f32, f16 or bf16: a and y */
    int b_dtype;           /* dtype or f32 */
    mlxn_rows a, y;
    mlxn_rows b;           /* a's row decomposition (d1, d2) with b's strides, 0 along broadcast dims */
    int64_t b_inc;         /* bytes between b's elements along a row: its element size, 0 when broadcast */
} mlxn_binary_args;

/* scale: y = alpha * x + beta, elementwise. */
typedef struct mlxn_scale_args {
    int64_t n_rows, n;
    int dtype;             /* f32, f16 or bf16: x and y */
    float alpha, beta;
    mlxn_rows x, y;
} mlxn_scale_args;

/* argmax: out[r] = index of the largest element of row r (sample_math.h's order). */
typedef struct mlxn_argmax_args {
    int64_t n_rows, n;
    int dtype;             /* f32, f16 or bf16 */
    mlxn_rows x;
    int32_t *out;          /* n_rows */
} mlxn_argmax_args;

/* attention: o[b, t, h] = softmax over visible keys j of (softcap(scale q.k_j) + mask[t, j]) with
 * the head's sink, times v_j; see mlxn.h. Rows: q and o [B, Tq, Hq] (s0 = b, s1 = t, s2 = head),
 * k and v [B, Hkv, S] (s0 = b, s1 = head, s2 = slot), each of D elements. */
/* The longest head the attention kernels take (they keep a query row and an output row in
 * fixed-size buffers). */
#define MLXN_ATTENTION_MAX_D 512

typedef struct mlxn_attention_args {
    int64_t B, Tq, Hq, Hkv, S, D;
    int q_dtype;           /* f32, f16 or bf16: q and o */
    int kv_dtype;          /* f32, f16, bf16 or q8_0 (rows of D / 32 blocks): k and v */
    mlxn_rows q, k, v, o;
    const int32_t *pos;    /* [B] */
    const float *mask;     /* [Tq, S] rows at mask_stride bytes; NULL when absent */
    int64_t mask_stride;
    const float *sinks;    /* [Hq]; NULL when absent */
    float scale, softcap;  /* softcap 0: none */
    int64_t window;        /* 0: none */
    bool causal;
} mlxn_attention_args;


/* sample: one token per row of logits (mlxn.h gives the rule; sample_math.h the shared math). */
typedef struct mlxn_sample_args {
    int64_t n_rows, n;     /* B rows of V logits */
    mlxn_rows logits;      /* f32 */
    mlxn_rows history;     /* i32 rows of n_history ids; base NULL when no penalty applies */
    int64_t n_history;
    float temperature, top_p, min_p, repeat_penalty;
    int64_t top_k;         /* 0: off */
    uint64_t seed, step;
    int32_t *out;          /* n_rows */
} mlxn_sample_args;

/* moe_gate: each token's top_k experts by p (+ bias) and their weights; see mlxn.h. */
typedef struct mlxn_moe_gate_args {
    int64_t n_tokens, n_experts; /* T, E */
    int dtype;             /* logits: f32, f16 or bf16 */
    int gating;            /* mlxn_moe_gating */
    int top_k;             /* 1 .. MLXN_MOE_MAX_TOP_K, <= E */
    bool normalize;
    float scale;
    mlxn_rows logits;      /* T rows of E */
    const float *bias;     /* [E]; NULL when absent */
    mlxn_rows ids;         /* T rows of top_k, i32 */
    mlxn_rows weights;     /* T rows of top_k, f32 */
} mlxn_moe_gate_args;

/* moe_reduce: y[t, :] = sum_j weights[t, j] * x[t, j, :], in f32 in slot order. */
typedef struct mlxn_moe_reduce_args {
    int64_t n_tokens, top_k, n; /* T, k, N */
    int dtype;             /* f32, f16 or bf16: x and y */
    mlxn_rows x;           /* T * k rows of N: row t * k + j */
    mlxn_rows weights;     /* T rows of k, f32 */
    mlxn_rows y;           /* T rows of N */
} mlxn_moe_reduce_args;
/* copy: y = x converted to y's dtype, element by element over one shape: mlxn_copy, mlxn_permute
 * (x's strides permuted) and each part of mlxn_concat. The core hands the views over normalized:
 * size-1 dims dropped, dims ordered by y's strides (largest first), neighbours that are
 * contiguous in both views merged; so dim ndim - 1 is the one y walks fastest, and a copy of
 * two contiguous tensors is one dim. */
typedef struct mlxn_copy_args {
    int ndim;                                     /* 1..MLXN_MAX_DIMS */
    int64_t shape[MLXN_MAX_DIMS];
    int64_t xs[MLXN_MAX_DIMS], ys[MLXN_MAX_DIMS]; /* byte strides; xs may be 0 (repeats) */
    int x_dtype, y_dtype;  /* f32, f16, bf16 in any pair, or i32 for both */
    const char *x;         /* element 0 */
    char *y;
} mlxn_copy_args;

/* l2_norm: y = x * (1 / max(sqrt(sum x^2), eps)) over rows. */
typedef struct mlxn_l2_norm_args {
    int64_t n_rows, n;
    int dtype;             /* f32, f16 or bf16: x and y */
    float eps;
    mlxn_rows x, y;
} mlxn_l2_norm_args;

/* cumsum: inclusive prefix sums along rows. */
typedef struct mlxn_cumsum_args {
    int64_t n_rows, n;
    int dtype;             /* f32 or i32: x and y */
    mlxn_rows x, y;
} mlxn_cumsum_args;
/* moe_route_map: the (token, slot) pairs of ids grouped by expert, stable; see mlxn.h. */
typedef struct mlxn_moe_route_map_args {
    int64_t n_tokens, k;   /* ids [T, k]: pair p = t * k + j */
    mlxn_rows ids;         /* T rows of k i32 */
    int n_experts;         /* E */
    int32_t *offsets;      /* [E + 1] */
    int32_t *rows;         /* [T * k]: the pairs grouped by expert, then -1 for each left-out pair */
} mlxn_moe_route_map_args;

/* qmatmul_id: y[p, :] = x_row(p) . W[ids[p]]^T for each pair p = t * k + j, or with w_up the
 * SwiGLU silu(x_row(p) . W[e]^T) * (x_row(p) . W_up[e]^T); see mlxn.h. */
typedef struct mlxn_qmatmul_id_args {
    int64_t T, k, N, K, E;
    int w_dtype;           /* mlxn_dtype of W (and W_up) */
    int x_dtype;           /* f32, f16 or bf16 */
    bool x_per_slot;       /* x [T, k, K]: pair p reads row p; else x [T, K]: row p / k */
    mlxn_rows x;           /* T or T * k rows of K */
    const uint8_t *w;      /* [E, N, K] */
    int64_t w_stride, w_expert_stride;    /* bytes between rows, experts of w */
    const uint8_t *w_up;   /* [E, N, K] like w, or NULL: no SwiGLU */
    int64_t up_stride, up_expert_stride;
    mlxn_rows ids;         /* T rows of k i32 */
    mlxn_rows y;           /* T * k rows of N, f32 */
    bool ids_early;        /* the last op on the stream does not write ids: a decode's kernel reads
                            * them (and its first weights) before waiting for it (internal.h) */
} mlxn_qmatmul_id_args;

typedef enum mlxn_op_kind {
#define MLXN_X_ENUM(op, args) MLXN_OP_##op,
    MLXN_OP_LIST(MLXN_X_ENUM)
#undef MLXN_X_ENUM
    MLXN_OP_COUNT
} mlxn_op_kind;

#ifdef __cplusplus
static_assert(MLXN_OP_COUNT == MLXN_OP_COUNT_EXPECTED, "op list and its count disagree");
#else
_Static_assert(MLXN_OP_COUNT == MLXN_OP_COUNT_EXPECTED, "op list and its count disagree");
#endif

typedef struct mlxn_op {
    mlxn_op_kind kind;
    union {
#define MLXN_X_UNION(op, args) args op;
        MLXN_OP_LIST(MLXN_X_UNION)
#undef MLXN_X_UNION
    } u;
} mlxn_op;

struct mlxn_stream;

/* A backend's kernels: NULL where it has none (the op then returns UNSUPPORTED). */
typedef struct mlxn_op_table {
#define MLXN_X_FIELD(op, args) mlxn_status (*op)(struct mlxn_stream *stream, const args *a);
    MLXN_OP_LIST(MLXN_X_FIELD)
#undef MLXN_X_FIELD
} mlxn_op_table;

#endif
