/* Quantized matmul for prefill on tensor cores: W decoded to bf16 and x rounded to bf16 in the
 * stream's scratch memory, then one cuBLAS bf16 GEMM with f32 accumulation (HGMMA on Hopper).
 * The scratch grows to the largest call and is kept (a model's largest weight, reused by every
 * layer); it cannot grow while the stream captures a graph, so a captured prefill needs one
 * eager call of its size first. Why this rather than a fused kernel: bench/NOTES.md. */
#include <cublas_v2.h>

#include "cuda.h"

/* From this many rows of x the GEMM beats the SIMT tile kernel even with the decode pass (at
 * M = 64 the bf16 copy of W is written and read once for 64 rows). */
#define GEMM_MIN_M 64

/* y rows at one stride (what a GEMM's ldc can describe) */
static bool uniform_rows(const mlxn_rows *r, int64_t rows, int64_t *stride)
{
    if (rows > r->d2 && r->s1 != r->d2 * r->s2)
        return false;
    if (rows > r->d1 * r->d2 && r->s0 != r->d1 * r->s1)
        return false;
    *stride = r->s2;
    return true;
}

bool mlxn_cuda_gemm_takes(const mlxn_stream *s, const mlxn_qmatmul_args *a)
{
    (void)s;
    int64_t ldy;
    return a->M >= GEMM_MIN_M && uniform_rows(&a->y, a->M, &ldy) && ldy % 4 == 0 && ldy / 4 >= a->N &&
           a->K <= INT32_MAX && a->N <= INT32_MAX && a->M <= INT32_MAX && ldy / 4 <= INT32_MAX;
}

void mlxn_cuda_gemm_release(mlxn_cuda_stream_state *st)
{
    if (st->cublas)
        cublasDestroy((cublasHandle_t)st->cublas);
    if (st->scratch)
        cudaFree(st->scratch);
    st->cublas = st->scratch = NULL;
    st->scratch_bytes = 0;
}

#define CUBLAS_CHECK(fn, call)                                                                 \
    do {                                                                                       \
        cublasStatus_t cb_ = (call);                                                           \
        if (cb_ != CUBLAS_STATUS_SUCCESS)                                                      \
            return mlxn_error(MLXN_STATUS_ERR_DEVICE, fn, "%s: %s", #call, cublasGetStatusString(cb_)); \
    } while (0)

mlxn_status mlxn_cuda_qmatmul_gemm(mlxn_stream *s, const mlxn_qmatmul_args *a)
{
    static const char *fn = "mlxn_qmatmul";
    mlxn_cuda_stream_state *st = s->impl;
    MLXN_CUDA_CHECK(fn, cudaSetDevice(s->device->ordinal));
    const size_t w_bytes = ((size_t)(a->N * a->K) * 2 + 255) / 256 * 256, need = w_bytes + (size_t)(a->M * a->K) * 2;
    if (st->scratch_bytes < need || !st->cublas) {
        if (s->capturing)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "a prefill of %lld x %lld x %lld needs %zu MiB of stream scratch and a cuBLAS "
                              "handle, which cannot be made while capturing: run one of this size before "
                              "capturing",
                              (long long)a->M, (long long)a->N, (long long)a->K, (need + (1 << 20) - 1) >> 20);
        if (!st->cublas) {
            cublasHandle_t h;
            CUBLAS_CHECK(fn, cublasCreate(&h));
            st->cublas = h;
        }
        if (st->scratch_bytes < need) {
            if (st->scratch)
                MLXN_CUDA_CHECK(fn, cudaFree(st->scratch)); /* waits for the work that used it */
            st->scratch = NULL;
            st->scratch_bytes = 0;
            MLXN_CUDA_CHECK(fn, cudaMalloc(&st->scratch, need));
            st->scratch_bytes = need;
        }
    }
    void *wb = st->scratch, *xb = (char *)st->scratch + w_bytes;
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_qmatmul_to_bf16(a, wb, xb, st->stream));
    /* row-major y[M][N] = x[M][K] . W[N][K]^T is column-major y^T (N x M) = W^T (op T on the
     * column-major K x N view of W) . x^T (the column-major K x M view of x) */
    int64_t ldy = 0;
    uniform_rows(&a->y, a->M, &ldy); /* true: mlxn_cuda_gemm_takes checked it */
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h = st->cublas;
    CUBLAS_CHECK(fn, cublasSetStream(h, st->stream));
    CUBLAS_CHECK(fn, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)a->N, (int)a->M, (int)a->K, &one, wb,
                                  CUDA_R_16BF, (int)a->K, xb, CUDA_R_16BF, (int)a->K, &zero, a->y.base, CUDA_R_32F,
                                  (int)(ldy / 4), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return MLXN_STATUS_OK;
}
