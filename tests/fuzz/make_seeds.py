#!/usr/bin/env python3
"""Seed inputs for the GGUF fuzzer, written by the gguf Python package (an independent writer):
every metadata value type, nested arrays, and tensors of several GGML types."""
import os

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")
os.makedirs(OUT, exist_ok=True)

w = GGUFWriter(os.path.join(OUT, "seed-values.gguf"), "llama")
w.add_uint8("u8", 7); w.add_int8("i8", -7); w.add_uint16("u16", 700); w.add_int16("i16", -700)
w.add_uint32("u32", 70000); w.add_int32("i32", -70000); w.add_float32("f32", 1.5)
w.add_bool("b", True); w.add_string("s", "hello"); w.add_uint64("u64", 2**40)
w.add_int64("i64", -2**40); w.add_float64("f64", 2.25)
w.add_array("arr_i", [1, 2, 3]); w.add_array("arr_s", ["a", "bc", ""])
w.add_array("arr_nested", [[1, 2], [3]])
w.add_tensor("t.f32", np.arange(8, dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

w = GGUFWriter(os.path.join(OUT, "seed-quant.gguf"), "llama")
w.add_uint32("general.alignment", 64)
rng = np.random.default_rng(1)
w.add_tensor("q4_0", rng.integers(0, 256, (2, 18), dtype=np.uint8), raw_dtype=T.Q4_0)
w.add_tensor("q4_K", rng.integers(0, 256, (1, 144), dtype=np.uint8), raw_dtype=T.Q4_K)
w.add_tensor("f16", np.ones((2, 4), dtype=np.float16))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("seeds written to", OUT)
