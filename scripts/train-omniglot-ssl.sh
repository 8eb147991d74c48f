#!/usr/bin/env bash
# The SSL-baselines issue's table: SimCLR, MoCo, SwAV, Barlow Twins, PsCo ("-x", as published) and the
# "-o" variants (their objective as BMSSL's inner-loop term) on Omniglot, seed 0, then each evaluated
# on the same 2000 test episodes per setting (proto mode for "-x": no classifier was trained; adapt for
# "-o", as BMSSL). Budget: SSL_STEPS batches of 256 images for "-x" and O_STEPS meta-steps for "-o"
# (the BMSSL run of docs/results/omniglot-comparison-2026-11-25 had 1250); the wall and CPU time of
# every run are in its metrics.jsonl (`wall_s`) and log, so budgets can be compared in seconds.
#
#   scripts/train-omniglot-ssl.sh [SSL_STEPS] [O_STEPS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SSL_STEPS=${1:-300}
O_STEPS=${2:-1250}
OUT=${3:-runs/ssl}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p bmssl-cli
  BIN=target/release/bmssl
fi
mkdir -p "$OUT"
common=(--seed 0 --checkpoint-every 100 --validate-every 0 --validation-episodes 200 --no-eval --quiet)
for m in simclr moco swav barlowtwins psco; do
  "$BIN" train --method "$m" --meta-steps "$SSL_STEPS" --run-dir "$OUT/$m" "${common[@]}" 2> "$OUT/$m.log"
  "$BIN" eval --checkpoint "$OUT/$m/checkpoints/step-$(printf %07d "$SSL_STEPS").safetensors" --dataset omniglot \
    --split test --setting 5w1s --setting 5w5s --setting 20w1s --episodes 2000 --mode proto --quiet \
    --json "$OUT/$m/test-proto.json" | tee "$OUT/$m/test-proto.txt"
done
for k in simclr moco swav barlowtwins; do
  "$BIN" train --method bmssl --inner-loss "$k" --support-views 2 --query-views 2 --views 4 --prototypes 64 \
    --meta-steps "$O_STEPS" --run-dir "$OUT/$k-o" "${common[@]}" 2> "$OUT/$k-o.log"
  "$BIN" eval --checkpoint "$OUT/$k-o/checkpoints/step-$(printf %07d "$O_STEPS").safetensors" --dataset omniglot \
    --split test --setting 5w1s --setting 5w5s --setting 20w1s --episodes 2000 --mode adapt --quiet \
    --json "$OUT/$k-o/test-adapt.json" | tee "$OUT/$k-o/test-adapt.txt"
done
