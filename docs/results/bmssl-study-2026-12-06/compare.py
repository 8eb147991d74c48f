#!/usr/bin/env python3
"""Paired differences between parts of a sweep directory, on the same episodes.

    python3 compare.py OUT BASELINE [PART ...]

A BASELINE or PART written OTHER_OUT:PART is read from another sweep directory (its episodes must
be the same: same split, setting, seed and count, which is checked).

For every evaluation file `eval-<split>-<setting>-<mode>.json` that BASELINE and a PART both have,
prints the PART's accuracy, and the mean of the per-episode differences PART - BASELINE with its 95%
interval (1.96 sd / sqrt(n)), in percentage points. Standard library only.
"""
import json, math, os, sys

def evals(out, part):
    if ":" in part:
        out, part = part.rsplit(":", 1)
    d = os.path.join(out, "parts", part)
    found = {}
    for name in sorted(os.listdir(d)):
        if name.startswith("eval-") and name.endswith(".json"):
            found[name[5:-5]] = json.load(open(os.path.join(d, name)))
    return found

def main():
    out, base, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
    b = evals(out, base)
    if not parts:
        parts = sorted(p for p in os.listdir(os.path.join(out, "parts")) if p != base)

    print(f"| part | evaluation | accuracy % | minus {base} (points, 95%) |")
    print("|---|---|---|---|")
    for p in parts:
        e = evals(out, p)
        for key in sorted(set(e) & set(b)):
            x, y = e[key]["accuracies"], b[key]["accuracies"]
            if len(x) != len(y) or e[key]["episode_seed"] != b[key]["episode_seed"]:
                continue
            d = [100 * (u - v) for u, v in zip(x, y)]
            n = len(d)
            m = sum(d) / n
            sd = math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1))
            acc = 100 * e[key]["mean"]
            ci = 100 * e[key]["ci95"]
            print(f"| {p} | {key} | {acc:.2f} ± {ci:.2f} | {m:+.2f} ± {1.96 * sd / math.sqrt(n):.2f} |")

if __name__ == "__main__":
    main()
