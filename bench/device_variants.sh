#!/usr/bin/env bash
# On the device machine: the variants packed by bench/build_variants.sh, each tested (test_ops over
# $TEST_OPS, or over TESTS' ops for the variants it names, and compute-sanitizer memcheck when
# MEMCHECK=1), then compared by bench/ab_rounds.sh ($ROUNDS rounds, main first when there is one).
# TESTS="NAME:OPS ..." tests only the variants it names, each over its own ops (main, unchanged, is
# then not tested), all of them and their memchecks at once (correctness only: nothing is timed
# until they are done). Logs and rows go to $OUT.
#   bench/device_variants.sh ARCHIVE.tar.xz "OP[:SHAPE]" ["OP[:SHAPE]" ...]
# e.g. TEST_OPS=qmatmul,qmatmul_mlx MEMCHECK=1 bench/device_variants.sh .carry/v32.tar.xz "qmatmul:M1 14336x4096"
#      TESTS="pipe5:rope iqd:qmatmul,qmatmul_id" MEMCHECK=1 bench/device_variants.sh .carry/v59.tar.xz "rope:4096x32x128 neox/norm"
set -uo pipefail
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
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
# a variant's tests (and memcheck) over ops, the summary lines printed once they are done
check() {
  local v=$1 ops=$2 rc
  "$dir/$v/test_ops" --op "$ops" > "$out/test_$v.log" 2>&1
  rc=$?
  echo "test $v ($ops) rc=$rc $(head -1 "$out/test_$v.log" | cut -d' ' -f1-2) $(tail -1 "$out/test_$v.log")" > "$out/check_$v.txt"
  if [ "${MEMCHECK:-0}" = 1 ]; then
    "$cs" --tool memcheck --error-exitcode 9 "$dir/$v/test_ops" --op "$ops" > "$out/memcheck_$v.log" 2>&1
    rc=$?
    echo "memcheck $v rc=$rc $(tail -1 "$out/memcheck_$v.log")" >> "$out/check_$v.txt"
  fi
}
if [ -n "${TESTS:-}" ]; then
  for spec in $TESTS; do # every spec checked before any test starts
    v=${spec%%:*}
    [ -d "$dir/$v" ] && [ "$spec" != "$v" ] || { echo "device_variants: TESTS names $spec, not NAME:OPS of a variant in $archive" >&2; exit 2; }
  done
  for spec in $TESTS; do check "${spec%%:*}" "${spec#*:}" & done
  wait
  for spec in $TESTS; do cat "$out/check_${spec%%:*}.txt"; done
else
  for v in $names; do
    check "$v" "${TEST_OPS:-qmatmul,qmatmul_mlx}"
    cat "$out/check_$v.txt"
  done
fi
bins=()
for v in $names; do bins+=("$dir/$v/mlxn"); done
OUT=$out bash "$here/ab_rounds.sh" "${ROUNDS:-2}" "$@" -- "${bins[@]}" | tee "$out/ab_summary.txt"
