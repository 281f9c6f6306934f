#!/usr/bin/env bash
# One device-machine session: build (16 cores there), the CUDA tests, compute-sanitizer memcheck
# over the ops named in $MEMCHECK_OPS (default: all of test_ops), the model tests when the
# models are in $MLXN_CACHE/models, and the op benchmark table. Logs go to $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
bin=build-gpu
mkdir -p "$out"
export PATH="$PATH:/usr/local/cuda/bin"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$out/gpu.txt"
if [ ! -x "$bin/tests/test_ops" ] || [ "${REBUILD:-1}" = 1 ]; then
  cmake -S . -B "$bin" -DCMAKE_BUILD_TYPE=Release > "$out/cmake.log" 2>&1
  cmake --build "$bin" -j 16 > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
fi
"$bin/tests/test_core" 2>&1 | tee "$out/test_core.log" | grep -E "FAIL|passed" | tail -5
"$bin/tests/test_ops" 2>&1 | tee "$out/test_ops.log" | grep -E "FAIL|checks|passed" | tail -40
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for op in ${MEMCHECK_OPS:-all}; do
  args=(); [ "$op" = all ] || args=(--op "$op")
  "$cs" --tool memcheck --error-exitcode 9 "$bin/tests/test_ops" "${args[@]}" > "$out/memcheck_$op.log" 2>&1
  echo "memcheck $op rc=$? $(tail -1 "$out/memcheck_$op.log")"
done
if [ -n "${MLXN_CACHE:-}" ]; then
  "$bin/tests/test_model" 2>&1 | tee "$out/test_model.log" | grep -E "FAIL|SKIP|max|passed" | tail -30
fi
if [ -n "${BENCH_OPS:-}" ]; then
  for op in $BENCH_OPS; do "$bin/mlxn" bench --device cuda --op "$op" --json "$out/bench_$op.jsonl" 2>&1 | tee "$out/bench_$op.txt"; done
fi
