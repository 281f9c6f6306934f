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
    X(qmatmul, mlxn_qmatmul_args) \
    X(act, mlxn_act_args) \
    X(softmax, mlxn_softmax_args) \
    X(get_rows, mlxn_get_rows_args) \
    X(binary, mlxn_binary_args) \
    X(scale, mlxn_scale_args) \
    X(argmax, mlxn_argmax_args) \
    X(sample, mlxn_sample_args)

#define MLXN_OP_COUNT_EXPECTED 10

/* rms_norm family: y = norm(x [+ r]) [* w] [* m]; see mlxn.h. */
typedef struct mlxn_rms_norm_args {
    int64_t n_rows;        /* product of the leading dims */
    int64_t n;             /* row length */
    int dtype;             /* mlxn_dtype of x, r, m, sum, y */
    mlxn_rows x, r, m, sum, y; /* r, m, sum: base NULL when absent */
    const void *w;         /* n elements, or NULL for no scale */
    int w_dtype;           /* mlxn_dtype of w: F32 or dtype */
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

/* qmatmul: y[M, N] = x[M, K] . W[N, K]^T, W in a GGML block format (ggml_decode.h) or f32, f16
 * or bf16. */
typedef struct mlxn_qmatmul_args {
    int64_t M, N, K;
    int w_dtype;           /* mlxn_dtype of W */
    int x_dtype;           /* f32, f16 or bf16 */
    mlxn_rows x;           /* M rows of K */
    const uint8_t *w;      /* N rows of K elements */
    int64_t w_stride;      /* bytes between rows of w */
    mlxn_rows y;           /* M rows of N, f32 */
} mlxn_qmatmul_args;

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
