/* The CUDA backend's internals, shared by its C host code. */
#ifndef MLXN_CUDA_H
#define MLXN_CUDA_H

#include <cuda_runtime_api.h>

#include "../core/internal.h"
#include "launch.h"

/* The one checking macro for CUDA runtime calls: records the call and CUDA's message as the
 * last error and returns MLXN_STATUS_ERR_DEVICE from the enclosing function. */
#define MLXN_CUDA_CHECK(fn, call)                                                           \
    do {                                                                                    \
        cudaError_t mlxn_cuda_err_ = (call);                                                \
        if (mlxn_cuda_err_ != cudaSuccess)                                                  \
            return mlxn_error(MLXN_STATUS_ERR_DEVICE, fn, "%s: %s (%s)", #call,             \
                              cudaGetErrorString(mlxn_cuda_err_),                           \
                              cudaGetErrorName(mlxn_cuda_err_));                            \
    } while (0)

typedef struct mlxn_cuda_device {
    struct cudaDeviceProp prop;
} mlxn_cuda_device;

static inline cudaStream_t mlxn_cuda_stream(const mlxn_stream *s)
{
    return (cudaStream_t)s->impl;
}

#endif
