"""Prints the tables of this directory's README from the eval JSON files beside it.
    python3 docs/results/omniglot-ssl-2026-12-04/table.py"""
import json, os
here = os.path.dirname(os.path.abspath(__file__))
# The paper's Omniglot numbers for the "-x" rows (5w1s / 5w5s / 20w1s), as quoted in the issue.
paper = {"simclr": [90.83, 97.67, 81.67], "moco": [87.83, 95.52, 80.03],
         "swav": [91.28, 97.21, 82.02], "psco": [96.18, 98.22, 89.32]}
settings = ["5w1s", "5w5s", "20w1s"]


def cell(run, mode, s):
    f = os.path.join(here, run, f"test-{mode}-{s}.json")
    if not os.path.exists(f):
        return None
    r = json.load(open(f))["results"][0]
    return r["mean"] * 100, r["ci95"] * 100


def fmt(c):
    return "-" if c is None else f"{c[0]:.2f} ± {c[1]:.2f}"


print("| method | -x (proto) 5w1s | 5w5s | 20w1s | -o (proto) 5w1s | 5w5s | 20w1s | paper -x 5w1s / 5w5s / 20w1s |")
print("|---|---|---|---|---|---|---|---|")
for m in ["simclr", "moco", "swav", "barlowtwins", "psco"]:
    x = [fmt(cell(m, "proto", s)) for s in settings]
    o = [fmt(cell(m + "-o", "proto", s)) for s in settings] if m != "psco" else ["n/a"] * 3
    p = " / ".join(f"{v:.2f}" for v in paper[m]) if m in paper else "-"
    print(f"| {m} | " + " | ".join(x + o) + f" | {p} |")
print()
print("| -o variant | adapt 5w1s | 5w5s | 20w1s |")
print("|---|---|---|---|")
for m in ["simclr", "moco", "swav", "barlowtwins"]:
    print(f"| {m}-o | " + " | ".join(fmt(cell(m + "-o", "adapt", s)) for s in settings) + " |")
print()
print("| -o minus -x (proto, paired over the same episodes, points) | 5w1s | 5w5s | 20w1s |")
print("|---|---|---|---|")
for m in ["simclr", "moco", "swav", "barlowtwins"]:
    cells = []
    for s in settings:
        a = json.load(open(os.path.join(here, m + "-o", f"test-proto-{s}.json")))["results"][0]["accuracies"]
        b = json.load(open(os.path.join(here, m, f"test-proto-{s}.json")))["results"][0]["accuracies"]
        d = [100 * (x - y) for x, y in zip(a, b)]
        mean = sum(d) / len(d)
        sd = (sum((v - mean) ** 2 for v in d) / (len(d) - 1)) ** 0.5
        cells.append(f"{mean:+.2f} ± {1.96 * sd / len(d) ** 0.5:.2f}")
    print(f"| {m} | " + " | ".join(cells) + " |")
