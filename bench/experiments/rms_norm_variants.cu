// Experiment: times launch plans of the rms_norm kernels on the benchmark shapes, to choose
// the variant chain in src/cuda/rms_norm.cu. Not part of the library; built by hand:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I include -I src \
//        bench/experiments/rms_norm_variants.cu -o rms_norm_variants
// Output: one line per (shape, plan) with the median per-call time and GB/s.
#include "../../src/cuda/rms_norm.cu"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "experiment.h"

static mlxn_rows rows_of_ptr(void *p, int64_t row_bytes)
{
    mlxn_rows r = {};
    r.base = (char *)p;
    r.d1 = 1;
    r.d2 = 1 << 30;
    r.s2 = row_bytes;
    return r;
}

template <typename T, typename W>
static void run(const char *label, int64_t rows, int64_t n, bool with_w, int sets_wanted)
{
    const size_t es = sizeof(T), bytes = (size_t)rows * n * es;
    const int sets = std::max(3, sets_wanted);
    std::vector<void *> x(sets), y(sets);
    for (int i = 0; i < sets; i++) {
        CK(cudaMalloc(&x[i], bytes));
        CK(cudaMalloc(&y[i], bytes));
        CK(cudaMemset(x[i], 0x3c, bytes)); // about 1.1 in bf16/f16, a small f32: never zero
    }
    void *w;
    CK(cudaMalloc(&w, n * 4));
    CK(cudaMemset(w, 0x3f, n * 4));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    mlxn_rms_norm_args a = {};
    a.n_rows = rows;
    a.n = n;
    a.dtype = sizeof(T) == 4 ? MLXN_DTYPE_F32 : std::is_same<T, __half>::value ? MLXN_DTYPE_F16 : MLXN_DTYPE_BF16;
    a.w = with_w ? w : nullptr;
    a.w_dtype = MLXN_DTYPE_F32;
    a.eps = 1e-6f;
    const double moved = 2.0 * bytes + (with_w ? n * 4 : 0);

    struct variant {
        const char *name;
        rms_norm_plan p;
    };
    std::vector<variant> vs;
    rms_norm_plan base = plan_for<T>(a = ([&] { a.x = rows_of_ptr(x[0], n * es); a.y = rows_of_ptr(y[0], n * es); return a; })(), false);
    vs.push_back({"chain", base});
    rms_norm_plan pdl = base;
    pdl.pdl = true;
    vs.push_back({"chain+pdl", pdl});
    const int64_t nvec = n / (16 / es);
    for (int nv : {1, 2, 4, 8}) {
        for (bool pd : {false, true}) {
            rms_norm_plan p = {};
            p.kernel = KERNEL_BLOCK_ROW;
            p.nv = nv;
            p.threads = (unsigned)std::min<int64_t>(block_row_max_threads(nv), ((nvec + nv - 1) / nv + 31) / 32 * 32);
            p.grid = grid_for(rows);
            p.pdl = pd;
            if (p.threads * (int64_t)nv < nvec || p.threads < 32)
                continue;
            static char names[64][64];
            static int k = 0;
            snprintf(names[k % 64], 64, "block nv=%d t=%u%s", nv, p.threads, pd ? "+pdl" : "");
            vs.push_back({names[k++ % 64], p});
        }
    }
    if (nvec <= 32 * 16) {
        for (bool pd : {false, true}) {
            rms_norm_plan p = {};
            p.kernel = KERNEL_WARP_ROWS;
            p.threads = 32 * WARP_ROWS_PER_BLOCK;
            p.grid = grid_for((rows + WARP_ROWS_PER_BLOCK - 1) / WARP_ROWS_PER_BLOCK);
            p.nv = pow2_nv((nvec + 31) / 32);
            p.pdl = pd;
            if (p.nv * 32 >= nvec)
                vs.push_back({pd ? "warp+pdl" : "warp", p});
        }
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (auto &v : vs) {
        const int batch = std::max(8, sets);
        std::vector<float> ms;
        for (int rep = 0; rep < 31; rep++) {
            CK(cudaEventRecord(e0, s));
            for (int i = 0; i < batch; i++) {
                a.x = rows_of_ptr(x[i % sets], n * es);
                a.y = rows_of_ptr(y[i % sets], n * es);
                CK((launch_plan<T, W>(a, v.p, s)));
            }
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (rep > 0)
                ms.push_back(t / batch);
        }
        std::sort(ms.begin(), ms.end());
        double med = ms[ms.size() / 2];
        printf("%-10s %6lldx%-6lld w=%d %-24s %8.2f us %8.1f GB/s\n", label, (long long)rows,
               (long long)n, with_w, v.name, med * 1e3, moved / (med * 1e-3) / 1e9);
    }
    for (int i = 0; i < sets; i++) {
        cudaFree(x[i]);
        cudaFree(y[i]);
    }
    cudaFree(w);
    cudaStreamDestroy(s);
}

// cudaMemcpy of the op's bytes (read = write = bytes), rotated over sets like the op: the
// copy ceiling at this size, with the same per-call fixed costs.
static void copy_at_size(size_t bytes, int sets)
{
    std::vector<void *> a(sets), b(sets);
    for (int i = 0; i < sets; i++) {
        CK(cudaMalloc(&a[i], bytes));
        CK(cudaMalloc(&b[i], bytes));
        CK(cudaMemset(a[i], 1, bytes));
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms;
    const int batch = 8;
    for (int rep = 0; rep < 31; rep++) {
        CK(cudaEventRecord(e0));
        for (int i = 0; i < batch; i++)
            CK(cudaMemcpyAsync(b[i % sets], a[i % sets], bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (rep)
            ms.push_back(t / batch);
    }
    std::sort(ms.begin(), ms.end());
    printf("copy of %zu MiB, %d sets rotated: %8.2f us %8.1f GB/s\n", bytes >> 20, sets,
           ms[ms.size() / 2] * 1e3, 2.0 * bytes / (ms[ms.size() / 2] * 1e-3) / 1e9);
    for (int i = 0; i < sets; i++) {
        cudaFree(a[i]);
        cudaFree(b[i]);
    }
}

int main()
{

    // copy ceiling, as in mlxn bench
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < 21; i++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    printf("copy ceiling %.1f GB/s\n", 2.0 * bytes / (ms[10] * 1e-3) / 1e9);
    cudaFree(a);
    cudaFree(b);
    copy_at_size((size_t)32 << 20, 4);
    copy_at_size((size_t)64 << 20, 3);
    copy_at_size((size_t)128 << 20, 3);
    run<float, float>("f32", 4096, 4096, true, 3);
    run<float, float>("f32", 4096, 4096, false, 3);
    run<__nv_bfloat16, float>("bf16", 4096, 4096, true, 4);
    run<__nv_bfloat16, float>("bf16", 4096, 4096, false, 4);
    run<__nv_bfloat16, float>("bf16", 32768, 2048, true, 3);
    run<float, float>("f32", 32768, 2048, true, 3);
    return 0;
}
