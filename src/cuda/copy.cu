// Strided copy with a dtype change on CUDA (mlxn_copy, mlxn_permute, each part of mlxn_concat).
// The views come normalized (op_list.h): dim in = ndim - 1 is the one y walks fastest. Kernels,
// chosen in order by the launcher at the bottom:
//   RUNS       x and y both contiguous along dim in (copies, casts, slices, concat parts): the
//              other dims (up to 3) as rows (launch shape: elementwise.cuh); a run of 32 bytes
//              of the narrower type per thread (16 elements of f16/bf16, 8 of f32) with 16-byte
//              accesses when every row of both starts 16-byte aligned (the last thread of a row
//              finishes a partial run element by element), else one per thread
//   TRANSPOSE  x contiguous along another dim b (a permute that moves x's innermost dim): tiles
//              of 32 (along in) x 32 (along b) through shared memory, read with consecutive
//              threads along b (coalesced in x) and written with consecutive threads along in
//              (coalesced in y); the remaining dims (up to 2) walked by grid.z
//   GENERAL    anything else (no unit stride in x, or y strided along in): a thread per element
//              in y's order
// Copies of one dtype move bits (NaN payloads kept); casts go through f32, rounding once.
#include <type_traits>

#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

template <typename Tx, typename Ty> __device__ __forceinline__ Ty convert(Tx v)
{
    if constexpr (std::is_same<Tx, Ty>::value)
        return v;
    else
        return from_f<Ty>(to_f(v));
}

// ---------------------------------------------------------------- RUNS

// Elements a thread moves on the vector path: 32 bytes of the narrower type.
template <typename Tx, typename Ty> constexpr int copy_run()
{
    return sizeof(Tx) < sizeof(Ty) ? wide_run<Tx>() : wide_run<Ty>();
}

template <typename Tx, typename Ty, bool VEC>
__global__ void __launch_bounds__(256) copy_runs(const mlxn_rows x, const mlxn_rows y, int64_t n_rows, int64_t n)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int E = VEC ? copy_run<Tx, Ty>() : 1;
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * E;
    if (i >= n)
        return;
    for (int64_t r = ew_row0(); r < n_rows; r += ew_row_step()) {
        const Tx *xp = reinterpret_cast<const Tx *>(mlxn_rows_ptr(&x, r)) + i;
        Ty *yp = reinterpret_cast<Ty *>(mlxn_rows_ptr(&y, r)) + i;
        if (VEC && i + E <= n) {
            // E elements: 32 or 64 bytes each side, moved as 16-byte words
            __align__(16) Tx tx[E];
            __align__(16) Ty ty[E];
#pragma unroll
            for (int w = 0; w < E * (int)sizeof(Tx) / 16; w++)
                reinterpret_cast<uint4 *>(tx)[w] = reinterpret_cast<const uint4 *>(xp)[w];
#pragma unroll
            for (int j = 0; j < E; j++)
                ty[j] = convert<Tx, Ty>(tx[j]);
#pragma unroll
            for (int w = 0; w < E * (int)sizeof(Ty) / 16; w++)
                reinterpret_cast<uint4 *>(yp)[w] = reinterpret_cast<const uint4 *>(ty)[w];
        } else {
            const int64_t m = n - i < E ? n - i : E;
            for (int64_t j = 0; j < m; j++)
                yp[j] = convert<Tx, Ty>(xp[j]);
        }
    }
}

// The dims before `in` as rows over strides s (mlxn_rows: d1, d2 the two innermost of them).
mlxn_rows outer_rows(const mlxn_copy_args &a, const int64_t *s, const char *base, int64_t *n_rows)
{
    int64_t d[3] = {1, 1, 1}, st[3] = {0, 0, 0};
    const int outer = a.ndim - 1;
    for (int i = 0; i < outer; i++) {
        d[3 - outer + i] = a.shape[i];
        st[3 - outer + i] = s[i];
    }
    *n_rows = d[0] * d[1] * d[2];
    mlxn_rows r;
    r.base = const_cast<char *>(base);
    r.d1 = d[1];
    r.d2 = d[2];
    r.s0 = st[0];
    r.s1 = st[1];
    r.s2 = st[2];
    return r;
}

