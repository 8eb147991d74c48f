#!/usr/bin/env python3
"""BMSSL minus MetaSSL under `bmssl eval --tune-adapt` (step size and steps chosen per setting on
validation), paired over the same 2000 test episodes.

    python3 docs/results/bmssl-study-2026-12-06/tuned_adapt.py [DIR]

DIR (default: tuned-adapt/ beside this script) holds the `--json` files of the two evaluations.
Reads both eval.json shapes (`ways`/`shots` per result, or the record's `setting`)."""
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "tuned-adapt")
PAIR = ("bmssl-add03-paper-zh-L1-seed=0", "metassl-zh-L1-seed=0")


def results(name):
    with open(os.path.join(DIR, name + ".json")) as f:
        doc = json.load(f)
    out = {}
    for r in doc["results"]:
        s = r.get("setting") or {"ways": r["ways"], "shots": r["shots"]}
        out["%dw%ds" % (s["ways"], s["shots"])] = r
    return out


def interval(xs):
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, 1.96 * sd / math.sqrt(n)


def chosen(r):
    c = (r.get("tuning") or {}).get("chosen") or {}
    return "lr %s x %s" % (c.get("lr"), c.get("steps"))


def main():
    a, b = (results(p) for p in PAIR)
    print("| setting | BMSSL (shipped, L = 1) | MetaSSL (L = 1) | BMSSL - MetaSSL, paired |")
    print("|---|---|---|---|")
    for s in ("5w1s", "5w5s", "20w1s"):
        ra, rb = a[s], b[s]
        d = [x - y for x, y in zip(ra["accuracies"], rb["accuracies"])]
        m, h = interval(d)
        print(
            "| %s | %.2f +- %.2f (%s) | %.2f +- %.2f (%s) | %+.2f +- %.2f |"
            % (s, 100 * ra["mean"], 100 * ra["ci95"], chosen(ra), 100 * rb["mean"],
               100 * rb["ci95"], chosen(rb), 100 * m, 100 * h)
        )


if __name__ == "__main__":
    main()
