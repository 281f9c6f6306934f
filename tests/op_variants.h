/* Op variants shared by the op tests and the benchmarks: one enum and issue function per
 * op family. */
#ifndef MLXN_TEST_OP_VARIANTS_H
#define MLXN_TEST_OP_VARIANTS_H

#include "mlxn.h"

typedef enum rms_variant {
    RMS_NORM,      /* y = norm(x) * w */
    RMS_NORM_MUL,  /* y = norm(x) * w * m */
    ADD_RMS_NORM,  /* sum = x + r, y = norm(sum) * w */
    NORM_ADD_RMS_NORM, /* sum = x + norm(r) * wr, y = norm(sum) * w */
    RMS_VARIANT_COUNT
} rms_variant;

const char *rms_variant_name(rms_variant v);

/* Whether the variant writes sum (x + r). */
bool rms_variant_has_sum(rms_variant v);

/* Issues the variant; operands it does not use are ignored. */
mlxn_status rms_variant_issue(mlxn_stream *s, rms_variant v, const mlxn_tensor *x,
                              const mlxn_tensor *r, const mlxn_tensor *wr, const mlxn_tensor *w,
                              const mlxn_tensor *m, float eps, const mlxn_tensor *sum,
                              const mlxn_tensor *y);

#endif
