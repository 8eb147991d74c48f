#!/usr/bin/env bash
# The baselines issue's table: MAML, ProtoNet, UMTRA (and train-from-scratch) on Omniglot under the
# same budget as the BMSSL runs of docs/results/omniglot-comparison-2026-11-25 (META_STEPS meta-steps,
# seed 0, one core each when the machine has fewer cores than runs), then each evaluated on the same
# 2000 test episodes per setting (episode seed fixed by `bmssl eval`) in its own protocol: MAML, UMTRA
# and scratch adapt (fine-tune) on the support set, ProtoNet classifies by prototypes.
#
#   scripts/train-omniglot-baselines.sh [META_STEPS] [OUT_DIR]
#   BIN=path/to/bmssl to use an already-built binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${1:-1250}
OUT=${2:-runs/baselines}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p bmssl-cli
  BIN=target/release/bmssl
fi
mkdir -p "$OUT"
common=(--meta-steps "$STEPS" --seed 0 --checkpoint-every 250 --validate-every 500 --validation-episodes 200
        --validation-mode proto --no-eval --quiet)
for m in maml protonet umtra; do
  RAYON_NUM_THREADS=1 "$BIN" train --method "$m" --run-dir "$OUT/$m" "${common[@]}" 2> "$OUT/$m.log" &
done
"$BIN" train --method scratch --run-dir "$OUT/scratch" --seed 0 --no-eval --quiet 2> "$OUT/scratch.log"
wait
for m in maml protonet umtra scratch; do
  mode=adapt; [ "$m" = protonet ] && mode=proto
  steps=$STEPS; [ "$m" = scratch ] && steps=0
  "$BIN" eval --checkpoint "$OUT/$m/checkpoints/step-$(printf %07d "$steps").safetensors" --dataset omniglot --split test \
    --setting 5w1s --setting 5w5s --setting 20w1s --episodes 2000 --mode "$mode" --quiet \
    --json "$OUT/$m/test-$mode.json" | tee "$OUT/$m/test-$mode.txt"
done
