#!/usr/bin/env bash
# One device-machine session: the CUDA tests, compute-sanitizer memcheck over them, and the
# benchmark table. Binaries come prebuilt in $1 (default build/); logs go to $OUT.
set -uo pipefail
bin=${1:-build}
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$out/gpu.txt"
"$bin/test_core" 2>&1 | tee "$out/test_core.log" | tail -3
"$bin/test_ops" 2>&1 | tee "$out/test_ops.log" | grep -E "FAIL|passed" | tail -20
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  "$cs" --tool memcheck --error-exitcode 9 "$bin/test_core" > "$out/memcheck_core.log" 2>&1; echo "memcheck test_core rc=$?"
  "$cs" --tool memcheck --error-exitcode 9 "$bin/test_ops" > "$out/memcheck_ops.log" 2>&1; echo "memcheck test_ops rc=$?"
  tail -2 "$out/memcheck_ops.log"
fi
"$bin/mlxn" bench --device cuda --json "$out/bench_cuda.jsonl" 2>&1 | tee "$out/bench_cuda.txt"
for t in test_gguf test_safetensors test_quant; do [ -x "$bin/$t" ] && "$bin/$t" 2>&1 | tail -1; done
