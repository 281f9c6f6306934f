/* mlxn run: load a GGUF model, encode the prompt, generate with on-device sampling and stream
 * the text; timings at the end (stderr, or one JSON object on stdout with --json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "mlxn_model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct run_args {
    const char *model, *prompt, *device, *kv; /* kv: the --kv value, NULL for the default */
    int64_t n_predict, n_ctx;
    bool chat, json;
    mlxn_sampler_params sampler;
} run_args;

static int parse(int argc, char **argv, run_args *a)
{
    a->prompt = "The capital of France is";
    a->n_predict = 64;
    /* llama.cpp's defaults: a little randomness, the tail cut off */
    a->sampler = mlxn_sampler_params_default();
    a->sampler.temperature = 0.8f;
    a->sampler.top_k = 40;
    a->sampler.top_p = 0.95f;
    a->sampler.min_p = 0.05f;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(o, "-m") == 0 || strcmp(o, "--model") == 0)
            a->model = v;
        else if (strcmp(o, "-p") == 0 || strcmp(o, "--prompt") == 0)
            a->prompt = v;
        else if (strcmp(o, "-n") == 0)
            a->n_predict = v ? atoll(v) : 0;
        else if (strcmp(o, "--device") == 0)
            a->device = v;
        else if (strcmp(o, "--ctx") == 0)
            a->n_ctx = v ? atoll(v) : 0;
        else if (strcmp(o, "--kv") == 0)
            a->kv = v;
        else if (strcmp(o, "--temp") == 0)
            a->sampler.temperature = v ? (float)atof(v) : 0;
        else if (strcmp(o, "--top-k") == 0)
            a->sampler.top_k = v ? atoi(v) : 0;
        else if (strcmp(o, "--top-p") == 0)
            a->sampler.top_p = v ? (float)atof(v) : 1;
        else if (strcmp(o, "--min-p") == 0)
            a->sampler.min_p = v ? (float)atof(v) : 0;
        else if (strcmp(o, "--repeat-penalty") == 0)
            a->sampler.repeat_penalty = v ? (float)atof(v) : 1;
        else if (strcmp(o, "--seed") == 0)
            a->sampler.seed = v ? strtoull(v, NULL, 10) : 0;
        else {
            takes = false;
            if (strcmp(o, "--chat") == 0)
                a->chat = true;
            else if (strcmp(o, "--json") == 0)
                a->json = true;
            else {
                fprintf(stderr, "mlxn run: unknown option '%s'\n", o);
                return 2;
            }
        }
        if (takes && !v) {
            fprintf(stderr, "mlxn run: %s needs a value\n", o);
            return 2;
        }
        i += takes;
    }
    if (!a->model) {
        fprintf(stderr, "mlxn run: no model (-m FILE.gguf; scripts/fetch_models.py fetches the default ones)\n");
        return 2;
    }
    if (a->n_predict < 0 || !a->prompt) {
        fprintf(stderr, "mlxn run: -n must be >= 0\n");
        return 2;
    }
    return 0;
}

/* The prompt as token ids (chat template applied with --chat); *n ids in a malloc'd array. */
static int encode_prompt(const mlxn_tokenizer *tok, const run_args *a, int32_t **ids, size_t *n)
{
    const char *text = a->prompt;
    char *chat = NULL;
    size_t len = strlen(text), need = 0;
    if (a->chat) {
        if (mlxn_tokenizer_chat(tok, text, NULL, 0, &need) != MLXN_STATUS_OK || !(chat = malloc(need + 1)) ||
            mlxn_tokenizer_chat(tok, text, chat, need + 1, &len) != MLXN_STATUS_OK) {
            fprintf(stderr, "mlxn run: chat template: %s\n", mlxn_last_error());
            free(chat);
            return 1;
        }
        text = chat;
    }
    mlxn_status st = mlxn_tokenizer_encode(tok, text, len, true, a->chat, NULL, 0, n);
    *ids = st == MLXN_STATUS_OK ? malloc((*n ? *n : 1) * sizeof **ids) : NULL;
    if (*ids)
        st = mlxn_tokenizer_encode(tok, text, len, true, a->chat, *ids, *n, n);
    free(chat);
    if (st != MLXN_STATUS_OK || !*ids || *n == 0) {
        fprintf(stderr, "mlxn run: encoding the prompt: %s\n", *n == 0 ? "no tokens" : mlxn_last_error());
        free(*ids);
        return 1;
    }
    return 0;
}

