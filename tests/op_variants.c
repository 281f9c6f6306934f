/* Op variants shared by the op tests and the benchmarks. */
#include "op_variants.h"

const char *rms_variant_name(rms_variant v)
{
    static const char *const names[] = {"rms_norm", "rms_norm_mul", "add_rms_norm", "norm_add_rms_norm"};
    return (unsigned)v < RMS_VARIANT_COUNT ? names[v] : "?";
}

bool rms_variant_has_sum(rms_variant v)
{
    return v == ADD_RMS_NORM || v == NORM_ADD_RMS_NORM;
}

mlxn_status rms_variant_issue(mlxn_stream *s, rms_variant v, const mlxn_tensor *x,
                              const mlxn_tensor *r, const mlxn_tensor *wr, const mlxn_tensor *w,
                              const mlxn_tensor *m, float eps, const mlxn_tensor *sum,
                              const mlxn_tensor *y)
{
    switch (v) {
    case RMS_NORM_MUL:
        return mlxn_rms_norm_mul(s, x, w, m, eps, y);
    case ADD_RMS_NORM:
        return mlxn_add_rms_norm(s, x, r, w, eps, sum, y);
    case NORM_ADD_RMS_NORM:
        return mlxn_norm_add_rms_norm(s, x, r, wr, w, eps, sum, y);
    default:
        return mlxn_rms_norm(s, x, w, eps, y);
    }
}
