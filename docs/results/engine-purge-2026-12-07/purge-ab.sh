#!/usr/bin/env bash
# The binary's purge setting against mimalloc's default, one binary, alternating runs:
# MIMALLOC_PURGE_DELAY=1000 (mimalloc v3's default, which the binary then leaves alone) vs unset
# (the binary turns purging off). Meta-steps/s, adapt-mode evaluation episodes/s and peak RSS.
#   BMSSL=target/release/bmssl docs/results/engine-purge-2026-12-07/purge-ab.sh ROUNDS
set -euo pipefail
b=${BMSSL:-target/release/bmssl}
rounds=${1:-3}
run() { # label, env value ("" = unset), bench args...
  local label=$1 val=$2; shift 2
  local out
  if [ -n "$val" ]; then out=$(MIMALLOC_PURGE_DELAY=$val "$b" bench --json "$@" 2>/dev/null)
  else out=$(env -u MIMALLOC_PURGE_DELAY "$b" bench --json "$@" 2>/dev/null); fi
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(sys.argv[2], 'meta_steps_per_s %.3f' % d['meta_steps_per_s'], ('eval_episodes_per_s %.2f' % d['eval_episodes_per_s']) if 'eval_episodes_per_s' in d else '', 'peak_rss_mib %.1f' % d['peak_rss_mib'])" "$out" "$label"
}
for r in $(seq "$rounds"); do
  for val in 1000 ""; do
    tag="purge=${val:-off}"
    run "round $r omniglot 1 thread $tag" "$val" --threads 1 --steps 8
    run "round $r omniglot 2 threads $tag" "$val" --threads 2 --steps 12
    run "round $r 3x84x84 1 thread $tag" "$val" --threads 1 --steps 2 --channels 3 --size 84
    run "round $r 3x84x84 2 threads $tag" "$val" --threads 2 --steps 4 --channels 3 --size 84
    run "round $r eval 1 thread $tag" "$val" --threads 1 --steps 1 --eval-episodes 100
  done
done
