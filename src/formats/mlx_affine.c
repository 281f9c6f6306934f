/* MLX affine quantization, the reference (host) implementation. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "core/internal.h"
#include "formats/mlx_affine.h"
#include "mlxn_quant.h"

static float load(mlxn_dtype dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return mlxn_f16_to_f32(((const uint16_t *)p)[i]);
    if (dt == MLXN_DTYPE_BF16)
        return mlxn_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

static void store(mlxn_dtype dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F16)
        ((uint16_t *)p)[i] = mlxn_f32_to_f16(v);
    else if (dt == MLXN_DTYPE_BF16)
        ((uint16_t *)p)[i] = mlxn_f32_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

static float round_to(mlxn_dtype dt, float v)
{
    if (dt == MLXN_DTYPE_F16)
        return mlxn_f16_to_f32(mlxn_f32_to_f16(v));
    if (dt == MLXN_DTYPE_BF16)
        return mlxn_bf16_to_f32(mlxn_f32_to_bf16(v));
    return v;
}

static mlxn_status check(const char *fn, mlxn_dtype dtype, int64_t rows, int64_t k, int bits,
                         int group_size)
{
    if (dtype != MLXN_DTYPE_F32 && dtype != MLXN_DTYPE_F16 && dtype != MLXN_DTYPE_BF16)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "dtype is %s, expected f32, f16 or bf16",
                          mlxn_dtype_name(dtype));
    if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "bits is %d, expected 2, 3, 4, 5, 6 or 8", bits);
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "group_size is %d, expected 32, 64 or 128",
                          group_size);
    if (rows < 0 || k < 0 || k % group_size)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "k = %lld is not a multiple of group_size %d",
                          (long long)k, group_size);
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_mlx_quantize(const void *w, mlxn_dtype dtype, int64_t rows, int64_t k, int bits,
                              int group_size, void *codes, void *scales, void *biases)
{
    static const char *fn = "mlxn_mlx_quantize";
    MLXN_TRY(check(fn, dtype, rows, k, bits, group_size));
    if ((!w || !codes || !scales || !biases) && rows && k)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "a pointer is NULL");
    const float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    const int64_t groups = k / group_size, row_bytes = k * bits / 8;
    memset(codes, 0, (size_t)(rows * row_bytes));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *out = (uint8_t *)codes + r * row_bytes;
        for (int64_t g = 0; g < groups; g++) {
            const int64_t base = r * k + g * group_size;
            float w_min = INFINITY, w_max = -INFINITY;
            for (int j = 0; j < group_size; j++) {
                float v = load(dtype, w, base + j);
                w_max = fmaxf(w_max, v);
                w_min = fminf(w_min, v);
            }
            /* MLX puts the edge of larger magnitude exactly on a code, so that the scale and
             * bias reproduce it. */
            bool mask = fabsf(w_min) > fabsf(w_max);
            float scale = fmaxf((w_max - w_min) / n_bins, eps);
            scale = mask ? scale : -scale;
            float edge = mask ? w_min : w_max;
            float q0 = rintf(edge / scale);
            float bias = 0;
            if (q0 != 0) {
                scale = edge / q0;
                bias = edge;
            }
            for (int j = 0; j < group_size; j++) {
                float q = rintf((load(dtype, w, base + j) - bias) / scale);
                q = fminf(fmaxf(q, 0.0f), n_bins);
                mlxn_mlx_put_code(out, g * group_size + j, bits, (uint32_t)q);
            }
            store(dtype, scales, r * groups + g, scale);
            store(dtype, biases, r * groups + g, bias);
        }
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_mlx_dequantize(const void *codes, const void *scales, const void *biases,
                                mlxn_dtype dtype, int64_t rows, int64_t k, int bits,
                                int group_size, float *out)
{
    static const char *fn = "mlxn_mlx_dequantize";
    MLXN_TRY(check(fn, dtype, rows, k, bits, group_size));
    if ((!codes || !scales || !biases || !out) && rows && k)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "a pointer is NULL");
    const int64_t groups = k / group_size, row_bytes = k * bits / 8;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)codes + r * row_bytes;
        for (int64_t i = 0; i < k; i++) {
            int64_t g = r * groups + i / group_size;
            /* as MLX computes it: in the scales' dtype, each operation rounded */
            float p = round_to(dtype, load(dtype, scales, g) * (float)mlxn_mlx_get_code(row, i, bits));
            out[r * k + i] = round_to(dtype, p + load(dtype, biases, g));
        }
    }
    return MLXN_STATUS_OK;
}
