"""Prints the table of this directory's README from the eval JSON files beside it.
    python3 docs/results/omniglot-baselines-2026-11-25/table.py"""
import json, os
here = os.path.dirname(os.path.abspath(__file__))
paper = {"maml": [93.22, 97.53, 82.36], "protonet": [95.83, 99.29, 92.80],
         "umtra": [83.32, 94.23, 75.84], "scratch": [50.29, 72.82, 26.20]}
print("| method | mode | 5w1s | 5w5s | 20w1s | paper 5w1s / 5w5s / 20w1s |")
print("|---|---|---|---|---|---|")
for m in ["maml", "protonet", "umtra", "scratch"]:
    for mode in ["adapt", "proto"]:
        f = os.path.join(here, m, f"test-{mode}.json")
        if not os.path.exists(f):
            continue
        d = json.load(open(f))
        cells = {f"{r['ways']}w{r['shots']}s": f"{100*r['mean']:.2f} ± {100*r['ci95']:.2f}" for r in d["results"]}
        print(f"| {m} | {mode} | {cells.get('5w1s','-')} | {cells.get('5w5s','-')} | {cells.get('20w1s','-')} | "
              + " / ".join(f"{v:.2f}" for v in paper[m]) + " |")
