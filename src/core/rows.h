/* A set of rows: the view of a tensor whose innermost dimension is contiguous, flattened into
 * row indices. Shared by C host code and CUDA kernels.
 *
 *   row r  ->  (i0, i1, i2) = (r / (d1*d2), (r / d2) % d1, r % d2)
 *   address    base + i0*s0 + i1*s1 + i2*s2      (strides in bytes)
 */
#ifndef MLXN_ROWS_H
#define MLXN_ROWS_H

#include <stdint.h>

#ifdef __CUDACC__
#define MLXN_HD __host__ __device__ __forceinline__
#else
#define MLXN_HD static inline
#endif

typedef struct mlxn_rows {
    char *base;            /* row 0; NULL when the operand is absent */
    int64_t d1, d2;        /* sizes of the two inner leading dims */
    int64_t s0, s1, s2;    /* byte strides of the three leading dims */
} mlxn_rows;

MLXN_HD char *mlxn_rows_ptr(const mlxn_rows *rows, int64_t r)
{
    /* no division where the index is within the inner dim (2-D tensors, a decode step's rows):
     * a 64-bit division costs a GPU kernel ~25 dependent instructions, on the way to its first
     * loads (bench/NOTES.md, qmatmul_id decode) */
    if (r < rows->d2)
        return rows->base + r * rows->s2;
    int64_t i2 = r % rows->d2;
    int64_t q = r / rows->d2;
    int64_t i1 = q % rows->d1;
    int64_t i0 = q / rows->d1;
    return rows->base + i0 * rows->s0 + i1 * rows->s1 + i2 * rows->s2;
}

#endif
