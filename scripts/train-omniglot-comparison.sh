#!/usr/bin/env bash
# The training issue's comparison: BMSSL (paper target), BMSSL (query-step target) and MetaSSL on
# Omniglot with the same budget (meta-steps) and seed, run side by side (one core each when the
# machine has fewer cores than runs), then evaluated on the same 2000 test episodes per setting.
#
#   scripts/train-omniglot-comparison.sh [META_STEPS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${1:-2000}
OUT=${2:-runs/comparison}
cargo build --release -p bmssl-cli
BIN=target/release/bmssl
mkdir -p "$OUT"
common=(--meta-steps "$STEPS" --seed 0 --checkpoint-every 250 --validate-every 500 --validation-episodes 200
        --validation-mode proto --no-eval --quiet)
RAYON_NUM_THREADS=1 $BIN train --method bmssl --target paper --run-dir "$OUT/bmssl-paper" "${common[@]}" 2> "$OUT/bmssl-paper.log" &
RAYON_NUM_THREADS=1 $BIN train --method bmssl --target query-step --run-dir "$OUT/bmssl-query-step" "${common[@]}" 2> "$OUT/bmssl-query-step.log" &
RAYON_NUM_THREADS=1 $BIN train --method metassl --run-dir "$OUT/metassl" "${common[@]}" 2> "$OUT/metassl.log" &
wait
for run in bmssl-paper bmssl-query-step metassl; do
  for mode in adapt proto; do
    $BIN eval --checkpoint "$OUT/$run/checkpoints/step-$(printf %07d "$STEPS").safetensors" --dataset omniglot --split test \
      --setting 5w1s --setting 5w5s --setting 20w1s --episodes 2000 --mode "$mode" --quiet \
      --json "$OUT/$run/test-$mode.json" | tee "$OUT/$run/test-$mode.txt"
  done
done
