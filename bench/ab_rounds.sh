#!/usr/bin/env bash
# A/B of mlxn binaries on one machine: `mlxn bench` rows for each binary in turn, ROUNDS rounds
# alternating, so that builds compare within one machine session (runs on the device machine drift
# by a few percent between sessions). The raw rows go to $OUT/ab.txt (or ./ab.txt), to stdout a
# summary: each row's % of copy per binary, min-max (mean) over the rounds, and the mean's
# difference from the first binary's.
#   bench/ab_rounds.sh ROUNDS "OP[:SHAPE]" ["OP[:SHAPE]" ...] -- BIN [BIN ...]
#   bench/ab_rounds.sh --summary FILE   (the summary of an earlier run's raw rows)
# e.g. bench/ab_rounds.sh 2 "qmatmul:M1 14336x4096" "qmatmul_mlx:M1 14336x4096" -- /tmp/v/main/mlxn /tmp/v/new/mlxn
# A binary is named by its file, or by its folder where the file is mlxn (bench/build_variants.sh's
# OUT/NAME/mlxn).
set -uo pipefail

summary() {
  awk '/^== / { bin = $4; op = $5; next } # == round R BIN OP [SHAPE]
       { o = 0
         for (i = 1; i <= NF; i++) if ($i == op) { o = i; break }
         lab = ""; k = 0
         for (i = o + 1; o && i <= NF; i++) if ($i ~ /^[0-9.]+$/) { k = i; break } else lab = lab " " $i
         pct = -1
         for (i = k; k && i <= NF; i++) if ($i ~ /^[0-9.]+%$/) { pct = substr($i, 1, length($i) - 1) + 0; break }
         if (pct < 0) next
         row = op lab
         if (!(row in seen)) { seen[row] = 1; rows[++nr] = row }
         if (!(bin in bseen)) { bseen[bin] = 1; bins[++nb] = bin }
         key = row SUBSEP bin
         if (!(key in n) || pct < lo[key]) lo[key] = pct
         if (!(key in n) || pct > hi[key]) hi[key] = pct
         sum[key] += pct; n[key]++ }
       END {
         for (r = 1; r <= nr; r++) {
           printf "%-36s", rows[r]
           ref = rows[r] SUBSEP bins[1]
           for (b = 1; b <= nb; b++) {
             key = rows[r] SUBSEP bins[b]
             if (!(key in n)) { printf "  %s -", bins[b]; continue }
             printf "  %s %.1f-%.1f (%.1f)", bins[b], lo[key], hi[key], sum[key] / n[key]
             if (b > 1 && (ref in n)) printf " %+.1f", sum[key] / n[key] - sum[ref] / n[ref]
           }
           printf "\n"
         } }' "$1"
}

if [ "${1:-}" = --summary ]; then
  [ $# -eq 2 ] || { sed -n 2,11p "$0"; exit 2; }
  summary "$2"
  exit
fi
[ $# -ge 4 ] || { sed -n 2,11p "$0"; exit 2; }
rounds=$1; shift
cases=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do cases+=("$1"); shift; done
[ "${1:-}" = -- ] || { echo "ab_rounds: missing -- before the binaries" >&2; exit 2; }
shift
out=${OUT:-.}/ab.txt
: > "$out"
for ((r = 1; r <= rounds; r++)); do
  for bin in "$@"; do
    name=$(basename "$bin")
    [ "$name" = mlxn ] && name=$(basename "$(dirname "$bin")")
    for c in "${cases[@]}"; do
      op=${c%%:*}; shape=; [ "$c" != "$op" ] && shape=${c#*:}
      echo "== round $r $name $op $shape" >> "$out"
      "$bin" bench --device cuda --op "$op" ${shape:+--shape "$shape"} 2>&1 | grep -E "[0-9]%|error" >> "$out"
    done
  done
done
summary "$out"
