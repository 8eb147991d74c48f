#!/usr/bin/env bash
# Thread scaling of one whole training run (README's default method, real Omniglot): the same
# `bmssl train` with RAYON_NUM_THREADS=1 and =2, alternating, ROUNDS times; wall-clock seconds of
# the whole process (loading, training, the final evaluation) and the meta-steps/s the progress
# line reports, then the ratio per round and its median.
#   BMSSL=target/release/bmssl BMSSL_DATA=data docs/results/engine-bn-pool-2026-12-07/thread-scaling.sh [ROUNDS] [STEPS]
set -euo pipefail
BMSSL=${BMSSL:-target/release/bmssl}
ROUNDS=${1:-5}
STEPS=${2:-120}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%5s %8s %8s %10s %10s %7s %7s\n' round "1t wall" "2t wall" "1t steps/s" "2t steps/s" "wall x" "steps x"
ratios=()
for r in $(seq "$ROUNDS"); do
  declare -A wall rate
  for t in 1 2; do
    rm -rf "$tmp/run$t"
    s=$(date +%s.%N)
    rate[$t]=$(RAYON_NUM_THREADS=$t "$BMSSL" train --meta-steps "$STEPS" --run-dir "$tmp/run$t" \
      --eval-episodes 2 --no-yardstick --validate-every 100000 2>&1 |
      grep -o '[0-9.]* meta-steps/s' | tail -1 | cut -d' ' -f1)
    wall[$t]=$(echo "$(date +%s.%N) - $s" | bc)
  done
  wx=$(echo "scale=3; ${wall[1]} / ${wall[2]}" | bc)
  sx=$(echo "scale=3; ${rate[2]} / ${rate[1]}" | bc)
  ratios+=("$wx")
  printf '%5s %8.2f %8.2f %10s %10s %7s %7s\n' "$r" "${wall[1]}" "${wall[2]}" "${rate[1]}" "${rate[2]}" "$wx" "$sx"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print "median wall-clock speed-up, 2 threads over 1: " a[int((NR+1)/2)] "x (" NR " rounds)"}'
