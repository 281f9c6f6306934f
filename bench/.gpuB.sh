set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
out=$OUT
for op in attention kv_append moe_route_map argmax; do timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops --op $op > $out/memcheck_$op.log 2>&1; echo "memcheck $op rc=$? $(tail -1 $out/memcheck_$op.log)"; done
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/test_ops --op kv_append > $out/racecheck_kv.log 2>&1; echo "racecheck kv rc=$? $(tail -1 $out/racecheck_kv.log)"
build-gpu/mlxn bench --device cuda --op attention 2>&1 | tee $out/bench_attention.txt | grep -E "decode|copy"
build-gpu/mlxn bench --device cuda --op qmatmul > $out/bench_qmatmul.txt 2>&1; grep -E "M1 " $out/bench_qmatmul.txt | head -16
