#!/usr/bin/env bash
# Best and median meta-steps/s of alternating runs of several bmssl binaries (on a noisy machine
# the best of several runs is the steadiest figure):
#   docs/results/engine-avx2-2026-12-07/best-of.sh N "bench args" /path/to/bmssl-a /path/to/bmssl-b ...
set -euo pipefail
n=$1; args=$2; shift 2
declare -A res
for _ in $(seq "$n"); do for b in "$@"; do
  # shellcheck disable=SC2086
  v=$("$b" bench $args 2>&1 | grep meta_steps_per_s | grep -o "[0-9.]*" | head -1)
  res[$b]="${res[$b]:-} $v"
done; done
for b in "$@"; do
  echo "$b: $(echo ${res[$b]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {printf "best %.3f median %.3f (n=%d)", a[NR], a[int((NR+1)/2)], NR}')"
done
