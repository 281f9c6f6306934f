/* The elementwise binary operations in f32, shared by the fast CPU path and the CUDA kernels
 * (the oracle works in f64, src/cpu/ref/binary.c). Each is one IEEE operation, correctly
 * rounded on host and device alike (CUDA's division is IEEE without --use_fast_math). */
#ifndef MLXN_BINARY_MATH_H
#define MLXN_BINARY_MATH_H

#include "mlxn.h"
#include "rows.h" /* MLXN_HD */

MLXN_HD float mlxn_binop_f32(int op, float a, float b)
{
    switch (op) {
    case MLXN_BINOP_ADD: return a + b;
    case MLXN_BINOP_SUB: return a - b;
    case MLXN_BINOP_MUL: return a * b;
    default: return a / b;
    }
}

#endif
