#!/usr/bin/env bash
# A/B of mlxn binaries on one machine: `mlxn bench` rows for each binary in turn, ROUNDS rounds
# alternating, so that builds compare within one machine session (runs on the device machine drift
# by a few percent between sessions). The raw rows go to $OUT/ab.txt (or ./ab.txt), a summary of
# % of copy per row to stdout.
#   bench/ab_rounds.sh ROUNDS "OP[:SHAPE]" ["OP[:SHAPE]" ...] -- BIN [BIN ...]
# e.g. bench/ab_rounds.sh 2 "qmatmul:M1 14336x4096" "qmatmul_mlx:M1 14336x4096" -- /tmp/b/mlxn_base /tmp/b/mlxn_new
set -uo pipefail
[ $# -ge 4 ] || { sed -n 2,7p "$0"; exit 2; }
rounds=$1; shift
cases=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do cases+=("$1"); shift; done
[ "${1:-}" = -- ] || { echo "ab_rounds: missing -- before the binaries" >&2; exit 2; }
shift
out=${OUT:-.}/ab.txt
: > "$out"
for ((r = 1; r <= rounds; r++)); do
  for bin in "$@"; do
    for c in "${cases[@]}"; do
      op=${c%%:*}; shape=; [ "$c" != "$op" ] && shape=${c#*:}
      echo "== round $r $(basename "$bin") $op $shape" >> "$out"
      "$bin" bench --device cuda --op "$op" ${shape:+--shape "$shape"} 2>&1 | grep -E "[0-9]%|error" >> "$out"
    done
  done
done
# summary: each row's label (the fields between the op and the first number) and its % of copy
awk '/^== /{printf "\n%s:", substr($0, 4); next}
     { lab = ""; pct = "?"; k = 0
       for (i = 4; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { k = i; break } else lab = lab (lab == "" ? "" : " ") $i
       for (i = k; k && i <= NF; i++) if ($i ~ /%$/) { pct = $i; break }
       printf " [%s] %s", lab, pct }' "$out"
echo
