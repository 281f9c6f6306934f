// Experiment: A/B timing of the CPU decode mat-vec (mlxn_qmatmul, M = 1) across builds of the
// library, for a shared machine where `mlxn bench` runs of the same tree differ by up to 1.6x.
// Each build's libmlxn.so is loaded into this one process and the builds take turns every
// `burst` calls (the order rotating each round), so that other tenants' load falls on all of
// them alike. W rotates over sets totalling ~256 MB (out of cache). Not part of the library;
// built by hand:
//   cc -O2 -std=c11 -D_GNU_SOURCE -I include bench/experiments/cpu_qmatmul_ab.c -o cpu_qmatmul_ab -ldl
//   ./cpu_qmatmul_ab 4096 4096 60 5 q4_0,q8_0,q4_K,q6_K a/libmlxn.so.0.1.0 b/libmlxn.so.0.1.0
// AB_SETS=1 in the environment uses one W (in cache when it fits: the kernels' compute rate);
// MLXN_THREADS sets the worker threads; AB_KERNELS (portable, avx2, avx512, avx512-bf16) the level;
// AB_M the rows of x (default 1; from 2 the rate printed is GFLOP/s as well).
// Output: per (format, build) the min, p10, p25 and median of the per-call times.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlxn.h"

#define MAX_LIBS 8
#define MAX_SETS 64

typedef struct lib {
    const char *path;
    mlxn_device_options (*options_default)(void);
    mlxn_status (*device_create)(const mlxn_device_options *, mlxn_device **);
    mlxn_status (*stream_create)(mlxn_device *, mlxn_stream **);
    mlxn_status (*stream_sync)(mlxn_stream *);
    mlxn_status (*borrow)(mlxn_device *, void *, size_t, mlxn_buffer **);
    mlxn_tensor (*tensor_make)(mlxn_buffer *, size_t, mlxn_dtype, int, const int64_t *);
    mlxn_status (*qmatmul)(mlxn_stream *, const mlxn_tensor *, const mlxn_tensor *, const mlxn_tensor *);
    const char *(*last_error)(void);
    int64_t (*block_elems)(mlxn_dtype);
    int64_t (*block_bytes)(mlxn_dtype);
    mlxn_device *dev;
    mlxn_stream *s;
} lib;