static void print_piece(const mlxn_tokenizer *tok, int32_t id, FILE *f)
{
    char buf[256];
    size_t n = 0;
    if (mlxn_tokenizer_piece(tok, id, false, buf, sizeof buf, &n) == MLXN_STATUS_OK && n <= sizeof buf)
        fwrite(buf, 1, n, f);
    fflush(f);
}

static int generate(mlxn_model *m, const run_args *a, double load_s)
{
    const mlxn_tokenizer *tok = mlxn_model_tokenizer(m);
    int32_t *hist = NULL;
    size_t n_prompt = 0;
    if (encode_prompt(tok, a, &hist, &n_prompt))
        return 1;
    const int64_t cap = (int64_t)n_prompt + a->n_predict + 1;
    int32_t *grown = realloc(hist, (size_t)cap * sizeof *hist);
    if (!grown) {
        free(hist);
        fprintf(stderr, "mlxn run: out of memory\n");
        return 1;
    }
    hist = grown;
    FILE *text = a->json ? stderr : stdout;
    if (!a->json) {
        fwrite(a->prompt, 1, strlen(a->prompt), text);
        if (a->chat)
            fputc('\n', text);
    }
    int64_t n = (int64_t)n_prompt, n_gen = 0;
    double t0 = now_s(), t_prefill = 0;
    mlxn_status st = MLXN_STATUS_OK;
    for (; n_gen < a->n_predict; n_gen++) {
        const int32_t *feed = n_gen == 0 ? hist : &hist[n - 1];
        const int64_t n_feed = n_gen == 0 ? n : 1;
        int32_t next;
        st = mlxn_model_eval_sample(m, feed, n_feed, &a->sampler, hist, n, (uint64_t)n_gen, &next);
        if (st != MLXN_STATUS_OK)
            break;
        if (n_gen == 0)
            t_prefill = now_s() - t0;
        if (mlxn_tokenizer_is_eog(tok, next)) {
            n_gen++;
            break;
        }
        hist[n++] = next;
        print_piece(tok, next, text);
    }
    const double t_total = now_s() - t0, t_decode = t_total - t_prefill;
    fputc('\n', text);
    if (st != MLXN_STATUS_OK)
        fprintf(stderr, "mlxn run: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
    const mlxn_model_info in = mlxn_model_get_info(m);
    const double prefill_tps = t_prefill > 0 ? (double)n_prompt / t_prefill : 0;
    const double decode_tps = n_gen > 1 && t_decode > 0 ? (double)(n_gen - 1) / t_decode : 0;
    if (a->json)
        printf("{\"model\":\"%s\",\"arch\":\"%s\",\"load_s\":%.3f,\"prompt_tokens\":%zu,\"prefill_tok_s\":%.1f,"
               "\"generated\":%lld,\"decode_tok_s\":%.1f}\n",
               in.name, in.arch, load_s, n_prompt, prefill_tps, (long long)n_gen, decode_tps);
    else
        fprintf(stderr, "[%s, %s] load %.2f s | prefill %zu tokens %.1f tok/s | decode %lld tokens %.1f tok/s\n",
                in.name, in.arch, load_s, n_prompt, prefill_tps, (long long)n_gen, decode_tps);
    free(hist);
    return st == MLXN_STATUS_OK ? 0 : 1;
}

int cmd_run(int argc, char **argv)
{
    run_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc;
    mlxn_device *dev = NULL;
    if ((rc = open_device(a.device, &dev)))
        return rc;
    mlxn_model_options o = mlxn_model_options_default();
    o.n_ctx = a.n_ctx;
    mlxn_device_info di;
    if (mlxn_device_get_info(dev, &di) == MLXN_STATUS_OK && di.kind == MLXN_DEVICE_CUDA)
        o.kv_dtype = MLXN_DTYPE_F16;
    if (a.kv && (rc = parse_kv_dtype("run", a.kv, &o.kv_dtype))) {
        mlxn_device_free(dev);
        return rc;
    }
    mlxn_model *m = NULL;
    const double t0 = now_s();
    mlxn_status st = mlxn_model_load(dev, a.model, &o, &m);
    if (st != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn run: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
        mlxn_device_free(dev);
        return 1;
    }
    rc = generate(m, &a, now_s() - t0);
    mlxn_model_free(m);
    mlxn_device_free(dev);
    return rc;
}
