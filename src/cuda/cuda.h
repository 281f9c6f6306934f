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

/* A stream's state: the CUDA stream, and what its tensor-core GEMMs keep between calls. */
typedef struct mlxn_cuda_stream_state {
    cudaStream_t stream;
    void *cublas;         /* cublasHandle_t, created at the stream's first GEMM */
    void *scratch;        /* device memory for the GEMM's bf16 operands */
    size_t scratch_bytes;
    void *attention_partials; /* MLXN_CUDA_ATTENTION_PARTIALS_BYTES for split decode, or NULL */
    void *sample_scratch;     /* MLXN_CUDA_SAMPLE_SCRATCH_BYTES for split argmax and sampling, or NULL */
    void *scan_scratch;       /* MLXN_CUDA_SCAN_SCRATCH_BYTES for the look-back of long cumsum rows, or NULL */
    void *op_scratch;         /* intermediate results of one op (MoE routing maps, fused-product passes), grown (doubling) outside captures */
    size_t op_scratch_bytes;
    void *op_retired[48];     /* outgrown op scratch, kept for the graphs that captured it */
    int op_retired_count;
} mlxn_cuda_stream_state;

/* The split decode's partial results live in stream memory of this fixed size, made at the
 * stream's first attention outside a capture and kept until the stream is freed (a captured
 * graph keeps its address), zeroed. An attention captured before that runs unsplit. The
 * decode kernel splits the keys into one wave of resident blocks; calls whose partials would
 * not fit use fewer splits. */
#define MLXN_CUDA_ATTENTION_PARTIALS_BYTES ((size_t)8 << 20)

static inline cudaStream_t mlxn_cuda_stream(const mlxn_stream *s)
{
    return ((const mlxn_cuda_stream_state *)s->impl)->stream;
}

/* Quantized matmul through bf16 operands and cuBLAS (gemm.c): whether it takes the call, and
 * the call. Frees the stream's GEMM state. */
bool mlxn_cuda_gemm_takes(const mlxn_stream *s, const mlxn_qmatmul_args *a);
mlxn_status mlxn_cuda_qmatmul_gemm(mlxn_stream *s, const mlxn_qmatmul_args *a);
void mlxn_cuda_gemm_release(mlxn_cuda_stream_state *st);

/* MLXN_PROFILE_GRAPH=1: the cost of each node of a captured graph, to stderr (graph_profile.cu). */
void mlxn_cuda_graph_profile(cudaGraph_t g, cudaStream_t s);

#endif
