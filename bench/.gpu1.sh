set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
out=$OUT; git rev-parse HEAD > $out/head.txt 2>/dev/null
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $out/gpu.txt
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > $out/cmake.log 2>&1
cmake --build build-gpu -j 16 > $out/build.log 2>&1 || { tail -30 $out/build.log; exit 1; }
echo built
build-gpu/tests/test_ops --op qmatmul > $out/t_qmm.log 2>&1; tail -3 $out/t_qmm.log; grep -m20 FAIL $out/t_qmm.log
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops --op qmatmul > $out/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $out/memcheck.log
build-gpu/mlxn bench --device cuda --op qmatmul > $out/bench.txt 2>&1; grep -E "M1 |copy" $out/bench.txt | head -40
timeout 150 ncu --clock-control none -k regex:qmm_stream --launch-count 6 --section SpeedOfLight --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats build-gpu/mlxn bench --device cuda --op qmatmul --quick > $out/ncu.txt 2>&1; echo ncu rc=$?
