set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
out=$OUT
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > $out/cmake.log 2>&1
cmake --build build-gpu -j 16 --target mlxn_cli > $out/build.log 2>&1 || { tail -30 $out/build.log; exit 1; }
echo built
for f in q4_0 q8_0 q4_K; do for sh in "M1 14336x4096" "M1 4096x14336" "M1 4096x4096"; do for rt in 2 4 8 16; do
  echo "RT=$rt $(MLXN_EXP_RT=$rt build-gpu/mlxn bench --device cuda --op qmatmul --quick --shape "$sh $f" 2>&1 | grep "$f")"; done; done; done | tee $out/sweep.txt
for f in q4_0 q8_0; do for st in 2 3 4 6; do echo "RT=4 ST=$st $(MLXN_EXP_RT=4 MLXN_EXP_STAGES=$st build-gpu/mlxn bench --device cuda --op qmatmul --quick --shape "M1 4096x14336 $f" 2>&1 | grep "$f")"; done; done | tee -a $out/sweep.txt
