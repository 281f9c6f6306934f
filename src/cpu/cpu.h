/* The CPU backend's internals: the device state and the kernel set of each SIMD level. */
#ifndef MLXN_CPU_H
#define MLXN_CPU_H

#include "../core/internal.h"
#include "threadpool.h"

/* Row-range kernels of one SIMD level; the threading lives in the op's dispatcher. */
typedef struct mlxn_cpu_kernel_set {
    const char *name;
    void (*rms_norm_rows)(const mlxn_rms_norm_args *a, int64_t r0, int64_t r1);
} mlxn_cpu_kernel_set;

extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_portable;
extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx2;
extern const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx512;

typedef struct mlxn_cpu_device {
    mlxn_cpu_kernels level;          /* REFERENCE, PORTABLE, AVX2 or AVX512 */
    const mlxn_cpu_kernel_set *kernels; /* NULL for REFERENCE */
    mlxn_threadpool *pool;
} mlxn_cpu_device;

static inline mlxn_cpu_device *mlxn_cpu_dev(const mlxn_stream *s)
{
    return (mlxn_cpu_device *)s->device->impl;
}

mlxn_status mlxn_cpu_rms_norm(mlxn_stream *s, const mlxn_rms_norm_args *a);

#endif
