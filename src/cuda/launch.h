/* The kernel launchers: one extern "C" function per op, defined in <op>.cu. Each picks a
 * kernel variant, launches it on the stream and returns the launch's error. */
#ifndef MLXN_CUDA_LAUNCH_H
#define MLXN_CUDA_LAUNCH_H

#include <cuda_runtime_api.h>

#include "../core/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t mlxn_cuda_launch_rms_norm(const mlxn_rms_norm_args *a, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
