#!/usr/bin/env bash
# PyTorch, bmssl at the session start (6038f21) and with F(4x4) (34daad9), 3x84x84, same run:
#   START=/path/to/old/bmssl NEW=/path/to/new/bmssl PYTHON=/path/to/python-with-torch \
#     docs/results/engine-f4-2026-12-07/before-after-84.sh
# (build each binary with `cargo build --release -p bmssl-cli` at its commit and copy it away).
set -euo pipefail
: "${START:?the old binary}" "${NEW:?the new binary}"
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
PY=${PYTHON:-python3}; REF=../shared/reference/bmssl_torch.py
f() { $PY -c "import json,sys; print(round(json.loads(sys.stdin.read())['meta_steps_per_s'],4))"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(grep -o -m1 avx512f /proc/cpuinfo || echo no avx512)"
printf '%-18s %3s %9s %9s %9s %7s %7s\n' config thr pytorch start f4 start/pt f4/pt
for cfg in "" "--first-order" "--method metassl"; do
  for t in 1 2; do
    pt=$($PY $REF bench --steps 3 --threads $t --channels 3 --size 84 $cfg | f)
    a=$("$START" bench --json --steps 3 --threads $t --channels 3 --size 84 $cfg | f)
    b=$("$NEW" bench --json --steps 3 --threads $t --channels 3 --size 84 $cfg | f)
    printf '%-18s %3s %9s %9s %9s %6.2fx %6.2fx\n' "${cfg:-second order}" $t $pt $a $b $(python3 -c "print($a/$pt)") $(python3 -c "print($b/$pt)")
  done
done
