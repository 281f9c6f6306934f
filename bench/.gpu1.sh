set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
out=$OUT
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > $out/cmake.log 2>&1
cmake --build build-gpu -j 16 > $out/build.log 2>&1 || { tail -30 $out/build.log; exit 1; }
echo built
for op in qmatmul; do build-gpu/tests/test_ops --op $op > $out/t_$op.log 2>&1; echo "$op: $(tail -1 $out/t_$op.log)"; grep -m10 FAIL $out/t_$op.log; done
for f in q4_0 q4_1 q8_0 q4_K; do for sh in "M1 14336x4096" "M1 4096x14336" "M1 4096x4096"; do build-gpu/mlxn bench --device cuda --op qmatmul --shape "$sh $f" 2>&1 | grep "$f"; done; done | tee $out/bench.txt
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops --op qmatmul > $out/memcheck_qmm.log 2>&1; echo "memcheck qmm rc=$?"; tail -1 $out/memcheck_qmm.log
