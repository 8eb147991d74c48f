#!/usr/bin/env bash
# PyTorch, bmssl at the session start (24c3b01) and after the AVX2 loops (see README.md here), at
# the three benchmark shapes, one and two threads, same run (the binaries alternate, so a noisy
# neighbour slows both alike):
#   START=/path/to/old/bmssl NEW=/path/to/new/bmssl PYTHON=/path/to/python-with-torch \
#     docs/results/engine-avx2-2026-12-07/before-after.sh [STEPS]
# (build each binary with `cargo build --release -p bmssl-cli` at its commit and copy it away).
# STEPS timed meta-steps at the Omniglot shapes (default 4), half of them (at least 2) at 3x84x84.
set -euo pipefail
: "${START:?the old binary}" "${NEW:?the new binary}"
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
PY=${PYTHON:-python3}; REF=../shared/reference/bmssl_torch.py
STEPS=${1:-4}
f() { $PY -c "import json,sys; print(round(json.loads(sys.stdin.read())['meta_steps_per_s'],4))"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(grep -o -m1 avx512f /proc/cpuinfo || echo no avx512)"
printf '%-14s %-16s %3s %9s %9s %9s %8s %8s %7s\n' shape config thr pytorch start new start/pt new/pt change
for shape in omniglot 84x84 20-way; do
  case $shape in
    omniglot) flags=""; st=$STEPS ;;
    84x84) flags="--channels 3 --size 84"; st=$(( STEPS / 2 > 2 ? STEPS / 2 : 2 )) ;;
    20-way) flags="--n-images 40 --blocks 2"; st=$STEPS ;;
  esac
  for cfg in "" "--first-order" "--method metassl"; do
    for t in 1 2; do
      pt=$($PY $REF bench --steps $st --threads $t $flags $cfg | f)
      a=$("$START" bench --json --steps $st --threads $t $flags $cfg | f)
      b=$("$NEW" bench --json --steps $st --threads $t $flags $cfg | f)
      printf '%-14s %-16s %3s %9s %9s %9s %7.2fx %7.2fx %+6.0f%%\n' $shape "${cfg:-second order}" $t $pt $a $b \
        $(python3 -c "print($a/$pt)") $(python3 -c "print($b/$pt)") $(python3 -c "print(100*($b/$a-1))")
    done
  done
done