static const struct {
    const char *name;
    mlxn_dtype dtype;
} formats[] = {
    {"q4_0", MLXN_DTYPE_Q4_0}, {"q4_1", MLXN_DTYPE_Q4_1}, {"q5_0", MLXN_DTYPE_Q5_0}, {"q8_0", MLXN_DTYPE_Q8_0},
    {"q2_K", MLXN_DTYPE_Q2_K}, {"q3_K", MLXN_DTYPE_Q3_K}, {"q4_K", MLXN_DTYPE_Q4_K}, {"q5_K", MLXN_DTYPE_Q5_K},
    {"q6_K", MLXN_DTYPE_Q6_K}, {"q5_1", MLXN_DTYPE_Q5_1}, {"iq4_nl", MLXN_DTYPE_IQ4_NL}, {"iq4_xs", MLXN_DTYPE_IQ4_XS},
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int load(lib *l, const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 0;
    }
    l->path = path;
    *(void **)&l->options_default = dlsym(h, "mlxn_device_options_default");
    *(void **)&l->device_create = dlsym(h, "mlxn_device_create");
    *(void **)&l->stream_create = dlsym(h, "mlxn_stream_create");
    *(void **)&l->stream_sync = dlsym(h, "mlxn_stream_sync");
    *(void **)&l->borrow = dlsym(h, "mlxn_buffer_create_host_borrowed");
    *(void **)&l->tensor_make = dlsym(h, "mlxn_tensor_make");
    *(void **)&l->qmatmul = dlsym(h, "mlxn_qmatmul");
    *(void **)&l->last_error = dlsym(h, "mlxn_last_error");
    *(void **)&l->block_elems = dlsym(h, "mlxn_dtype_block_elems");
    *(void **)&l->block_bytes = dlsym(h, "mlxn_dtype_block_bytes");
    mlxn_device_options o = l->options_default();
    o.kind = MLXN_DEVICE_CPU;
    const char *kl = getenv("AB_KERNELS"); /* portable, avx2, avx512 or avx512-bf16; unset: the best */
    if (kl)
        o.cpu_kernels = !strcmp(kl, "portable") ? MLXN_CPU_KERNELS_PORTABLE
                        : !strcmp(kl, "avx2")   ? MLXN_CPU_KERNELS_AVX2
                        : !strcmp(kl, "avx512") ? MLXN_CPU_KERNELS_AVX512
                                                : MLXN_CPU_KERNELS_AVX512_BF16;
    if (l->device_create(&o, &l->dev) != MLXN_STATUS_OK || l->stream_create(l->dev, &l->s) != MLXN_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", path, l->last_error());
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 7 || argc - 6 > MAX_LIBS) {
        fprintf(stderr, "usage: %s N K rounds burst fmt[,fmt...] lib.so [lib.so ...] (up to %d)\n", argv[0], MAX_LIBS);
        return 2;
    }
    const int64_t N = atoll(argv[1]), K = atoll(argv[2]);
    const int rounds = atoi(argv[3]), burst = atoi(argv[4]), nl = argc - 6;
    lib libs[MAX_LIBS];
    for (int i = 0; i < nl; i++)
        if (!load(&libs[i], argv[6 + i]))
            return 1;
    const int64_t M = getenv("AB_M") && atoll(getenv("AB_M")) > 0 ? atoll(getenv("AB_M")) : 1;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *y = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t k = 0; k < M * K; k++)
        x[k] = (float)rand() / (float)RAND_MAX - 0.5f;
    const int64_t xshape[2] = {M, K}, yshape[2] = {M, N}, wshape[2] = {N, K};
    for (char *f = strtok(argv[5], ","); f; f = strtok(NULL, ",")) {
        int fi = -1;
        for (int i = 0; i < (int)(sizeof formats / sizeof formats[0]); i++)
            if (!strcmp(formats[i].name, f))
                fi = i;
        if (fi < 0) {
            fprintf(stderr, "unknown format %s\n", f);
            return 2;
        }
        const mlxn_dtype dt = formats[fi].dtype;
        const size_t wb = (size_t)N * (size_t)(K / libs[0].block_elems(dt)) * (size_t)libs[0].block_bytes(dt);
        int nsets = (int)(256e6 / (double)wb) + 2;
        nsets = nsets > MAX_SETS ? MAX_SETS : nsets;
        if (getenv("AB_SETS")) /* AB_SETS=1: one W, in cache when it fits (the kernels' compute rate) */
            nsets = atoi(getenv("AB_SETS")) < 1 ? 1 : atoi(getenv("AB_SETS")) > MAX_SETS ? MAX_SETS : atoi(getenv("AB_SETS"));
        /* random bytes are valid codes; the time does not depend on the values */
        unsigned char *w = malloc(wb * (size_t)nsets);
        for (size_t i = 0; i < wb * (size_t)nsets; i++)
            w[i] = (unsigned char)rand();
        const int per_lib = rounds * burst;
        double *t = malloc(sizeof(double) * (size_t)(nl * per_lib));
        int taken[MAX_LIBS] = {0};
        mlxn_buffer *bx[MAX_LIBS], *by[MAX_LIBS], *bw[MAX_LIBS][MAX_SETS];
        for (int i = 0; i < nl; i++) {
            libs[i].borrow(libs[i].dev, x, sizeof(float) * (size_t)(M * K), &bx[i]);
            libs[i].borrow(libs[i].dev, y, sizeof(float) * (size_t)(M * N), &by[i]);
            for (int s = 0; s < nsets; s++)
                libs[i].borrow(libs[i].dev, w + (size_t)s * wb, wb, &bw[i][s]);
        }
        int set = 0;
        for (int r = 0; r < rounds; r++)
            for (int j = 0; j < nl; j++) {
                lib *l = &libs[(j + r) % nl];
                const int li = (int)(l - libs);
                const mlxn_tensor tx = l->tensor_make(bx[li], 0, MLXN_DTYPE_F32, 2, xshape);
                const mlxn_tensor ty = l->tensor_make(by[li], 0, MLXN_DTYPE_F32, 2, yshape);
                for (int b = 0; b <= burst; b++) { /* call 0 after a switch is a warm-up */
                    const mlxn_tensor tw = l->tensor_make(bw[li][set], 0, dt, 2, wshape);
                    set = (set + 1) % nsets;
                    const double t0 = now_s();
                    if (l->qmatmul(l->s, &tx, &tw, &ty) != MLXN_STATUS_OK || l->stream_sync(l->s) != MLXN_STATUS_OK) {
                        fprintf(stderr, "%s: %s\n", l->path, l->last_error());
                        return 1;
                    }
                    if (b)
                        t[li * per_lib + taken[li]++] = now_s() - t0;
                }
            }
        for (int i = 0; i < nl; i++) {
            double *v = t + i * per_lib;
            qsort(v, (size_t)per_lib, sizeof *v, cmp_double);
            printf("%-5s M%lld %lldx%lld %-40s n=%d min %7.1f p10 %7.1f p25 %7.1f median %7.1f us (%.1f GB/s", f,
                   (long long)M, (long long)N, (long long)K, libs[i].path, per_lib, v[0] * 1e6, v[per_lib / 10] * 1e6,
                   v[per_lib / 4] * 1e6, v[per_lib / 2] * 1e6, (double)wb / v[per_lib / 2] / 1e9);
            if (M > 1)
                printf(", %.1f GFLOP/s", 2.0 * (double)(M * N * K) / v[per_lib / 2] / 1e9);
            printf(")\n");
        }
        fflush(stdout);
        free(t);
        free(w);
    }
    return 0;
}
