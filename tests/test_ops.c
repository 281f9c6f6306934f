/* The op harness: every op x backend x dtype x variant against the oracle. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/op_list.h"
#include "harness.h"
#include "test_ops.h"

typedef struct op_tests {
    const char *op;
    void (*run)(test_devices *devs, rng *g);
} op_tests;

/* One entry per op, in op-list order: an op without cases fails the build below. */
static const op_tests registry[] = {
    {"rms_norm", test_rms_norm},
    {"qmatmul_mlx", test_qmatmul_mlx},
    {"qmatmul", test_qmatmul},
    {"act", test_act},
    {"softmax", test_softmax},
    {"rope", test_rope},
    {"get_rows", test_get_rows},
    {"binary", test_binary},
    {"scale", test_scale},
    {"argmax", test_argmax},
    {"attention", test_attention},
    {"kv_append", test_kv_append},
    {"sample", test_sample},
    {"moe_gate", test_moe_gate},
    {"moe_reduce", test_moe_reduce},
    {"copy", test_copy},
    {"l2_norm", test_l2_norm},
    {"cumsum", test_cumsum},
    {"moe_route_map", test_moe_route_map},
    {"qmatmul_id", test_qmatmul_id},
};

_Static_assert(sizeof registry / sizeof registry[0] == MLXN_OP_COUNT,
               "every op in src/core/op_list.h needs harness cases here");

/* The length of the name at p, in a comma-separated list of names. */
static size_t name_len(const char *p)
{
    const char *end = strchr(p, ',');
    return end ? (size_t)(end - p) : strlen(p);
}

/* Whether name is one of the comma-separated names in list. */
static bool in_list(const char *list, const char *name)
{
    for (const char *p = list;; p++) {
        const size_t len = name_len(p);
        if (len == strlen(name) && strncmp(p, name, len) == 0)
            return true;
        p += len;
        if (!*p)
            return false;
    }
}

/* Whether every name in list is an op of the registry (a misspelt name would skip its cases). */
static bool known_ops(const char *list)
{
    for (const char *p = list;; p++) {
        const size_t len = name_len(p);
        bool found = false;
        for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
            found |= strlen(registry[i].op) == len && strncmp(p, registry[i].op, len) == 0;
        if (!found) {
            fprintf(stderr, "test_ops: no op named '%.*s'\n", (int)len, p);
            return false;
        }
        p += len;
        if (!*p)
            return true;
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = harness_seed(argc, argv);
    /* --op A,B: those ops alone; --except A,B: all others */
    const char *only = NULL, *except = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--op") == 0)
            only = argv[i + 1];
        else if (strcmp(argv[i], "--except") == 0)
            except = argv[i + 1];
    }
    if ((only && !known_ops(only)) || (except && !known_ops(except)))
        return 2;
    test_devices devs;
    if (!test_devices_open(&devs))
        return 1;
    printf("devices:");
    for (int i = 0; i < devs.count; i++)
        printf(" %s", devs.list[i].name);
    printf("\n");
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
        if ((only && !in_list(only, registry[i].op)) || (except && in_list(except, registry[i].op)))
            continue;
        rng g = {.s = seed + i};
        int before = g_counts.passed + g_counts.failed;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        registry[i].run(&devs, &g);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%-12s %d checks (%.1f s)\n", registry[i].op, g_counts.passed + g_counts.failed - before,
               (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        fflush(stdout);
    }
    test_devices_close(&devs);
    return harness_finish();
}
