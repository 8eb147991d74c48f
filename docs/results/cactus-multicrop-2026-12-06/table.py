#!/usr/bin/env python3
"""Prints this directory's tables from the per-episode test files beside it (and the SSL table's).

    python3 docs/results/cactus-multicrop-2026-12-06/table.py

Every file holds 2000 test episodes of one setting (episode seed 0, 15 queries per class): the same
episodes as ../omniglot-ssl-2026-12-04/, so differences are paired per episode (95% interval:
1.96 sd / sqrt(n)). Standard library only.
"""
import json, math, os

here = os.path.dirname(os.path.abspath(__file__))
ssl = os.path.join(here, "..", "omniglot-ssl-2026-12-04")
SETTINGS = ["5w1s", "5w5s", "20w1s"]
# The paper's Table 3 CACTUs row and SwAV row (Omniglot, 5w1s / 5w5s / 20w1s).
PAPER = {"cactus": [65.29, 86.25, 49.54], "swav": [91.28, 97.21, 82.02]}


def load(path):
    if not os.path.exists(path):
        return None
    r = json.load(open(path))["results"][0]
    assert r["episodes"] == 2000
    return r


def fmt(r):
    return "-" if r is None else f"{100 * r['mean']:.2f} ± {100 * r['ci95']:.2f}"


def diff(a, b):
    if a is None or b is None:
        return "-"
    d = [100 * (x - y) for x, y in zip(a["accuracies"], b["accuracies"])]
    n = len(d)
    mu = sum(d) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in d) / (n - 1))
    return f"{mu:+.2f} ± {1.96 * sd / math.sqrt(n):.2f}"


rows = [
    ("CACTUs-ProtoNet", "cactus-protonet", "proto"),
    ("CACTUs-MAML", "cactus-maml", "adapt"),
    ("CACTUs-MAML", "cactus-maml", "proto"),
]
print("| method | mode | 5w1s | 5w5s | 20w1s | minus SimCLR, its embedding's config (proto), 5w1s / 5w5s / 20w1s |")
print("|---|---|---|---|---|---|")
for name, run, mode in rows:
    cells = [load(os.path.join(here, run, f"test-{mode}-{s}.json")) for s in SETTINGS]
    simclr = [load(os.path.join(ssl, "simclr", f"test-proto-{s}.json")) for s in SETTINGS]
    print(f"| {name} | {mode} | " + " | ".join(fmt(c) for c in cells) + " | "
          + " / ".join(diff(c, s) for c, s in zip(cells, simclr)) + " |")
print("| SimCLR (`../omniglot-ssl-2026-12-04/simclr`) | proto | "
      + " | ".join(fmt(load(os.path.join(ssl, "simclr", f"test-proto-{s}.json"))) for s in SETTINGS) + " | |")
print("| paper's CACTUs (Table 3) | | " + " | ".join(f"{v:.2f}" for v in PAPER["cactus"]) + " | |")
print()
print("| method | 5w1s | 5w5s | 20w1s | multi-crop minus two views, 5w1s / 5w5s / 20w1s |")
print("|---|---|---|---|---|")
two = [load(os.path.join(ssl, "swav", f"test-proto-{s}.json")) for s in SETTINGS]
mc = [load(os.path.join(here, "swav-mc", f"test-proto-{s}.json")) for s in SETTINGS]
print("| SwAV, two views (`../omniglot-ssl-2026-12-04/swav`) | " + " | ".join(fmt(c) for c in two) + " | |")
print("| SwAV, multi-crop 2 x 28 + 6 x 16 (`swav-mc`) | " + " | ".join(fmt(c) for c in mc) + " | "
      + " / ".join(diff(a, b) for a, b in zip(mc, two)) + " |")
print("| paper's SwAV (Table 3) | " + " | ".join(f"{v:.2f}" for v in PAPER["swav"]) + " | |")
