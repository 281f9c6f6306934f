/* mlxn bench-model: prefill tok/s at 512 and 2048 tokens and decode tok/s at context 128 and
 * 4096 (greedy, sampled on the device: the step `mlxn run` takes per token), llama-bench style. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "mlxn_model.h"

#define TRY(expr)                    \
    do {                             \
        mlxn_status st_ = (expr);    \
        if (st_ != MLXN_STATUS_OK)   \
            return st_;              \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Token ids spread over the vocabulary (a fixed pseudo-random text: speed does not depend on
 * which ids they are). */
static void fill_ids(int32_t *ids, int64_t n, int64_t vocab)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
}

/* Median seconds of `reps` prefills of n tokens from an empty cache. */
static mlxn_status time_prefill(mlxn_model *m, const int32_t *ids, int64_t n, int reps, double *sec)
{
    double t[8];
    for (int r = 0; r <= reps; r++) { /* the first run warms up */
        mlxn_model_reset(m);
        const double t0 = now_s();
        mlxn_status st = mlxn_model_eval(m, ids, n, false, NULL);
        if (st != MLXN_STATUS_OK)
            return st;
        if (r)
            t[r - 1] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    *sec = t[reps / 2];
    return MLXN_STATUS_OK;
}

/* Seconds per decoded token after a context of ctx tokens (n_gen greedy steps, timed together). */
static mlxn_status time_decode(mlxn_model *m, const int32_t *ids, int64_t ctx, int n_gen, double *sec)
{
    mlxn_sampler_params sp = mlxn_sampler_params_default();
    sp.temperature = 0;
    mlxn_model_reset(m);
    int32_t next;
    TRY(mlxn_model_eval_sample(m, ids, ctx, &sp, NULL, 0, 0, &next));
    for (int i = 0; i < 4; i++) /* warm-up: the decode graph is captured on the second step */
        TRY(mlxn_model_eval_sample(m, &next, 1, &sp, NULL, 0, (uint64_t)i + 1, &next));
    const double t0 = now_s();
    for (int i = 0; i < n_gen; i++)
        TRY(mlxn_model_eval_sample(m, &next, 1, &sp, NULL, 0, (uint64_t)i + 5, &next));
    *sec = (now_s() - t0) / n_gen;
    return MLXN_STATUS_OK;
}

int cmd_bench_model(int argc, char **argv)
{
    const char *path = NULL, *device = NULL, *kv = NULL;
    bool json = false, quick = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = argv[++i];
        else if (strcmp(argv[i], "--kv") == 0 && i + 1 < argc)
            kv = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else {
            fprintf(stderr, "mlxn bench-model: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "mlxn bench-model: no model (-m FILE.gguf)\n");
        return 2;
    }
    mlxn_device *dev = NULL;
    int rc = open_device(device, &dev);
    if (rc)
        return rc;
    mlxn_device_info di;
    mlxn_device_get_info(dev, &di);
    const bool cuda = di.kind == MLXN_DEVICE_CUDA;
    /* the CPU takes minutes for the long cases: it runs the short ones */
    const int64_t prefill[2] = {512, 2048}, ctx[2] = {128, 4096};
    const int n_cases = cuda && !quick ? 2 : 1;
    mlxn_model_options o = mlxn_model_options_default();
    o.n_ctx = (prefill[n_cases - 1] > ctx[n_cases - 1] ? prefill[n_cases - 1] : ctx[n_cases - 1]) + 160;
    o.n_batch = 512;
    if (cuda)
        o.kv_dtype = MLXN_DTYPE_F16;
    if (kv && (rc = parse_kv_dtype("bench-model", kv, &o.kv_dtype))) {
        mlxn_device_free(dev);
        return rc;
    }
    mlxn_model *m = NULL;
    const double t0 = now_s();
    mlxn_status st = mlxn_model_load(dev, path, &o, &m);
    const double load_s = now_s() - t0;
    int32_t *ids = NULL;
    if (st == MLXN_STATUS_OK && !(ids = malloc(sizeof *ids * (size_t)o.n_ctx)))
        st = MLXN_STATUS_ERR_OUT_OF_MEMORY;
    if (st != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn bench-model: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
        mlxn_model_free(m);
        mlxn_device_free(dev);
        return 1;
    }
    const mlxn_model_info in = mlxn_model_get_info(m);
    fill_ids(ids, o.n_ctx, in.n_vocab);
    if (!json)
        printf("model %s (%s), %.1f MiB of weights, device %s, KV %s, load %.2f s\n\n%-10s %-10s %12s %12s\n",
               in.name, in.arch, (double)in.weight_bytes / (1 << 20), di.name, mlxn_dtype_name(o.kv_dtype), load_s,
               "test", "tokens", "ms", "tok/s");
    fflush(stdout);
    for (int c = 0; c < n_cases && st == MLXN_STATUS_OK; c++) {
        double sec = 0;
        st = time_prefill(m, ids, prefill[c], cuda ? 5 : 1, &sec);
        if (st == MLXN_STATUS_OK) {
            if (json)
                printf("{\"model\":\"%s\",\"device\":\"%s\",\"test\":\"prefill\",\"tokens\":%lld,\"ms\":%.3f,"
                       "\"tok_s\":%.1f}\n",
                       in.name, di.name, (long long)prefill[c], sec * 1e3, (double)prefill[c] / sec);
            else
                printf("%-10s %-10lld %12.3f %12.1f\n", "prefill", (long long)prefill[c], sec * 1e3,
                       (double)prefill[c] / sec);
        }
    }
    for (int c = 0; c < n_cases && st == MLXN_STATUS_OK; c++) {
        double sec = 0;
        st = time_decode(m, ids, ctx[c], cuda ? 128 : 16, &sec);
        if (st == MLXN_STATUS_OK) {
            if (json)
                printf("{\"model\":\"%s\",\"device\":\"%s\",\"test\":\"decode\",\"context\":%lld,\"ms\":%.4f,"
                       "\"tok_s\":%.1f}\n",
                       in.name, di.name, (long long)ctx[c], sec * 1e3, 1.0 / sec);
            else
                printf("%-10s @%-9lld %12.4f %12.1f\n", "decode", (long long)ctx[c], sec * 1e3, 1.0 / sec);
        }
    }
    if (st != MLXN_STATUS_OK)
        fprintf(stderr, "mlxn bench-model: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
    free(ids);
    mlxn_model_free(m);
    mlxn_device_free(dev);
    return st == MLXN_STATUS_OK ? 0 : 1;
}
