set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
out=$OUT; git log --oneline -1 > $out/head.txt 2>&1
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > $out/cmake.log 2>&1
cmake --build build-gpu -j 16 > $out/build.log 2>&1 || { tail -30 $out/build.log; exit 1; }
echo built
build-gpu/tests/test_core > $out/test_core.log 2>&1; echo "core: $(tail -1 $out/test_core.log)"
timeout 400 build-gpu/tests/test_ops > $out/test_ops.log 2>&1; echo "ops rc=$?: $(tail -1 $out/test_ops.log)"; grep -E "checks" $out/test_ops.log | tr '\n' ' '; echo; grep -m20 FAIL $out/test_ops.log
