// Experiment: the CPU's f32 FMA ceiling (the prefill kernels' floor is flops / this rate).
// 12 independent chains of 512-bit FMAs a thread (enough to cover the FMA latency), 1 and 2
// threads. Not part of the library; built by hand on an AVX-512 machine:
//   cc -O3 -march=native -pthread bench/experiments/cpu_fma_peak.c -o cpu_fma_peak
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define STEPS 16666666L

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run(void *out)
{
    __m512 a[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        a[i] = _mm512_set1_ps(1.0f + (float)i * 1e-7f);
    const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < STEPS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++)
            a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < CHAINS; i++)
        s = _mm512_add_ps(s, a[i]);
    *(float *)out = _mm512_reduce_add_ps(s); /* kept, so the chains are not optimized away */
    return NULL;
}

int main(void)
{
    for (int nt = 1; nt <= 2; nt++) {
        pthread_t th[2];
        float r[2];
        const double t0 = now_s();
        for (int i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, run, &r[i]);
        for (int i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        const double t = now_s() - t0, flop = 2.0 * 16 * CHAINS * (double)STEPS * nt;
        printf("%d thread(s): %.1f GFLOP/s (%g)\n", nt, flop / t / 1e9, (double)r[0]);
    }
    return 0;
}
