#!/usr/bin/env bash
# Builds mlxn and test_ops once per variant of the tree (main plus patches), stripped, for an A/B on
# the device machine with bench/ab_rounds.sh. Each variant's patches are applied to the working
# tree, built in BUILD (incremental: only the files they touch recompile), then reverted.
#   bench/build_variants.sh BUILD OUT NAME[:PATCH[+PATCH...]] ...
# e.g. bench/build_variants.sh build-gpu /tmp/v main tr:bench/experiments/qmm_stream_trace.patch
# (a variant's patches apply in the order given, each on the tree the ones before it left)
# writes OUT/NAME/mlxn and OUT/NAME/test_ops per variant, and OUT.tar.xz with all of them for the
# device machine (one large xz dictionary: the variants differ in a few kernels, so 4 variants'
# 8 binaries take ~17 MB where each binary alone takes ~15): on the device,
#   (cd /tmp && xz -dc $PWD/OUT.tar.xz | tar xf -)   then /tmp/$(basename OUT)/NAME/{mlxn,test_ops}
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,11p "$0"; exit 2; }
build=$1 out=$2
shift 2
for v in "$@"; do
  name=${v%%:*}
  patches=()
  if [ "$v" != "$name" ]; then IFS=+ read -r -a patches <<< "${v#*:}"; fi
  # applied in order, each on the ones before it (a patch may build on an earlier one), and
  # reverted in reverse order; all of a variant's patches or none: one that fails reverts the rest
  applied=()
  revert() { local i; for ((i = ${#applied[@]} - 1; i >= 0; i--)); do git apply -R "${applied[i]}"; done; }
  for p in "${patches[@]}"; do
    git apply "$p" || { echo "build_variants: $p does not apply for $name" >&2; revert; exit 1; }
    applied+=("$p")
  done
  status=0
  cmake --build "$build" -j "$(nproc)" --target mlxn_cli test_ops > "$out.$name.log" 2>&1 || status=$?
  revert
  [ $status -eq 0 ] || { echo "build_variants: $name failed, see $out.$name.log" >&2; exit 1; }
  mkdir -p "$out/$name"
  strip -o "$out/$name/mlxn" "$build/mlxn"
  strip -o "$out/$name/test_ops" "$build/tests/test_ops"
  echo "$name: $out/$name"
done
tar cf - -C "$(dirname "$out")" "$(basename "$out")" | xz -6 --lzma2=preset=6,dict=512MiB > "$out.tar.xz"
echo "$out.tar.xz: $(du -m "$out.tar.xz" | cut -f1) MB"