template <typename Tx, typename Ty> cudaError_t launch_runs(const mlxn_copy_args &a, cudaStream_t s, bool pdl)
{
    int64_t n_rows;
    const mlxn_rows x = outer_rows(a, a.xs, a.x, &n_rows), y = outer_rows(a, a.ys, a.y, &n_rows);
    const int64_t n = a.shape[a.ndim - 1];
    if (rows_aligned16(x) && rows_aligned16(y)) {
        constexpr int E = copy_run<Tx, Ty>();
        const ew_shape g = ew_launch_shape(n_rows, (n + E - 1) / E);
        return launch(copy_runs<Tx, Ty, true>, g.grid, g.block, 0, s, pdl, x, y, n_rows, n);
    }
    const ew_shape g = ew_launch_shape(n_rows, n);
    return launch(copy_runs<Tx, Ty, false>, g.grid, g.block, 0, s, pdl, x, y, n_rows, n);
}

// ---------------------------------------------------------------- TRANSPOSE

constexpr int T_TILE = 32, T_ROWS = 8; // a tile of T_TILE x T_TILE; blocks of T_TILE x T_ROWS threads

struct transpose_plan {
    const char *x;
    char *y;
    int64_t na, nb;           // sizes along in (y's fastest) and b (x's fastest)
    int64_t xa, xb, ya, yb;   // byte strides along them
    int64_t batch, c1;        // tiles' other dims: batch = c0 * c1 index combinations, c1 the inner one
    int64_t xc0, xc1, yc0, yc1;
};

// Tile layout in shared memory: tile[i][j] holds the element at (in = i0 + i, b = j0 + j); rows
// padded to 33 elements so that the column reads of the write phase hit 32 different banks
// (4-byte types: word 33 i + j; 2-byte types: word (33 i + j) / 2, distinct over the 32 lanes).
template <typename Tx, typename Ty>
__global__ void __launch_bounds__(T_TILE *T_ROWS) copy_transpose(const transpose_plan p)
{
    __shared__ Tx tile[T_TILE][T_TILE + 1];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t i0 = (int64_t)blockIdx.x * T_TILE, tiles_b = (p.nb + T_TILE - 1) / T_TILE;
    for (int64_t z = blockIdx.z; z < p.batch; z += gridDim.z) {
        const int64_t c0 = z / p.c1, c1 = z % p.c1;
        const char *xz = p.x + c0 * p.xc0 + c1 * p.xc1;
        char *yz = p.y + c0 * p.yc0 + c1 * p.yc1;
        for (int64_t tb = blockIdx.y; tb < tiles_b; tb += gridDim.y) {
            const int64_t j0 = tb * T_TILE;
            // read: consecutive threads along b, x's unit stride
            if (j0 + tx < p.nb)
#pragma unroll
                for (int k = 0; k < T_TILE; k += T_ROWS)
                    if (i0 + ty + k < p.na)
                        tile[ty + k][tx] =
                            *reinterpret_cast<const Tx *>(xz + (i0 + ty + k) * p.xa + (j0 + tx) * p.xb);
            __syncthreads();
            // write: consecutive threads along in, y's fastest dim
            if (i0 + tx < p.na)
#pragma unroll
                for (int k = 0; k < T_TILE; k += T_ROWS)
                    if (j0 + ty + k < p.nb)
                        *reinterpret_cast<Ty *>(yz + (i0 + tx) * p.ya + (j0 + ty + k) * p.yb) =
                            convert<Tx, Ty>(tile[tx][ty + k]);
            __syncthreads(); // the tile is read before the next one overwrites it
        }
    }
}

