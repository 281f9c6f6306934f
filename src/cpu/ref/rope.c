/* Oracle: RoPE in f64, straight from the definition in mlxn.h (ggml's rope_yarn): every angle
 * from pow(), the YaRN correction dims and magnitude in f64, the per-head RMS norm in f64, one
 * rounding at the store. */
#include <math.h>

#include "ref.h"

/* ggml_rope_yarn_corr_dims in f64. The op rounds these in f32 as ggml does; the two differ only
 * when a bound falls within ~1e-6 of an integer, which the test configurations avoid. */
static void corr_dims(const mlxn_rope_args *a, double *lo, double *hi)
{
    const double n = a->n_rot, two_pi = 2.0 * M_PI;
    *lo = fmax(0.0, floor(n * log(a->n_ctx_orig / (a->beta_fast * two_pi)) / (2.0 * log(a->base))));
    *hi = fmin(n - 1.0, ceil(n * log(a->n_ctx_orig / (a->beta_slow * two_pi)) / (2.0 * log(a->base))));
}

/* Position row of pair i: the sector table of ggml_mrope_cache_init written out. */
static int section_of(const mlxn_rope_args *a, int64_t i)
{
    const int *sec = a->sections;
    const int64_t s = i % (sec[0] + sec[1] + sec[2] + sec[3]);
    if (a->interleaved) {
        /* sector s = 3k + c belongs to row c while k < sections[c]; the rest to e */
        const int64_t c = s % 3, k = s / 3;
        return k < sec[c] ? (int)c : 3;
    }
    int64_t end = 0;
    for (int r = 0; r < 4; r++) {
        end += sec[r];
        if (s < end)
            return r;
    }
    return 3;
}

void mlxn_ref_rope(const mlxn_rope_args *a)
{
    const bool multi = a->sections[0] || a->sections[1] || a->sections[2] || a->sections[3];
    const int64_t half = a->n_rot / 2;
    double lo = 0, hi = 0, mscale = a->attn_factor;
    if (a->ext_factor != 0.0f) {
        corr_dims(a, &lo, &hi);
        mscale *= 1.0 + 0.1 * log(1.0 / a->freq_scale);
    }
    for (int64_t r = 0; r < a->n_rows; r++) {
        const int64_t tok = r / a->n_head, b = tok / a->n_tok, t = tok % a->n_tok;
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        /* xn_i = x_i * scale * w_i (without the norm, x_i); the scale is taken before the first
         * store and each element is read before it is stored, so y may be x. */
        double scale = 1.0;
        const float *w = NULL;
        if (a->norm_w) {
            scale = mlxn_ref_inv_rms(a->dtype, x, a->head_dim, a->norm_eps);
            w = (const float *)((const char *)a->norm_w + (r % a->n_head) * a->norm_w_stride);
        }
#define XN(i) (mlxn_ref_load(a->dtype, x, i) * (w ? scale * (double)w[i] : 1.0))
        for (int64_t i = 0; i < half; i++) {
            const int row = multi ? section_of(a, i) : 0;
            const double p = ((const int32_t *)(a->pos + b * a->pos_sb + row * a->pos_ss))[t];
            const double extrap = p * pow(a->base, -2.0 * (double)i / a->n_rot) /
                                  (a->freq_factors ? (double)a->freq_factors[i] : 1.0);
            const double interp = a->freq_scale * extrap;
            double theta = interp;
            if (a->ext_factor != 0.0f) {
                const double ramp = 1.0 - fmin(1.0, fmax(0.0, (i - lo) / fmax((double)0.001f, hi - lo)));
                const double mix = ramp * a->ext_factor;
                theta = interp * (1.0 - mix) + extrap * mix;
            }
            const int64_t ia = a->style == MLXN_ROPE_NEOX ? i : 2 * i, ib = a->style == MLXN_ROPE_NEOX ? i + half : 2 * i + 1;
            const double xa = XN(ia), xb = XN(ib);
            const double c = cos(theta) * mscale, s = sin(theta) * mscale;
            mlxn_ref_store(a->dtype, y, ia, xa * c - xb * s);
            mlxn_ref_store(a->dtype, y, ib, xa * s + xb * c);
        }
        for (int64_t i = a->n_rot; i < a->head_dim; i++)
            mlxn_ref_store(a->dtype, y, i, XN(i));
#undef XN
    }
}
