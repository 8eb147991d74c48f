#!/usr/bin/env python3
"""Stage 6 of the BMSSL study (l1-screen-1250.toml): the bootstrap at L = 1, on validation.

    python3 l1_screen.py OUT        # OUT: the output directory of l1-screen-1250.toml

Score: the mean over 5w1s, 5w5s and 20w1s of the adapt and proto validation accuracies (stage 5's
score). Each variant is compared with the shipped BMSSL (bmssl-add03-paper-zh-L1) and with MetaSSL
(metassl-zh-L1), seed 0. Pairing as in l1_rule.py: per episode d = (adapt_a + proto_a - adapt_b -
proto_b) / 2 within a setting; the three settings' means are averaged, variance sum(var_s / n_s) / 9.
The rule (pre-registered): a variant is carried to seed 1 only if its interval against the shipped
BMSSL is above zero. Then the seed-2 pair's test cells (2000 episodes), as paired differences.
Standard library only; parts not yet finished are listed and skipped.
"""
import json, math, os, sys

SHIPPED = "bmssl-add03-paper-zh-L1"
METASSL = "metassl-zh-L1"
VARIANTS = [
    SHIPPED,
    "bmssl-add1-paper-zh-L1",
    "bmssl-add3-paper-zh-L1",
    "bmssl-add03-qs-zh-L1",
    "bmssl-add1-qs-zh-L1",
]
SETTINGS = ["5w1s", "5w5s", "20w1s"]
MODES = ["adapt", "proto"]


def load(out, part, split, setting, mode):
    path = os.path.join(out, "parts", part, f"eval-{split}-{setting}-{mode}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def paired(xs, ys):
    d = [100 * (x - y) for x, y in zip(xs, ys)]
    n = len(d)
    mu = sum(d) / n
    var = sum((x - mu) ** 2 for x in d) / (n - 1)
    return mu, var / n


def score_diff(out, a, b):
    """(mean, 95% half-width) of the score difference a - b on validation, or None."""
    means, variances = [], []
    for s in SETTINGS:
        ea = {m: load(out, a, "val", s, m) for m in MODES}
        eb = {m: load(out, b, "val", s, m) for m in MODES}
        if any(v is None for v in list(ea.values()) + list(eb.values())):
            return None
        for m in MODES:
            assert ea[m]["episode_seed"] == eb[m]["episode_seed"]
            assert len(ea[m]["accuracies"]) == len(eb[m]["accuracies"])
        xs = [(p + q) / 2 for p, q in zip(ea["adapt"]["accuracies"], ea["proto"]["accuracies"])]
        ys = [(p + q) / 2 for p, q in zip(eb["adapt"]["accuracies"], eb["proto"]["accuracies"])]
        mu, v = paired(xs, ys)
        means.append(mu)
        variances.append(v)
    return sum(means) / 3, 1.96 * math.sqrt(sum(variances)) / 3


def cells(out, part, split):
    row = []
    for s in SETTINGS:
        for m in MODES:
            e = load(out, part, split, s, m)
            row.append("-" if e is None else f"{100 * e['mean']:.2f}")
    return row


def main():
    out = sys.argv[1]
    print("## Validation (500 episodes per setting, seed 0 episodes; training seed 0)\n")
    head = " | ".join(f"{s} {m}" for s in SETTINGS for m in MODES)
    print(f"| part | {head} | score - shipped BMSSL | score - MetaSSL | carried to seed 1 |")
    print("|---|" + "---|" * (len(SETTINGS) * len(MODES) + 3))
    for part in [METASSL] + VARIANTS:
        vs_shipped = score_diff(out, part, SHIPPED) if part != SHIPPED else None
        vs_meta = score_diff(out, part, METASSL) if part != METASSL else None
        fmt = lambda r: "-" if r is None else f"{r[0]:+.2f} ± {r[1]:.2f}"
        carried = "" if part in (SHIPPED, METASSL) or vs_shipped is None else (
            "yes" if vs_shipped[0] - vs_shipped[1] > 0 else "no")
        print(f"| {part} | {' | '.join(cells(out, part, 'val'))} | {fmt(vs_shipped)} | {fmt(vs_meta)} | {carried} |")

    print("\n## Test, seed-2 pair (2000 episodes per setting, episode seed 0)\n")
    b, m = SHIPPED + "-s2", METASSL + "-s2"
    print("| setting | mode | BMSSL % | MetaSSL % | BMSSL - MetaSSL (points, 95%) |")
    print("|---|---|---|---|---|")
    for s in SETTINGS:
        for mode in MODES:
            eb, em = load(out, b, "test", s, mode), load(out, m, "test", s, mode)
            if eb is None or em is None:
                print(f"| {s} | {mode} | - | - | not yet run |")
                continue
            assert eb["episode_seed"] == em["episode_seed"]
            mu, v = paired(eb["accuracies"], em["accuracies"])
            print(f"| {s} | {mode} | {100 * eb['mean']:.2f} | {100 * em['mean']:.2f} | {mu:+.2f} ± {1.96 * math.sqrt(v):.2f} |")


if __name__ == "__main__":
    main()
