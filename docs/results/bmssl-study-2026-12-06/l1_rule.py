#!/usr/bin/env python3
"""The pre-registered inner-horizon rule of the BMSSL study (README, stage 4), on validation.

    python3 l1_rule.py OUT          # OUT: the output directory of l1-rule-1250.toml

For each method (MetaSSL with the zeroing trick; BMSSL: the shipped L = 5 reading against the L = 1
reading chosen at 300 steps) and each seed, the score is the mean over 5w1s, 5w5s and 20w1s of the
adapt and proto validation accuracies. The rule: L = 1 becomes the default if L1 - L5 has a paired
95% interval above zero at seeds 0 and 1, for both methods.

Pairing: within a setting, adapt and proto are scored on the same episodes, so each episode gives
d = (adapt_L1 + proto_L1 - adapt_L5 - proto_L5) / 2; the settings' episodes are independent, so the
mean of the three settings' means has variance sum(var_s / n_s) / 9. Standard library only.
"""
import json, math, os, sys

PAIRS = {
    "metassl": ("metassl-zh-L1", "metassl-zh"),
    "bmssl": ("bmssl-add03-paper-zh-L1", "bmssl-add03-qs-zh"),
}
SETTINGS = ["5w1s", "5w5s", "20w1s"]
MODES = ["adapt", "proto"]


def load(out, part, setting, mode):
    path = os.path.join(out, "parts", part, f"eval-val-{setting}-{mode}.json")
    with open(path) as f:
        return json.load(f)


def main():
    out = sys.argv[1]
    verdict = {}
    print("| method | seed | setting | L = 1: adapt / proto % | L = 5: adapt / proto % | L1 - L5 (mean of both modes, points, 95%) |")
    print("|---|---|---|---|---|---|")
    for method, (l1, l5) in PAIRS.items():
        for seed in (0, 1):
            means, variances = [], []
            for s in SETTINGS:
                a = {m: load(out, f"{l1}-seed={seed}", s, m) for m in MODES}
                b = {m: load(out, f"{l5}-seed={seed}", s, m) for m in MODES}
                for m in MODES:
                    assert a[m]["episode_seed"] == b[m]["episode_seed"]
                    assert len(a[m]["accuracies"]) == len(b[m]["accuracies"])
                d = [
                    100 * (xa + xp - ya - yp) / 2
                    for xa, xp, ya, yp in zip(
                        a["adapt"]["accuracies"], a["proto"]["accuracies"],
                        b["adapt"]["accuracies"], b["proto"]["accuracies"],
                    )
                ]
                n = len(d)
                mu = sum(d) / n
                var = sum((x - mu) ** 2 for x in d) / (n - 1)
                means.append(mu)
                variances.append(var / n)
                print(
                    f"| {method} | {seed} | {s} | {100 * a['adapt']['mean']:.2f} / {100 * a['proto']['mean']:.2f} "
                    f"| {100 * b['adapt']['mean']:.2f} / {100 * b['proto']['mean']:.2f} | {mu:+.2f} ± {1.96 * math.sqrt(var / n):.2f} |"
                )
            mu = sum(means) / len(means)
            ci = 1.96 * math.sqrt(sum(variances)) / len(means)
            verdict[(method, seed)] = mu - ci > 0
            print(f"| **{method}** | **{seed}** | **mean of the three** | | | **{mu:+.2f} ± {ci:.2f}** |")
    print()
    for method in PAIRS:
        ok = all(verdict[(method, s)] for s in (0, 1))
        print(f"{method}: L = 1 {'passes' if ok else 'does not pass'} the rule (interval above zero at seeds 0 and 1: "
              f"{', '.join(str(verdict[(method, s)]) for s in (0, 1))})")


if __name__ == "__main__":
    main()