template <typename Tx, typename Ty>
cudaError_t launch_transpose(const mlxn_copy_args &a, int b, cudaStream_t s, bool pdl)
{
    const int in = a.ndim - 1;
    transpose_plan p = {};
    p.x = a.x;
    p.y = a.y;
    p.na = a.shape[in];
    p.nb = a.shape[b];
    p.xa = a.xs[in];
    p.xb = a.xs[b];
    p.ya = a.ys[in];
    p.yb = a.ys[b];
    int64_t cs[2] = {1, 1}, cx[2] = {0, 0}, cy[2] = {0, 0};
    int nc = 0;
    for (int k = 0; k < in; k++)
        if (k != b) {
            cs[nc] = a.shape[k];
            cx[nc] = a.xs[k];
            cy[nc] = a.ys[k];
            nc++;
        }
    p.batch = cs[0] * cs[1];
    p.c1 = cs[1];
    p.xc0 = cx[0];
    p.xc1 = cx[1];
    p.yc0 = cy[0];
    p.yc1 = cy[1];
    const int64_t ta = (p.na + T_TILE - 1) / T_TILE, tb = (p.nb + T_TILE - 1) / T_TILE;
    const dim3 grid((unsigned)ta, (unsigned)(tb < 65535 ? tb : 65535), (unsigned)(p.batch < 65535 ? p.batch : 65535));
    return launch(copy_transpose<Tx, Ty>, grid, dim3(T_TILE, T_ROWS), 0, s, pdl, p);
}

// ---------------------------------------------------------------- GENERAL

template <typename Tx, typename Ty> __global__ void __launch_bounds__(256) copy_general(const mlxn_copy_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    int64_t numel = 1;
    for (int d = 0; d < a.ndim; d++)
        numel *= a.shape[d];
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < numel; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t rest = e, xo = 0, yo = 0;
        for (int d = a.ndim - 1; d >= 0; d--) {
            const int64_t i = rest % a.shape[d];
            rest /= a.shape[d];
            xo += i * a.xs[d];
            yo += i * a.ys[d];
        }
        *reinterpret_cast<Ty *>(a.y + yo) = convert<Tx, Ty>(*reinterpret_cast<const Tx *>(a.x + xo));
    }
}

template <typename Tx, typename Ty> cudaError_t launch_t(const mlxn_copy_args &a, cudaStream_t s, bool pdl)
{
    const int in = a.ndim - 1;
    const int64_t xes = sizeof(Tx), yes = sizeof(Ty);
    if (a.xs[in] == xes && a.ys[in] == yes)
        return launch_runs<Tx, Ty>(a, s, pdl);
    if (a.xs[in] != xes) {
        int b = -1; // x's unit-stride dim; of several (x repeating elements), the longest
        for (int k = 0; k < in; k++)
            if (a.xs[k] == xes && (b < 0 || a.shape[k] > a.shape[b]))
                b = k;
        if (b >= 0)
            return launch_transpose<Tx, Ty>(a, b, s, pdl);
    }
    int64_t numel = 1;
    for (int d = 0; d < a.ndim; d++)
        numel *= a.shape[d];
    const int64_t blocks = (numel + 255) / 256;
    return launch(copy_general<Tx, Ty>, dim3((unsigned)(blocks < (1 << 20) ? blocks : (1 << 20))), dim3(256), 0, s,
                  pdl, a);
}

template <typename Tx> cudaError_t launch_from(const mlxn_copy_args &a, cudaStream_t s, bool pdl)
{
    switch (a.y_dtype) {
    case MLXN_DTYPE_F32: return launch_t<Tx, float>(a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<Tx, __half>(a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<Tx, __nv_bfloat16>(a, s, pdl);
    }
    return cudaErrorInvalidValue;
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_copy(const mlxn_copy_args *a, cudaStream_t s, bool pdl)
{
    switch (a->x_dtype) {
    case MLXN_DTYPE_F32: return launch_from<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_from<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_from<__nv_bfloat16>(*a, s, pdl);
    case MLXN_DTYPE_I32: return launch_t<int32_t, int32_t>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
