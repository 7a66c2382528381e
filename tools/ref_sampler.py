#!/usr/bin/env python3
"""tools/ref_sampler.py: the kept set of rft's sampling filters
(trainer/sampler.c) as Hugging Face transformers computes it, and the
generator of tests/fixtures/sampler_cases.json.

Each case is a row of float32 logits and (temperature, top_k, top_p, min_p);
its kept set is the ids left finite by transformers' own warpers in
generate()'s order: TemperatureLogitsWarper, TopKLogitsWarper,
TopPLogitsWarper, MinPLogitsWarper (vLLM applies the same order: top-k, then
top-p over the top-k survivors, then min-p). tests/test_rollout.c checks
sampler_distribution's support against it.

Left out (the generator drops them and counts them): cases where the kept
set depends on how ties are ordered, and cases within rounding of a cut.
  * A tie across the top-k cut: transformers (and vLLM) keep every id whose
    prob equals the k-th one; rft keeps exactly k, lower ids first.
  * A tie across the top-p cut: transformers sorts ascending with a stable
    sort, so it drops the lower ids of the tied run first; rft keeps the
    lower ids. Detected by running the warpers on the reversed row.
  * A cumulative mass within 1e-5 (relative) of top_p times the mass, or a
    prob within 1e-5 of min_p times the largest prob: float32 (transformers)
    and rft's double sums may fall on either side.
Ties anywhere else (inside the kept set, in the removed tail, at the top)
are kept in: the levels cases below are built from a few repeated logits.

    python3 tools/ref_sampler.py > tests/fixtures/sampler_cases.json
"""
import json
import sys

import numpy as np
import torch
from transformers.generation.logits_process import (LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

MARGIN = 1e-5


def hf_kept(z, T, top_k, top_p, min_p, only_top_k=False):
    """ids left finite by transformers' warpers on the float32 row z"""
    ws = [TemperatureLogitsWarper(T)]
    if top_k > 0:
        ws.append(TopKLogitsWarper(top_k))
    if not only_top_k:
        if top_p < 1:
            ws.append(TopPLogitsWarper(top_p))
        if min_p > 0:
            ws.append(MinPLogitsWarper(min_p))
    s = LogitsProcessorList(ws)(None, torch.tensor(z, dtype=torch.float32)[None, :])[0]
    return [i for i in range(len(z)) if torch.isfinite(s[i])]


def ambiguous(z, T, top_k, top_p, min_p):
    """why the case's kept set depends on tie order or rounding, else None"""
    V = len(z)
    if 0 < top_k < V and len(hf_kept(z, T, top_k, 1.0, 0.0, only_top_k=True)) > top_k:
        return "tie at the top-k cut"
    rev = sorted(V - 1 - i for i in hf_kept(z[::-1].copy(), T, top_k, top_p, min_p))
    if rev != hf_kept(z, T, top_k, top_p, min_p):
        return "tie at the top-p cut"
    x = z.astype(np.float64) / T
    p = np.exp(x - x.max())
    p /= p.sum()
    order = sorted(range(V), key=lambda i: (-p[i], i))
    n = min(top_k, V) if top_k > 0 else V
    if top_p < 1:
        tot = sum(p[order[k]] for k in range(n))
        cum = np.cumsum([p[order[k]] for k in range(n)])
        if np.any(np.abs(cum / tot - top_p) < MARGIN):
            return "cumulative mass at top_p"
    if min_p > 0 and np.any(np.abs(p / p.max() - min_p) < MARGIN):
        return "prob at min_p * max"
    return None


def main():
    rng = np.random.default_rng(20261127)
    rows = []
    # the example: [.5, .3, .2], top_p 0.6, min_p 0.5 keeps {.5, .3}
    rows.append(("example", np.log(np.array([0.5, 0.3, 0.2])).astype(np.float32), 1.0, 0, 0.6, 0.5))
    rows.append(("example top_p only", np.log(np.array([0.5, 0.3, 0.2])).astype(np.float32), 1.0, 0, 0.6, 0.0))
    settings = [(T, k, p, m) for T in (1.0, 0.7, 1.5) for k in (0, 1, 3, 10) for p in (1.0, 0.3, 0.6, 0.9)
                for m in (0.0, 0.05, 0.2, 0.5)]
    # continuous rows: V 8 and 40, a sample of the settings each
    for V in (8, 40):
        for si in rng.choice(len(settings), 24, replace=False):
            z = (3.0 * rng.standard_normal(V)).astype(np.float32)
            rows.append(("normal", z) + settings[si])
    # rows of a few levels (ties inside the kept set, in the removed tail
    # and at the top); runs of 2, 3, 4 and 3 ids, so top-k 2, 5 and 9 cut
    # between runs
    lv_settings = [(T, k, p, m) for T in (1.0, 0.7) for k in (0, 2, 5, 9) for p in (1.0, 0.3, 0.6, 0.9)
                   for m in (0.0, 0.05, 0.2, 0.5)]
    for si in rng.choice(len(lv_settings), 40, replace=False):
        z = rng.permutation(np.array([3, 3, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0], dtype=np.float32) * 1.3)
        rows.append(("levels", z) + lv_settings[si])
    # long rows (the sampler sorts a head only when more than 64 ids are left,
    # and may stop at the min-p floor)
    for V, T, k, p, m in [(1000, 1.0, 0, 0.9, 0.05), (1000, 1.0, 50, 0.9, 0.02), (1000, 0.7, 0, 0.5, 0.3),
                          (1000, 1.0, 200, 0.95, 0.0), (1000, 1.0, 0, 0.95, 0.0), (1000, 1.0, 20, 1.0, 0.1),
                          (200, 1.5, 0, 0.3, 0.01), (200, 1.0, 100, 0.99, 0.001), (1000, 1.0, 200, 0.5, 0.05),
                          (1000, 1.0, 300, 0.7, 0.1), (1000, 1.0, 0, 0.99, 0.1), (1000, 1.0, 500, 1.0, 0.05)]:
        z = (2.0 * rng.standard_normal(V)).astype(np.float32)
        rows.append(("normal", z, T, k, p, m))
    cases, dropped = [], {}
    for name, z, T, k, p, m in rows:
        why = ambiguous(z, T, k, p, m)
        if why:
            dropped[why] = dropped.get(why, 0) + 1
            continue
        cases.append({"name": name, "logits": [float(x) for x in z], "temperature": T, "top_k": k, "top_p": p,
                      "min_p": m, "kept": hf_kept(z, T, k, p, m)})
    print("ref_sampler: %d cases, left out: %s" % (len(cases), dropped or "none"), file=sys.stderr)
    json.dump({"generator": "tools/ref_sampler.py", "cases": cases}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
