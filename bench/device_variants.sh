#!/usr/bin/env bash
# On the device machine: the variants packed by bench/build_variants.sh, each tested (test_ops over
# $TEST_OPS, and compute-sanitizer memcheck when MEMCHECK=1), then compared by bench/ab_rounds.sh
# ($ROUNDS rounds, main first when there is one). Logs and rows go to $OUT.
#   bench/device_variants.sh ARCHIVE.tar.xz "OP[:SHAPE]" ["OP[:SHAPE]" ...]
# e.g. TEST_OPS=qmatmul,qmatmul_mlx MEMCHECK=1 bench/device_variants.sh .carry/v32.tar.xz "qmatmul:M1 14336x4096"
set -uo pipefail
[ $# -ge 2 ] || { sed -n 2,6p "$0"; exit 2; }
archive=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); shift
out=${OUT:-/tmp/out}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export PATH="$PATH:/usr/local/cuda/bin"
dir=/tmp/$(basename "$archive" .tar.xz)
rm -rf "$dir" && (cd /tmp && xz -dc "$archive" | tar xf -) || { echo "device_variants: cannot unpack $archive" >&2; exit 1; }
names=$(ls "$dir")
[ -d "$dir/main" ] && names="main $(ls "$dir" | grep -vx main)"
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for v in $names; do
  "$dir/$v/test_ops" --op "${TEST_OPS:-qmatmul,qmatmul_mlx}" > "$out/test_$v.log" 2>&1
  echo "test $v rc=$? $(head -1 "$out/test_$v.log" | cut -d' ' -f1-2) $(tail -1 "$out/test_$v.log")"
  if [ "${MEMCHECK:-0}" = 1 ]; then
    "$cs" --tool memcheck --error-exitcode 9 "$dir/$v/test_ops" --op "${TEST_OPS:-qmatmul,qmatmul_mlx}" > "$out/memcheck_$v.log" 2>&1
    echo "memcheck $v rc=$? $(tail -1 "$out/memcheck_$v.log")"
  fi
done
bins=()
for v in $names; do bins+=("$dir/$v/mlxn"); done
OUT=$out bash "$here/ab_rounds.sh" "${ROUNDS:-2}" "$@" -- "${bins[@]}" | tee "$out/ab_summary.txt"
