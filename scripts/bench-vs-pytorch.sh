#!/usr/bin/env bash
# Side-by-side speed of `bmssl bench` and the PyTorch reference (`bmssl_torch.py bench`) on this
# machine, in one go: meta-steps/s at three shapes (the reference's Omniglot default: 4 tasks of
# 5 ways, 1 support + 3 query views, L = 5, delta = 5; the miniImageNet shape 3x84x84; 20-way
# Omniglot), each for BMSSL second order, BMSSL first order and MetaSSL second order, with one
# thread each and with every core each, and the ratio; then Conv4 forward and forward+backward on a
# batch of 80, adapt-mode evaluation episodes per second, and the peak RSS of meta-steps with
# delta = 1, 20 and 60, on one thread and on all.
#
#   PYTHON=/path/to/python-with-torch scripts/bench-vs-pytorch.sh [STEPS]
#
# STEPS timed meta-steps per Omniglot measurement (a quarter of them, at least 1, at 84x84).
# FEATURES=avx512 builds with gemm's AVX-512 kernels (the convolutions use AVX-512 anyway). SHAPES / THREADS (space-separated names /
# counts) restrict the table, e.g. SHAPES=omniglot THREADS=1; SHAPES=none skips it. EVAL: adapt-mode
# evaluation episodes timed per thread count (default 100). ROUNDS (default 1): runs of each side
# per cell, alternating, the best of each kept (on a noisy machine the best is the steadiest).
# Needs `pip install torch numpy` for PYTHON (never needed by the product or its tests). Run it on an
# otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
STEPS=${1:-10}
REF=${REF:-../shared/reference/bmssl_torch.py}
ALL=$(nproc)
SHAPES=${SHAPES:-omniglot miniimagenet omniglot-20way}
THREADS=${THREADS:-1 $ALL}
EVAL=${EVAL:-100}
ROUNDS=${ROUNDS:-1}
cargo build --release -p bmssl-cli ${FEATURES:+--features "$FEATURES"} >&2
BIN=target/release/bmssl
field() { "$PYTHON" -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
shape_flags() {
  case "$1" in
    omniglot) echo "" ;;
    miniimagenet) echo "--channels 3 --size 84" ;;
    omniglot-20way) echo "--n-images 40 --blocks 2" ;;
    *) echo "unknown shape $1" >&2; exit 2 ;;
  esac
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $ALL cores;" \
  "$(grep -o -m1 'avx512f' /proc/cpuinfo || echo 'no avx512')"
[ "$ROUNDS" -gt 1 ] && echo "each figure the best of $ROUNDS runs, the two sides alternating"
printf '%-16s %-18s %7s %11s %11s %8s\n' shape configuration threads "pytorch/s" "bmssl/s" ratio
for shape in $SHAPES; do
  [ "$shape" = none ] && continue
  flags=$(shape_flags "$shape")
  steps=$STEPS
  [ "$shape" = miniimagenet ] && steps=$(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))
  for cfg in "" "--first-order" "--method metassl"; do
    for t in $THREADS; do
      torch=0; ours=0
      for _ in $(seq "$ROUNDS"); do
        a=$("$PYTHON" "$REF" bench --steps "$steps" --threads "$t" $flags $cfg | field meta_steps_per_s)
        b=$($BIN bench --json --steps "$steps" --threads "$t" $flags $cfg | field meta_steps_per_s)
        torch=$("$PYTHON" -c "print(max($torch, $a))"); ours=$("$PYTHON" -c "print(max($ours, $b))")
      done
      printf '%-16s %-18s %7s %11.3f %11.3f %7.2fx\n' "$shape" "${cfg:-second order}" "$t" \
        "$torch" "$ours" "$("$PYTHON" -c "print($ours/$torch)")"
    done
  done
done
echo
echo "Conv4 on a batch of 80 x 1x28x28, one thread (median of 20):"
$BIN bench --json --steps 1 --threads 1 --conv4-batch 80 | "$PYTHON" -c "
import json,sys; d=json.loads(sys.stdin.read())
print(f\"  bmssl-rs: forward {d['conv4_forward_ms']:.1f} ms ({d['conv4_forward_gflops']:.1f} GFLOP/s), forward+backward {d['conv4_forward_backward_ms']:.1f} ms ({d['conv4_forward_backward_gflops']:.1f} GFLOP/s)\")"
"$PYTHON" - "$REF" <<'PY'
import importlib.util, sys, time, torch, torch.nn.functional as F
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
p = {k: v.requires_grad_() for k, v in ref.init_params(1, 5, gen=g).items()}
x = torch.randn(80, 1, 28, 28, generator=g); y = torch.arange(80) % 5
def med(f):
    f(); t = []
    for _ in range(20):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return sorted(t)[10] * 1e3
fwd = med(lambda: ref.forward(p, x))
fb = med(lambda: torch.autograd.grad(F.cross_entropy(ref.forward(p, x)[0], y), list(p.values()), allow_unused=True))
print(f"  pytorch:  forward {fwd:.1f} ms, forward+backward {fb:.1f} ms")
PY
echo
echo "Adapt-mode evaluation, Omniglot 5-way 1-shot: zero classifier, 5 SGD steps of cross-entropy at"
echo "step size 0.4 on the 5 support images, then the 75 queries' predictions; episodes/s ($EVAL"
echo "episodes each; bmssl spreads them over the threads as \`bmssl eval\` does, PyTorch runs them one"
echo "after the other on its intra-op threads):"
printf '%7s %11s %11s %8s %22s\n' threads "pytorch/s" "bmssl/s" ratio "bmssl, 2000 episodes"
for t in $THREADS; do
  torch=$("$PYTHON" - "$REF" "$t" "$EVAL" <<'PY'
import importlib.util, sys, time, torch, torch.nn.functional as F
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
threads, n = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
theta = ref.init_params(1, 5, gen=g)
theta["classifier.weight"].zero_(); theta["classifier.bias"].zero_()
xs, ys = torch.randn(5, 1, 28, 28, generator=g), torch.arange(5)
xq = torch.randn(75, 1, 28, 28, generator=g)
def episode():
    p = {k: v.clone().requires_grad_() for k, v in theta.items()}
    for _ in range(5):
        loss = F.cross_entropy(ref.forward(p, xs)[0], ys)
        gr = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
        p = {k: (v if gi is None else (v - 0.4 * gi)).detach().requires_grad_() for (k, v), gi in zip(p.items(), gr)}
    with torch.no_grad():
        return ref.forward(p, xq)[0].argmax(1)
episode()
t0 = time.perf_counter()
for _ in range(n):
    episode()
print(n / (time.perf_counter() - t0))
PY
)
  ours=$($BIN bench --json --steps 1 --threads "$t" --eval-episodes "$EVAL" | field eval_episodes_per_s)
  printf '%7s %11.2f %11.2f %7.2fx %20.1f s\n' "$t" "$torch" "$ours" \
    "$("$PYTHON" -c "print($ours/$torch)")" "$("$PYTHON" -c "print(2000/$ours)")"
done
echo
echo "Peak RSS of the process after meta-steps (BMSSL second order, L = 5), one thread (reproducible"
echo "to ~0.2 MiB) and all threads (moves by ~20 MiB from run to run with how the threads' allocations"
echo "overlap, whatever delta is):"
for d in 1 20 60; do
  printf '  delta = %-3s %6.1f MiB one thread, %6.1f MiB all threads\n' "$d" \
    "$($BIN bench --json --steps 3 --threads 1 --delta "$d" | field peak_rss_mib)" \
    "$($BIN bench --json --steps 3 --delta "$d" | field peak_rss_mib)"
done
