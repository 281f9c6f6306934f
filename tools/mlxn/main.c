/* mlxn: the command-line tool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "mlxn.h"
#include "synth_moe.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mlxn <command> [options]\n"
            "\n"
            "commands:\n"
            "  bench [--device cpu|cuda[:N]] [--op NAME] [--shape TEXT] [--quick] [--json FILE]\n"
            "        time the op table on the device (default: the first GPU, else the CPU)\n"
            "        against the copy bandwidth measured in the same run\n"
            "  run -m FILE.gguf [-p PROMPT] [-n N] [--device cpu|cuda[:N]] [--temp T] [--top-k K]\n"
            "      [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--ctx N] [--kv DTYPE] [--chat]\n"
            "      [--json]\n"
            "        generate text: streams the continuation, then load time and prefill/decode tok/s\n"
            "        (defaults: -n 64, --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05, seed 0;\n"
            "        --temp 0 is greedy; the GPU when there is one; --kv f32|f16|bf16|q8_0 is the KV\n"
            "        cache dtype, f16 on the GPU and f32 on the CPU by default; q8_0 needs a head dim\n"
            "        that is a multiple of 32)\n"
            "  bench-model -m FILE.gguf [--device cpu|cuda[:N]] [--kv DTYPE] [--quick] [--json]\n"
            "        prefill tok/s at 512 and 2048 tokens, decode tok/s at context 128 and 4096\n"
            "        (the CPU, or --quick, runs 512 and 128 only; --kv as for run)\n"
            "  synth-moe OUT.gguf [--seed N] [--layers N] [--tokenizer-from FILE.gguf] [--dense]\n"
            "        write a small qwen3moe model with random weights (4 layers, 512 wide, 32 experts,\n"
            "        top 4; expert weights Q4_0, Q8_0 and Q4_K): the MoE path without a download;\n"
            "        --dense: a qwen3 with a dense FFN of 1024 instead\n"
            "  inspect FILE.gguf [--json]\n"
            "        metadata, tensor table (name, type, shape, bytes, offset) and a summary\n"
            "  test --support\n"
            "        the op x dtype x backend table: each op probed once per dtype of its main operand\n"
            "        on the CPU and the GPU (without a GPU: the dtypes the checks accept, for the ops\n"
            "        this build has CUDA kernels for)\n"
            "  devices   list the devices mlxn can use\n"
            "  version   print the library version\n");
}

int open_device(const char *spec, mlxn_device **dev)
{
    mlxn_device_options o = mlxn_device_options_default();
    if (!spec)
        o.kind = mlxn_cuda_device_count() > 0 ? MLXN_DEVICE_CUDA : MLXN_DEVICE_CPU;
    else if (strcmp(spec, "cpu") == 0)
        o.kind = MLXN_DEVICE_CPU;
    else if (strncmp(spec, "cuda", 4) == 0 && (spec[4] == 0 || spec[4] == ':')) {
        o.kind = MLXN_DEVICE_CUDA;
        o.ordinal = spec[4] ? atoi(spec + 5) : 0;
    } else {
        fprintf(stderr, "mlxn: unknown device '%s' (expected cpu, cuda or cuda:N)\n", spec);
        return 2;
    }
    mlxn_status st = mlxn_device_create(&o, dev);
    if (st != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
        return 1;
    }
    return 0;
}

int parse_kv_dtype(const char *cmd, const char *spec, mlxn_dtype *out)
{
    static const mlxn_dtype kinds[] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16, MLXN_DTYPE_Q8_0};
    for (size_t i = 0; spec && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(spec, mlxn_dtype_name(kinds[i])) == 0) {
            *out = kinds[i];
            return 0;
        }
    fprintf(stderr, "mlxn %s: unknown KV cache dtype '%s' (expected f32, f16, bf16 or q8_0)\n", cmd,
            spec ? spec : "");
    return 2;
}

static int cmd_bench(int argc, char **argv)
{
    const char *device = NULL, *json = NULL;
    bench_options opt = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = argv[++i];
        else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc)
            opt.op = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            opt.shape = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            opt.quick = true;
        else {
            fprintf(stderr, "mlxn bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (opt.op && !bench_has_op(opt.op)) {
        fprintf(stderr, "mlxn bench: no benchmarks for op '%s' (have: %s)\n", opt.op, bench_op_names);
        return 2;
    }
    mlxn_device *dev = NULL;
    int rc = open_device(device, &dev);
    if (rc)
        return rc;
    if (json && !(opt.json = fopen(json, "w"))) {
        fprintf(stderr, "mlxn bench: cannot write %s\n", json);
        mlxn_device_free(dev);
        return 1;
    }
    rc = bench_ops_run(dev, &opt);
    if (opt.json)
        fclose(opt.json);
    mlxn_device_free(dev);
    return rc;
}

static int cmd_synth_moe(int argc, char **argv)
{
    synth_moe_options o = synth_moe_options_default();
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--seed") == 0 && has_value)
            o.seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--layers") == 0 && has_value)
            o.n_layer = atoll(argv[++i]);
        else if (strcmp(argv[i], "--tokenizer-from") == 0 && has_value)
            o.tokenizer_from = argv[++i];
        else if (strcmp(argv[i], "--dense") == 0)
            o.dense = true;
        else if (argv[i][0] != '-' && !out)
            out = argv[i];
        else {
            fprintf(stderr, "mlxn synth-moe: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "mlxn synth-moe: no output file\n");
        return 2;
    }
    mlxn_status st = synth_moe_write(out, &o);
    if (st != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn synth-moe: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
        return 1;
    }
    return 0;
}

static int cmd_devices(void)
{
    mlxn_device *dev = NULL;
    mlxn_device_info info;
    int n = mlxn_cuda_device_count();
    for (int i = -1; i < n; i++) {
        mlxn_device_options o = mlxn_device_options_default();
        if (i >= 0) {
            o.kind = MLXN_DEVICE_CUDA;
            o.ordinal = i;
        }
        if (mlxn_device_create(&o, &dev) != MLXN_STATUS_OK ||
            mlxn_device_get_info(dev, &info) != MLXN_STATUS_OK) {
            fprintf(stderr, "mlxn: %s\n", mlxn_last_error());
            mlxn_device_free(dev);
            return 1;
        }
        if (i < 0)
            printf("cpu      %s, %d threads, %.1f GiB\n", info.name, info.multiprocessors,
                   (double)info.total_memory / (1 << 30));
        else
            printf("cuda:%d   %s, sm_%d%d, %d SMs, %.1f GiB, L2 %zu MiB\n", i, info.name,
                   info.compute_major, info.compute_minor, info.multiprocessors,
                   (double)info.total_memory / (1 << 30), info.l2_bytes >> 20);
        mlxn_device_free(dev);
    }
    if (n == 0)
        printf("(no CUDA device)\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "bench") == 0)
        return cmd_bench(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench-model") == 0)
        return cmd_bench_model(argc - 2, argv + 2);
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "inspect") == 0)
        return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(argv[1], "test") == 0)
        return cmd_test(argc - 2, argv + 2);
    if (strcmp(argv[1], "synth-moe") == 0)
        return cmd_synth_moe(argc - 2, argv + 2);
    if (strcmp(argv[1], "devices") == 0)
        return cmd_devices();
    if (strcmp(argv[1], "version") == 0) {
        printf("mlxn %s\n", mlxn_version());
        return 0;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "mlxn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
