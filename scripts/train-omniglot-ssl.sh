#!/usr/bin/env bash
# The SSL-baselines issue's table: SimCLR, MoCo, SwAV, Barlow Twins, PsCo ("-x", as published) and the
# "-o" variants (their objective as BMSSL's inner-loop term) on Omniglot, seed 0, each evaluated on the
# same 2000 test episodes per setting. Proto mode for every run (the one protocol "-x" and "-o" share:
# "-x" trains no classifier), plus adapt mode (BMSSL's own protocol) for "-o".
# CACTUs (issue 21): cactus-protonet and cactus-maml, SSL_STEPS meta-steps on the k-means tasks of
# their own SimCLR embedding of SSL_STEPS steps; proto mode for both, adapt mode for cactus-maml.
# swav-mc: SwAV with multi-crop (2 full views + 6 small 16-pixel crops, `--small-crops 6`).
# Budget: SSL_STEPS batches of 256 images for "-x" and O_STEPS meta-steps for "-o"; the wall time of
# every run is in its metrics.jsonl (`wall_s`), so budgets can also be compared in seconds.
#
#   scripts/train-omniglot-ssl.sh [SSL_STEPS] [O_STEPS] [OUT_DIR]
#
# Environment:
#   BIN       the bmssl binary (default: build target/release/bmssl)
#   JOBS      processes at once (default 1: one after the other). Each run and evaluation is one
#             process; with JOBS > 1 the trainings run side by side, then the evaluations.
#   THREADS   worker threads per process (default 0: all cores)
#   EVAL_JOBS, EVAL_THREADS  the same for the evaluations (default JOBS, THREADS)
#   EPISODES  test episodes per setting (default 2000, the paper's)
#   PHASES    any of "train proto adapt" (default all three); a finished run or evaluation is skipped,
#             so the script can be re-run after an interruption.
#   ADAPT_SETTINGS  settings of the adapt evaluations (default "5w1s 5w5s 20w1s")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SSL_STEPS=${1:-300}
O_STEPS=${2:-300}
OUT=${3:-runs/ssl}
JOBS=${JOBS:-1}
THREADS=${THREADS:-0}
EVAL_JOBS=${EVAL_JOBS:-$JOBS}
EVAL_THREADS=${EVAL_THREADS:-$THREADS}
EPISODES=${EPISODES:-2000}
PHASES=${PHASES:-train proto adapt}
ADAPT_SETTINGS=${ADAPT_SETTINGS:-5w1s 5w5s 20w1s}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p bmssl-cli
  BIN=target/release/bmssl
fi
export BIN THREADS EVAL_THREADS EPISODES OUT
mkdir -p "$OUT"
X=(simclr moco swav swav-mc barlowtwins psco)
O=(simclr moco swav barlowtwins)
C=(cactus-protonet cactus-maml)
steps_of() { case "$1" in *-o) echo "$O_STEPS" ;; *) echo "$SSL_STEPS" ;; esac; }
ckpt_of() { echo "$OUT/$1/checkpoints/step-$(printf %07d "$(steps_of "$1")").safetensors"; }

# One line per job: "<run> <kind> <setting>" (kind: train | proto | adapt).
jobs=()
for p in $PHASES; do
  case "$p" in
    train)
      for m in "${O[@]}"; do jobs+=("$m-o train -"); done
      for m in "${X[@]}" "${C[@]}"; do jobs+=("$m train -"); done ;;
    proto)
      for s in 5w1s 5w5s 20w1s; do
        for m in "${X[@]}" "${C[@]}"; do jobs+=("$m proto $s"); done
        for m in "${O[@]}"; do jobs+=("$m-o proto $s"); done
      done ;;
    adapt)
      for s in $ADAPT_SETTINGS; do
        for m in "${O[@]}"; do jobs+=("$m-o adapt $s"); done
        jobs+=("cactus-maml adapt $s")
      done ;;
  esac
done

one() {
  local run=$1 kind=$2 setting=$3
  local common=(--seed 0 --checkpoint-every 100 --validate-every 0 --validation-episodes 200 --no-eval --quiet)
  if [ "$kind" = train ]; then
    [ -f "$(ckpt_of "$run")" ] && return 0
    local base=${run%-o}
    if [ -f "$OUT/$run/config.toml" ]; then
      # interrupted earlier: continue from its newest checkpoint
      RAYON_NUM_THREADS=$THREADS "$BIN" train --resume "$OUT/$run" --no-eval --quiet 2>> "$OUT/$run.log"
    elif [ "$run" != "$base" ]; then
      RAYON_NUM_THREADS=$THREADS "$BIN" train --method bmssl --inner-loss "$base" --support-views 2 --query-views 2 \
        --views 4 --prototypes 64 --meta-steps "$O_STEPS" --run-dir "$OUT/$run" "${common[@]}" 2> "$OUT/$run.log"
    else
      local extra=() method=$run
      case "$run" in
        cactus-*) extra=(--embedding-steps "$SSL_STEPS") ;;
        swav-mc) method=swav; extra=(--small-crops 6) ;;
      esac
      RAYON_NUM_THREADS=$THREADS "$BIN" train --method "$method" --meta-steps "$SSL_STEPS" --run-dir "$OUT/$run" \
        "${extra[@]}" "${common[@]}" 2> "$OUT/$run.log"
    fi
    echo "trained $run"
  else
    local json="$OUT/$run/test-$kind-$setting.json"
    [ -f "$json" ] && return 0
    "$BIN" eval --checkpoint "$(ckpt_of "$run")" --dataset omniglot --split test --setting "$setting" \
      --episodes "$EPISODES" --mode "$kind" --threads "$EVAL_THREADS" --quiet --json "$json.tmp" > "$OUT/$run/test-$kind-$setting.txt"
    mv "$json.tmp" "$json"
    echo "$run $kind $setting: $(tail -n 1 "$OUT/$run/test-$kind-$setting.txt")"
  fi
}
export -f one steps_of ckpt_of
export SSL_STEPS O_STEPS

# Trainings first (an evaluation needs its run's final checkpoint), then the evaluations.
for kind in train eval; do
  if [ $kind = train ]; then P=$JOBS; else P=$EVAL_JOBS; fi
  for j in "${jobs[@]}"; do
    case "$kind:$j" in train:*" train "* | eval:*" proto "* | eval:*" adapt "*) echo "$j" ;; esac
  done | xargs -r -P "$P" -L 1 bash -c 'one "$@"' _
done
