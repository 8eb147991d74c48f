#!/bin/bash
# Alternates the old (main) and new (fuse-l1) binaries so both see the same load.
# Usage: copy the two binaries to /tmp/bmssl-old and /tmp/bmssl-new, then run this script
# (CK: the checkpoint to evaluate, BMSSL_DATA: the data folder). Prints accuracy or meta-steps/s,
# and the user CPU seconds of each run.
CK=${CK:-/work/runs/bmssl-horizon-1250/parts/metassl-zh-L1/checkpoints/step-0001250.safetensors}
run() { # name, args...
  local b=/tmp/bmssl-$1; shift
  { /usr/bin/time -f "user %U s" env BMSSL_DATA=${BMSSL_DATA:-data} $b "$@" >/tmp/m.out 2>/tmp/m.err; }
  echo "$(grep -h -o '5-way 1-shot.*\|"meta_steps_per_s": [0-9.]*' /tmp/m.out /tmp/m.err | tr '\n' ' ') $(tail -1 /tmp/m.err)"
}
for rep in 1 2; do
  for b in old new; do echo "eval  $b: $(run $b eval --checkpoint $CK --setting 5w1s --episodes 300 --mode adapt --adapt-steps 5 --threads 1)"; done
  for b in old new; do echo "bench84 $b: $(run $b bench --steps 5 --threads 1 --channels 3 --size 84)"; done
  for b in old new; do echo "bench28 $b: $(run $b bench --steps 5 --threads 1)"; done
  uptime
done
