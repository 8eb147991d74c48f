#!/usr/bin/env bash
# Kill test (issue 11): start a short training run, SIGKILL it at random moments (also while a
# checkpoint is being written), resume it each time, and check that the final checkpoint is
# byte-identical to an uninterrupted run with the same seed.
#
#   scripts/kill-test.sh [KILLS] [BMSSL_BINARY]
#
# KILLS defaults to 10, the binary to target/release/bmssl (built if missing). RANDOM is seeded
# from $KILL_TEST_SEED (default 1) so that a failure can be replayed. Needs python3 (only to write
# the tiny PNG dataset; no packages). The automated version of this script is
# crates/bmssl-cli/tests/kill_resume.rs.
set -euo pipefail

KILLS=${1:-10}
BIN=${2:-target/release/bmssl}
RANDOM=${KILL_TEST_SEED:-1}
cd "$(dirname "$0")/.."
if [[ ! -x $BIN ]]; then cargo build --release -p bmssl-cli; fi
BIN=$(realpath "$BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bmssl-kill-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 10 classes x 4 random 28x28 grey PNGs.
python3 - "$WORK/images" <<'PY'
import os, random, struct, sys, zlib
def png(path, w, h, pix):
    raw = b"".join(b"\0" + bytes(pix[y * w:(y + 1) * w]) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
root, r = sys.argv[1], random.Random(0)
for c in range(10):
    os.makedirs(f"{root}/class{c:02d}")
    for i in range(4):
        png(f"{root}/class{c:02d}/{i}.png", 28, 28, [255 if r.random() < 0.2 else 0 for _ in range(784)])
PY

train() {
  "$BIN" train --dataset "$WORK/images" --channels 1 --image-size 28 --images-per-batch 6 \
    --tasks-per-batch 2 --views 3 --support-views 1 --query-views 2 --inner-steps 1 \
    --bootstrap-steps 1 --meta-steps 12 --checkpoint-every 2 --validation-episodes 0 --no-eval \
    --quiet --run-dir "$1"
}
resume() { "$BIN" train --resume "$1" --no-eval --quiet --validation-episodes 0; }
start() { # a fresh start if killed before config.toml existed, else a resume
  if [[ -f $1/config.toml ]]; then resume "$1"; else train "$1"; fi
}

echo "uninterrupted run..."
t0=$(date +%s%N)
train "$WORK/ref" 2>/dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
REF=$WORK/ref/checkpoints/step-0000012.safetensors
echo "  ${ms} ms, $(sha256sum "$REF" | cut -c1-16)"

RUN=$WORK/killed
kills=0 midwrite=0 attempts=0
while (( kills < KILLS )); do
  start "$RUN" 2>/dev/null &
  pid=$!
  attempts=$((attempts + 1))
  if (( attempts % 3 == 1 )); then
    # Wait for a checkpoint's temporary file (.step-*.tmp-*), then kill.
    for _ in $(seq 5000); do
      compgen -G "$RUN/checkpoints/.step-*.tmp-*" >/dev/null && break
      kill -0 $pid 2>/dev/null || break
      sleep 0.001
    done
    how="during a checkpoint write"
  else
    delay=$(( RANDOM % (ms + 1) ))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    how="after ${delay} ms"
  fi
  if kill -9 $pid 2>/dev/null; then
    wait $pid 2>/dev/null || true
    kills=$((kills + 1))
    left=$(compgen -G "$RUN/checkpoints/.step-*.tmp-*" | wc -l || true)
    (( left > 0 )) && midwrite=$((midwrite + 1))
    newest=$(ls "$RUN/checkpoints" 2>/dev/null | grep '^step-' | tail -1 || true)
    echo "kill $kills $how: newest checkpoint ${newest:-none}, ${left} half-written"
  else
    wait $pid || true
  fi
  # Finished before the kill landed: start over so that the kills hit a live run.
  if [[ -f $RUN/checkpoints/step-0000012.safetensors ]]; then rm -rf "$RUN"; fi
done

echo "final resume..."
start "$RUN" 2>/dev/null
if cmp -s "$REF" "$RUN/checkpoints/step-0000012.safetensors"; then
  echo "PASS: $kills kills ($midwrite mid-write), final checkpoint byte-identical to the uninterrupted run"
else
  echo "FAIL: final checkpoint differs from the uninterrupted run" >&2
  exit 1
fi
