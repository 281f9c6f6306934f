/* The op test registry: one entry per op of the op list. */
#ifndef MLXN_TEST_OPS_H
#define MLXN_TEST_OPS_H

#include "harness.h"

void test_rms_norm(test_devices *devs, rng *g);
void test_qmatmul_mlx(test_devices *devs, rng *g);
void test_qmatmul(test_devices *devs, rng *g);
void test_qmatmul_qkv(test_devices *devs, rng *g); /* run by test_qmatmul */
void test_act(test_devices *devs, rng *g);
void test_softmax(test_devices *devs, rng *g);
void test_rope(test_devices *devs, rng *g);
void test_get_rows(test_devices *devs, rng *g);
void test_binary(test_devices *devs, rng *g);
void test_scale(test_devices *devs, rng *g);
void test_argmax(test_devices *devs, rng *g);
void test_attention(test_devices *devs, rng *g);
void test_kv_append(test_devices *devs, rng *g);
void test_sample(test_devices *devs, rng *g);
void test_moe_gate(test_devices *devs, rng *g);
void test_moe_reduce(test_devices *devs, rng *g);
void test_copy(test_devices *devs, rng *g);
void test_l2_norm(test_devices *devs, rng *g);
void test_cumsum(test_devices *devs, rng *g);
void test_moe_route_map(test_devices *devs, rng *g);
void test_qmatmul_id(test_devices *devs, rng *g);

#endif
