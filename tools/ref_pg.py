#!/usr/bin/env python3
"""tools/ref_pg.py: NumPy reference for rft's policy-gradient mathematics
(trainer/pg.c) and the generator of tests/fixtures/pg_cases.json.

Written from TRL's GRPOTrainer (trl/trainer/grpo_trainer.py: the advantage
block of _generate_and_score_completions and _compute_loss) and the papers,
not from pg.c, in TRL's vectorised style: padded [B, T] arrays with a mask.

    advantages  grpo / dr_grpo / dapo / gspo: r - mean_group(r)
                rloo:          r - mean of the other valid rewards of the group
                scale group:   / (std_group(r) + 1e-4)   (std unbiased, as torch)
                scale batch:   / (std_batch(r) + 1e-4)   (TRL scale_rewards="batch")
                scale none:    as is
                masked rewards (grader error) take no part and get 0
                dynamic sampling (DAPO): groups whose valid rewards are all equal dropped
    overlong    DAPO soft overlong penalty (TRL get_soft_overlong_punishment)
    loss        s = exp(logp - old) per token, or exp(mean_t(logp - old)) per
                sequence (gspo, TRL importance_sampling_level="sequence");
                l_t = -min(s A, clip(s, 1-eps_low, 1+eps_high) A) + beta k3_t,
                k3_t = exp(ref - logp) - (ref - logp) - 1;
                aggregation token_mean (TRL dapo/bnpo) | seq_mean (TRL grpo) |
                seq_sum_norm (TRL dr_grpo: / (sequences * max_new_tokens));
                entropy bonus -entropy_coef * H, aggregated like the loss
    weights     w = -d loss / d logp, went = -d loss / d H (model_backward's
                loss = -sum w logp - sum went H), by analytic formulas, checked
                here against central finite differences of the NumPy loss and
                against torch autograd of TRL's expression. A ratio exactly
                on a clip bound sits on the kink of the surrogate: rft takes
                the unclipped branch's derivative there (the bound counts as
                inside, as in TRL's clip_ratio metrics, which use strict
                inequalities); torch autograd returns half of it (torch.min
                splits the tie, torch.clamp passes no gradient at its bounds),
                so exact-bound tokens are left out of the torch check.

Where rft's C contract (trainer/pg.h) deliberately differs from TRL the
reference follows pg.h, and says so:
  * sequences with keep = 0 (masked reward, dynamic sampling, mask_truncated)
    are not counted by any aggregation (TRL's grpo / dr_grpo still count a
    truncation-masked row in the number of sequences);
  * the entropy bonus uses the loss's aggregation (TRL: always a token mean);
  * gspo's clip fractions are token-weighted (TRL: per sequence);
  * reinforce_pp whitens the group-centred rewards over the batch (the paper).
Ratios use math.exp (the C library's exp) so that ratios constructed to sit
exactly on a clip boundary are the same doubles as in C.

Usage: python3 tools/ref_pg.py [--out tests/fixtures/pg_cases.json] [--seed 1]
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ADV_EPS = 1e-4
ALGOS = ["grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp"]
SCALES = ["group", "batch", "none"]
AGGS = ["token_mean", "seq_mean", "seq_sum_norm"]

# Defaults per algorithm (trainer/config.c config_finish), used for the docs
# table and for the "defaults" loss cases.
DEFAULTS = {
    "grpo": dict(scale="group", agg="seq_mean", eps_low=0.2, eps_high=0.2, dynamic_sampling=0),
    "dr_grpo": dict(scale="none", agg="seq_sum_norm", eps_low=0.2, eps_high=0.2, dynamic_sampling=0),
    "dapo": dict(scale="group", agg="token_mean", eps_low=0.2, eps_high=0.28, dynamic_sampling=1),
    "gspo": dict(scale="group", agg="seq_mean", eps_low=0.2, eps_high=0.2, dynamic_sampling=0),
    "rloo": dict(scale="none", agg="seq_mean", eps_low=0.2, eps_high=0.2, dynamic_sampling=0),
    "reinforce_pp": dict(scale="batch", agg="token_mean", eps_low=0.2, eps_high=0.2, dynamic_sampling=0),
}


def f32(x):
    """float32 rounding, returned as a Python float (exact)."""
    return float(np.float32(x))


# ---------------------------------------------------------------- advantages

def nanstd_unbiased(x, axis=None):
    """torch-style unbiased std ignoring NaN (TRL's nanstd); count <= 1 -> 0
    (TRL: NaN, which its nan_to_num turns into advantage 0 anyway)."""
    cnt = np.sum(~np.isnan(x), axis=axis)
    mean = np.nansum(x, axis=axis, keepdims=True) / np.maximum(np.sum(~np.isnan(x), axis=axis, keepdims=True), 1)
    dev2 = np.where(np.isnan(x), 0.0, (x - mean) ** 2)
    ss = np.sum(dev2, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(ss / (cnt - 1))
    return np.where(cnt > 1, std, 0.0)


def advantages(algo, scale, dynamic_sampling, reward, valid, G):
    """reward, valid: [N] with N = n_groups * G. Returns adv [N], keep [N], zero_std groups."""
    r = np.asarray(reward, dtype=np.float64).reshape(-1, G)
    v = np.asarray(valid, dtype=bool).reshape(-1, G)
    rn = np.where(v, r, np.nan)
    cnt = v.sum(axis=1, keepdims=True)  # [B, 1]
    gsum = np.nansum(rn, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        gmean = np.where(cnt > 0, gsum / np.maximum(cnt, 1), 0.0)
        if algo == "rloo":
            # leave-one-out baseline over the valid siblings (TRL RLOOTrainer)
            base = (gsum - rn) / (cnt - 1)
            a = np.where(cnt > 1, rn - base, 0.0)
        else:
            a = rn - gmean
    if algo == "reinforce_pp":
        # REINFORCE++-baseline (arXiv:2501.03262 eq. 10, OpenRLHF): the
        # group-centred rewards whitened over the batch; scale_rewards unused
        a = (a - np.nanmean(a)) / (nanstd_unbiased(a.reshape(-1)) + ADV_EPS)
    elif scale == "group":
        a = a / (nanstd_unbiased(rn, axis=1)[:, None] + ADV_EPS)
    elif scale == "batch":
        a = a / (nanstd_unbiased(rn.reshape(-1)) + ADV_EPS)
    adv = np.nan_to_num(np.where(v, a, 0.0), nan=0.0)
    # zero reward spread: every valid reward of the group equal (or < 2 valid)
    lo = np.where(v, r, np.inf).min(axis=1)
    hi = np.where(v, r, -np.inf).max(axis=1)
    flat = ~(hi > lo)
    keep = v & ~(flat[:, None] & bool(dynamic_sampling))
    return adv.reshape(-1), keep.reshape(-1).astype(int), int(flat.sum())


def overlong_penalty(length, max_new, buffer, penalty):
    """DAPO eq. 13 scaled by penalty (TRL get_soft_overlong_punishment)."""
    if buffer == 0:
        return 0.0
    expected = max_new - buffer
    if length <= expected:
        return 0.0
    if length <= max_new:
        return (expected - length) / buffer * penalty
    return -penalty


def reinforce_pp_paper(reward, valid, G):
    """REINFORCE++-baseline as in the paper / OpenRLHF (for the findings, not
    the fixture): group-centred rewards, then whitened over the batch."""
    r = np.asarray(reward, dtype=np.float64).reshape(-1, G)
    v = np.asarray(valid, dtype=bool).reshape(-1, G)
    rn = np.where(v, r, np.nan)
    a = rn - np.nanmean(rn, axis=1, keepdims=True)
    a = (a - np.nanmean(a)) / (nanstd_unbiased(a.reshape(-1)) + ADV_EPS)
    return np.nan_to_num(a, nan=0.0).reshape(-1)


# ---------------------------------------------------------------------- loss

def pad(seqs, key, fill):
    T = max([s["n"] for s in seqs] + [1])
    out = np.full((len(seqs), T), fill, dtype=np.float64)
    for k, s in enumerate(seqs):
        x = s.get(key)
        if x is not None:
            out[k, : s["n"]] = x
    return out


def cexp(x):
    return np.vectorize(math.exp, otypes=[np.float64])(x)


def loss_parts(P, seqs, logp=None, ent=None):
    """The loss of one mini-batch as a function of logp [B, T] and entropy H
    [B, T] (both padded). Returns a dict of intermediate arrays."""
    B = len(seqs)
    n = np.array([s["n"] for s in seqs])
    keep = np.array([bool(s["keep"]) and s["n"] > 0 for s in seqs])
    if logp is None:
        logp = pad(seqs, "logp", 0.0)
    T = logp.shape[1]
    mask = (np.arange(T)[None, :] < n[:, None]) & keep[:, None]
    # old = NULL: the sampling policy is the current one, old = logp.detach()
    # (TRL): the ratio is exactly 1 and its gradient is the ratio's
    old_is_logp = np.array([s.get("old") is None for s in seqs])
    old = np.where(old_is_logp[:, None], pad(seqs, "logp", 0.0), pad(seqs, "old", 0.0))
    A = np.array([s["adv"] for s in seqs], dtype=np.float64)[:, None]
    lr = logp - old
    if P["algo"] == "gspo":
        # sequence ratio from the mean token log-ratio, summed left to right
        # as the C loop does (the sum order matters for exact boundary cases)
        slr = np.zeros(B)
        for k in range(B):
            acc = 0.0
            for t in range(n[k]):
                acc += lr[k, t]
            slr[k] = acc / n[k] if n[k] > 0 else 0.0
        coef1 = np.repeat(cexp(slr)[:, None], T, axis=1)
    else:
        coef1 = cexp(lr)
    lo, hi = 1.0 - f32(P["eps_low"]), 1.0 + f32(P["eps_high"])
    coef2 = np.clip(coef1, lo, hi)
    ptl = -np.minimum(coef1 * A, coef2 * A)
    beta = f32(P["kl_beta"])
    ref = pad(seqs, "ref", 0.0)
    has_ref = np.array([s.get("ref") is not None for s in seqs])[:, None]
    use_kl = beta > 0 and bool(has_ref.any())
    d = ref - logp
    k3 = np.where(has_ref, np.exp(d) - d - 1.0, 0.0)
    if use_kl:
        ptl = ptl + beta * k3
    # aggregation weight of every token (0 outside the mask)
    n_kept = int(keep.sum())
    tokens = int(mask.sum())
    agg = P["agg"]
    if agg == "token_mean":
        a = mask / max(tokens, 1)
    elif agg == "seq_mean":
        a = mask / np.maximum(n, 1)[:, None] / max(n_kept, 1)
    elif agg == "seq_sum_norm":
        a = mask / (P["max_new_tokens"] * max(n_kept, 1))
    else:
        raise ValueError(agg)
    loss = float(np.sum(a * np.where(mask, ptl, 0.0)))
    if ent is None:
        ent = np.zeros_like(logp)
    total = loss - f32(P["entropy_coef"]) * float(np.sum(a * ent))
    return dict(loss=loss, total=total, coef1=coef1, coef2=coef2, A=A, a=a, mask=mask, keep=keep, n=n,
                k3=k3, d=d, beta=beta, use_kl=use_kl, lo=lo, hi=hi, tokens=tokens, old_is_logp=old_is_logp)


def loss_and_weights(P, seqs):
    """Loss, analytic w = -dL/dlogp and went = -dL/dH, and the stats."""
    q = loss_parts(P, seqs)
    coef1, coef2, A, a, mask, n = q["coef1"], q["coef2"], q["A"], q["a"], q["mask"], q["n"]
    # the unclipped branch carries the gradient when it is the (or a tied) minimum
    active = (coef1 * A <= coef2 * A).astype(np.float64)
    dobj = A * coef1 * active  # d(surrogate)/d(log ratio), per token or per sequence
    if P["algo"] == "gspo":
        # every token's surrogate depends on s = exp(mean_t lr): d s / d logp_t = s / n,
        # so dL/dlogp_t = -sum_t' a_t' dobj / n = -a dobj (a is constant within a sequence)
        per_seq = np.sum(a * dobj, axis=1) / np.maximum(n, 1)
        g = -np.where(mask, per_seq[:, None], 0.0)
    else:
        g = -a * dobj
    if q["use_kl"]:
        g = g + a * q["beta"] * (1.0 - np.exp(q["d"]))
    w = -np.where(mask, g, 0.0)
    went = np.where(mask, a * f32(P["entropy_coef"]), 0.0)
    tok = max(q["tokens"], 1)
    is_low = mask & (A < 0) & (coef1 < q["lo"])
    is_high = mask & (A > 0) & (coef1 > q["hi"])
    st = dict(loss=q["loss"], tokens=q["tokens"],
              kl=float(np.sum(np.where(mask, q["k3"], 0.0))) / tok if q["use_kl"] else 0.0,
              clip_low=float(is_low.sum()) / tok if q["tokens"] else 0.0,
              clip_high=float(is_high.sum()) / tok if q["tokens"] else 0.0,
              ratio_mean=float(np.sum(np.where(mask, coef1, 0.0))) / tok if q["tokens"] else 0.0)
    return st, w, went, q


def check_fd(P, seqs, w, went, q, h=1e-6):
    """Central differences of the NumPy loss against the analytic weights,
    skipping tokens whose ratio lies within 1e-4 of a clip kink."""
    logp0 = pad(seqs, "logp", 0.0)
    worst = 0.0
    near = (np.abs(q["coef1"] - q["lo"]) < 1e-4) | (np.abs(q["coef1"] - q["hi"]) < 1e-4)
    for k, s in enumerate(seqs):
        for t in range(s["n"]):
            if P["algo"] == "gspo" and near[k].any():
                continue
            if near[k, t]:
                continue
            lp, lm = logp0.copy(), logp0.copy()
            lp[k, t] += h
            lm[k, t] -= h
            fd = -(loss_parts(P, seqs, lp)["total"] - loss_parts(P, seqs, lm)["total"]) / (2 * h)
            err = abs(fd - w[k, t]) / (abs(w[k, t]) + 1e-6)
            worst = max(worst, err)
            if err > 1e-4:
                raise AssertionError(f"finite differences: seq {k} token {t}: fd {fd} analytic {w[k, t]}")
            # entropy: the loss is linear in H
            e = np.zeros_like(logp0)
            e[k, t] = 1.0
            fde = -(loss_parts(P, seqs, logp0, e)["total"] - loss_parts(P, seqs, logp0)["total"])
            if abs(fde - went[k, t]) > 1e-12 + 1e-9 * abs(went[k, t]):
                raise AssertionError(f"entropy weight: seq {k} token {t}: {fde} vs {went[k, t]}")
    return worst


def check_torch(P, seqs, w, loss):
    """TRL's expression under torch autograd (float64); the forward ratios
    are the C library's exp (as in loss_parts), tokens exactly on a clip
    bound are left out of the gradient comparison (see the header)."""
    import torch
    logp = torch.tensor(pad(seqs, "logp", 0.0), requires_grad=True)
    B, T = logp.shape
    n = torch.tensor([s["n"] for s in seqs])
    keep = torch.tensor([bool(s["keep"]) and s["n"] > 0 for s in seqs])
    mask = ((torch.arange(T)[None, :] < n[:, None]) & keep[:, None]).double()
    old_is_logp = torch.tensor([s.get("old") is None for s in seqs])[:, None]
    old = torch.where(old_is_logp, logp.detach(), torch.tensor(pad(seqs, "old", 0.0)))
    A = torch.tensor([s["adv"] for s in seqs], dtype=torch.float64)[:, None]
    log_ratio = logp - old
    if P["algo"] == "gspo":
        q = loss_parts(P, seqs)
        # the forward value of the mean log-ratio from the sequential sum (exact
        # boundary cases), the gradient of torch's masked mean
        liw = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        coef_1 = torch.exp(liw).unsqueeze(-1)
        coef_1 = coef_1 + (torch.tensor(q["coef1"][:, :1]) - coef_1.detach())
    else:
        coef_1 = torch.exp(log_ratio)
        coef_1 = coef_1 + (torch.tensor(cexp(log_ratio.detach().numpy())) - coef_1.detach())
    coef_2 = torch.clamp(coef_1, 1 - f32(P["eps_low"]), 1 + f32(P["eps_high"]))
    per_token_loss = -torch.min(coef_1 * A, coef_2 * A)
    beta = f32(P["kl_beta"])
    has_ref = any(s.get("ref") is not None for s in seqs)
    if beta > 0 and has_ref:
        ref = torch.tensor(pad(seqs, "ref", 0.0))
        per_token_kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token_loss = per_token_loss + beta * per_token_kl
    n_kept = max(int(keep.sum()), 1)
    if P["agg"] == "seq_mean":  # TRL grpo, over kept sequences
        L = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / n_kept
    elif P["agg"] == "token_mean":  # TRL dapo / bnpo
        L = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    else:  # TRL dr_grpo
        L = (per_token_loss * mask).sum() / (n_kept * P["max_new_tokens"])
    L.backward()
    g = -logp.grad.numpy()
    if abs(L.item() - loss) > 1e-12 + 1e-9 * abs(loss):
        raise AssertionError(f"torch loss {L.item()} vs numpy {loss}")
    c1 = coef_1.detach().expand(B, T).numpy()
    lo, hi = 1 - f32(P["eps_low"]), 1 + f32(P["eps_high"])
    on_bound = (c1 == lo) | (c1 == hi)  # the kink: torch gives half the gradient
    keep_tok = ~on_bound
    err = np.max(np.abs(g - w)[keep_tok] / (np.abs(w)[keep_tok] + 1e-9)) if keep_tok.any() else 0.0
    if err > 1e-9:
        raise AssertionError(f"torch autograd weights differ from analytic ones by {err}")
    return err


def sft_loss(seqs):
    tokens = sum(s["n"] for s in seqs)
    logp = pad(seqs, "logp", 0.0)
    mask = np.arange(logp.shape[1])[None, :] < np.array([s["n"] for s in seqs])[:, None]
    loss = -float(np.sum(np.where(mask, logp, 0.0))) / max(tokens, 1)
    w = np.where(mask, 1.0 / max(tokens, 1), 0.0)
    return loss, w


# ------------------------------------------------------------ case generation

def f32_steps(x, k):
    """the float32 k steps away from float32 x."""
    v = np.float32(x)
    for _ in range(abs(k)):
        v = np.nextafter(v, np.float32(np.inf if k > 0 else -np.inf))
    return float(v)


def exact_boundary_pair(target, lower, div=1):
    """float32 (logp, old) with exp(((double)logp - old) / div) == target
    exactly (C library exp, the double subtraction of pg.c), or None. lower:
    the ratio is below 1, so old is ~0 and logp < 0; else logp is ~0 and
    old < 0 (both valid log-probabilities)."""
    d0 = div * math.log(target)
    for j in range(-12, 13):
        big = f32_steps(d0 if lower else -d0, j)  # logp (lower) or old (upper), on the coarse grid
        tiny0 = big - d0 if lower else big + d0    # the small partner it needs
        if tiny0 > 0:
            continue
        for i in range(-6, 7):
            tiny = f32_steps(tiny0, i)
            if tiny > 0:
                continue
            lp, old = (big, tiny) if lower else (tiny, big)
            if math.exp((lp - old) / div) == target:
                return lp, old
    return None


def boundary_eps(eps, lower, div=1):
    """eps itself or the nearest float32 above it for which a ratio exactly
    on 1 - eps (lower) or 1 + eps is reachable from float32 log-probs."""
    e = f32(eps)
    for _ in range(200):
        target = 1.0 - e if lower else 1.0 + e
        pair = exact_boundary_pair(target, lower, div)
        if pair:
            return e, pair
        e = f32_steps(e, 1)
    raise AssertionError(f"no exact boundary pair near eps {eps}")


def rand_rewards(rng, n_groups, G, kind):
    if kind == "binary":
        r = rng.integers(0, 2, size=n_groups * G).astype(np.float64)
    elif kind == "ties":
        r = rng.choice([0.0, 0.25, 0.5, 1.0], size=n_groups * G)
    else:
        r = np.round(rng.normal(0.3, 1.0, size=n_groups * G), 6)
    valid = (rng.random(n_groups * G) > 0.15).astype(int)
    # shape the groups: one all equal, one with a single valid reward, one all masked
    if n_groups >= 3:
        r[0:G] = r[0]
        valid[0:G] = 1
        valid[G:2 * G] = 0
        valid[G + int(rng.integers(0, G))] = 1
    if n_groups >= 4:
        valid[3 * G:4 * G] = 0
    if n_groups >= 5:  # equal valid rewards with a masked odd one out
        r[4 * G:5 * G] = 0.7
        r[4 * G] = 0.1
        valid[4 * G] = 0
        valid[4 * G + 1:5 * G] = 1
    return r, valid


def make_seqs(rng, P, adv_pool, n_seq, with_old=True, with_ref=True, spread=0.35):
    seqs = []
    for k in range(n_seq):
        n = int(rng.integers(1, 9))
        logp = [f32(x) for x in -np.abs(rng.normal(0.0, 1.5, n)) - 1e-3]
        s = dict(n=n, logp=logp, adv=float(adv_pool[k % len(adv_pool)]), keep=1)
        if with_old and not (k == 1):
            # log-ratios on both sides of the clip range
            lr = rng.uniform(-spread, spread, n)
            s["old"] = [f32(l - x) for l, x in zip(logp, lr)]
        else:
            s["old"] = None
        if with_ref:
            s["ref"] = [f32(l + x) for l, x in zip(logp, rng.normal(0, 0.3, n))]
        else:
            s["ref"] = None
        seqs.append(s)
    return seqs


def fmt_f32(x):
    """Shortest decimal that reads back (through a C double and a float cast)
    to the same float32."""
    x = f32(x)
    for prec in (7, 8, 9):
        s = "%.*g" % (prec, x)
        if f32(float(s)) == x:
            return float(s)
    return x


def emit_seq(s):
    out = dict(n=s["n"], logp=[fmt_f32(v) for v in s["logp"]], adv=s["adv"], keep=int(s["keep"]))
    out["old"] = None if s.get("old") is None else [fmt_f32(v) for v in s["old"]]
    out["ref"] = None if s.get("ref") is None else [fmt_f32(v) for v in s["ref"]]
    return out


def loss_case(name, P, seqs, boundary=(), stats_log=None):
    # inputs as the C test reads them: short decimals, cast to float32 there
    emitted = [emit_seq(s) for s in seqs]
    seqs = [dict(e, **{k: None if e[k] is None else [f32(v) for v in e[k]] for k in ("logp", "old", "ref")})
            for e in emitted]
    st, w, went, q = loss_and_weights(P, seqs)
    fd_err = check_fd(P, seqs, w, went, q)
    check_torch(P, seqs, w, st["loss"])
    for (k, t, side) in boundary:
        c = q["coef1"][k, t]
        assert c == (q["lo"] if side == "low" else q["hi"]), (name, k, t, c)
    if stats_log is not None:
        stats_log.append(fd_err)
    return dict(name=name, params=P, seqs=emitted,
                boundary=[dict(seq=k, tok=t, side=side) for (k, t, side) in boundary],
                expect=dict(loss=st["loss"], kl=st["kl"], clip_low=st["clip_low"], clip_high=st["clip_high"],
                            ratio_mean=st["ratio_mean"], tokens=st["tokens"],
                            w=[[float(np.float32(w[k, t])) for t in range(s["n"])] for k, s in enumerate(seqs)],
                            went=[[float(np.float32(went[k, t])) for t in range(s["n"])] for k, s in enumerate(seqs)]))


def params(algo, agg, eps_low, eps_high, kl_beta, entropy_coef, max_new=16):
    return dict(algo=algo, agg=agg, eps_low=f32(eps_low), eps_high=f32(eps_high), kl_beta=f32(kl_beta),
                entropy_coef=f32(entropy_coef), max_new_tokens=max_new)


def generate(seed):
    rng = np.random.default_rng(seed)
    out = dict(version=1, generator="tools/ref_pg.py --seed %d" % seed, adv_eps=ADV_EPS,
               adv_cases=[], overlong_cases=[], loss_cases=[], sft_cases=[])

    # advantages: every algorithm x scale x dynamic sampling
    pool = []
    for algo in ALGOS:
        for scale in SCALES:
            for ds in (0, 1):
                n_groups = int(rng.integers(3, 6))
                G = int(rng.integers(2, 7))
                kind = ["binary", "ties", "normal"][len(out["adv_cases"]) % 3]
                r, valid = rand_rewards(rng, n_groups, G, kind)
                adv, keep, zs = advantages(algo, scale, ds, r, valid, G)
                pool.extend(adv[keep.astype(bool)].tolist())
                out["adv_cases"].append(dict(name=f"{algo}/{scale}/ds{ds}/{kind}", algo=algo, scale=scale,
                                             dynamic_sampling=ds, n_groups=n_groups, G=G, reward=r.tolist(),
                                             valid=valid.tolist(),
                                             expect=dict(adv=adv.tolist(), keep=keep.tolist(), zero_std=zs)))
    # a single group of G = 1 and a batch with one valid reward overall
    for algo, scale in (("grpo", "group"), ("grpo", "batch"), ("rloo", "none")):
        r, valid = np.array([0.5]), np.array([1])
        adv, keep, zs = advantages(algo, scale, 1, r, valid, 1)
        out["adv_cases"].append(dict(name=f"{algo}/{scale}/G1", algo=algo, scale=scale, dynamic_sampling=1,
                                     n_groups=1, G=1, reward=r.tolist(), valid=valid.tolist(),
                                     expect=dict(adv=adv.tolist(), keep=keep.tolist(), zero_std=zs)))

    # overlong penalty around the buffer edges
    for (max_new, buffer, pen) in ((64, 16, 1.0), (64, 0, 1.0), (20, 20, 0.5), (100, 20, 2.0), (8, 3, 1.0)):
        for L in sorted(set([0, 1, max_new - buffer - 1, max_new - buffer, max_new - buffer + 1,
                             max_new - buffer // 2, max_new - 1, max_new, max_new + 1, max_new + 50])):
            if L < 0:
                continue
            out["overlong_cases"].append(dict(len=L, max_new_tokens=max_new, buffer=buffer, penalty=pen,
                                              expect=overlong_penalty(L, max_new, buffer, pen)))

    # loss: every algorithm x aggregation x kl on/off x entropy coefficient
    pool = np.array([a for a in pool if abs(a) > 1e-6])
    fd_errs = []
    for algo in ALGOS:
        d = DEFAULTS[algo]
        for agg in AGGS:
            if algo == "gspo" and agg == "token_mean":
                continue  # refused by config_finish
            for kl in (0.0, 0.04):
                for ent in (0.0, -0.01 if agg == "seq_mean" else 0.005):
                    eps_low, eps_high = d["eps_low"], d["eps_high"]
                    spread = 0.35
                    if algo == "gspo":
                        spread = 0.9 if kl == 0 else 0.02
                        if kl > 0:
                            eps_low, eps_high = 3e-4, 4e-4  # the GSPO paper's clip range
                    P = params(algo, agg, eps_low, eps_high, kl, ent, max_new=int(rng.integers(8, 20)))
                    adv_pool = rng.choice(pool, size=5, replace=False)
                    adv_pool[2] = -abs(adv_pool[2])
                    adv_pool[3] = abs(adv_pool[3])
                    seqs = make_seqs(rng, P, adv_pool, int(rng.integers(3, 6)), with_ref=kl > 0 or ent != 0,
                                     spread=spread)
                    seqs[-1]["keep"] = 0 if len(seqs) > 3 else 1  # a dropped sequence
                    name = f"{algo}/{agg}/kl{kl}/ent{ent}"
                    out["loss_cases"].append(loss_case(name, P, seqs, stats_log=fd_errs))

    # exact clip boundaries: ratio == 1 - eps_low with A < 0, == 1 + eps_high with A > 0
    # (on the boundary: not clipped, the gradient passes), each with a token just
    # outside and one just inside; eps is moved to the nearest float32 for which
    # float32 log-probs reach the boundary exactly, when the given one cannot
    for eps_low, eps_high, agg in ((0.2, 0.2, "seq_mean"), (0.2, 0.28, "token_mean"), (0.1, 0.5, "seq_sum_norm")):
        eps_low, low_pair = boundary_eps(eps_low, True)
        eps_high, high_pair = boundary_eps(eps_high, False)
        seqs, boundary = [], []
        for side, A in (("low", -0.8), ("high", 1.3), ("low", 0.6), ("high", -0.4)):
            lp, old = low_pair if side == "low" else high_pair
            if side == "low":  # ratio = exp(lp - old), old ~ 0: move lp
                lp2, old2, lp3, old3 = f32(lp - 1e-6), old, f32(lp + 1e-6), old
            else:  # lp ~ 0: move old
                lp2, old2, lp3, old3 = lp, f32(old + 1e-6), lp, f32(old - 1e-6)
            # token 0 on the boundary, token 1 just outside, token 2 just inside
            boundary.append((len(seqs), 0, side))
            seqs.append(dict(n=3, logp=[lp, lp2, lp3], old=[old, old2, old3], ref=None, adv=A, keep=1))
        for kl in (0.0, 0.1):
            P = params("grpo", agg, eps_low, eps_high, kl, 0.0, max_new=8)
            ss = [dict(s) for s in seqs]
            if kl:
                for s in ss:
                    s["ref"] = [f32(x - 0.05) for x in s["logp"]]
            out["loss_cases"].append(loss_case(f"boundary/eps{eps_low:.9g}-{eps_high:.9g}/{agg}/kl{kl}", P, ss,
                                               boundary))
    # eps = 0: ratio exactly 1 is on both boundaries
    P = params("dapo", "token_mean", 0.0, 0.0, 0.0, 0.0)
    seqs = [dict(n=2, logp=[-0.5, -1.25], old=[-0.5, -1.25], ref=None, adv=0.7, keep=1),
            dict(n=2, logp=[-0.5, -1.25], old=[-0.5, -1.25], ref=None, adv=-0.7, keep=1),
            dict(n=1, logp=[-2.0], old=None, ref=None, adv=1.5, keep=1)]
    out["loss_cases"].append(loss_case("boundary/eps0/ratio1", P, seqs, [(0, 0, "high"), (1, 1, "low")]))
    # gspo: the sequence ratio exp(mean log-ratio) exactly on the boundaries,
    # one token of four carrying the whole log-ratio (the mean is exact)
    for side, A in (("low", -1.1), ("high", 0.9)):
        eps, (lp, old) = boundary_eps(3e-4 if side == "low" else 4e-4, side == "low", div=4)
        P = params("gspo", "seq_mean", eps if side == "low" else 3e-4, eps if side == "high" else 4e-4, 0.0, 0.0)
        seqs = [dict(n=4, logp=[lp, -0.75, -1.5, -0.125], old=[old, -0.75, -1.5, -0.125], ref=None, adv=A, keep=1),
                dict(n=2, logp=[-0.3, -0.2], old=[-0.31, -0.19], ref=None, adv=-A, keep=1)]
        out["loss_cases"].append(loss_case(f"boundary/gspo/{side}", P, seqs, [(0, 0, side)]))
    # edge cases: everything dropped, a kept empty sequence, zero advantages
    P = params("grpo", "seq_mean", 0.2, 0.2, 0.04, 0.01)
    seqs = [dict(n=3, logp=[-1.0, -2.0, -0.5], old=[-1.1, -2.0, -0.4], ref=[-1.0, -1.0, -1.0], adv=1.0, keep=0),
            dict(n=0, logp=[], old=[], ref=[], adv=0.5, keep=1)]
    out["loss_cases"].append(loss_case("edge/all_dropped", P, seqs))
    P = params("dr_grpo", "seq_sum_norm", 0.2, 0.2, 0.0, 0.0, max_new=6)
    seqs = [dict(n=2, logp=[-1.0, -2.0], old=[-1.5, -1.0], ref=None, adv=0.0, keep=1),
            dict(n=0, logp=[], old=[], ref=None, adv=0.5, keep=1),
            dict(n=3, logp=[-0.1, -0.2, -0.3], old=[-0.1, -0.4, -0.2], ref=None, adv=-0.25, keep=1)]
    out["loss_cases"].append(loss_case("edge/zero_adv_empty_seq", P, seqs))

    # sft
    for n_seq in (1, 3):
        seqs = [dict(n=int(rng.integers(1, 7)), adv=0.0, keep=1) for _ in range(n_seq)]
        for s in seqs:
            s["logp"] = [fmt_f32(x) for x in -np.abs(rng.normal(0, 2, s["n"]))]
        loss, w = sft_loss([dict(n=s["n"], logp=[f32(v) for v in s["logp"]]) for s in seqs])
        out["sft_cases"].append(dict(seqs=[dict(n=s["n"], logp=s["logp"]) for s in seqs],
                                     expect=dict(loss=loss, w=[[float(np.float32(w[k, t])) for t in range(s["n"])]
                                                               for k, s in enumerate(seqs)])))
    return out, fd_errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pg_cases.json"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out, fd = generate(args.seed)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    clips = sum(1 for c in out["loss_cases"] if c["expect"]["clip_low"] > 0 or c["expect"]["clip_high"] > 0)
    print(f"{args.out}: {len(out['adv_cases'])} advantage, {len(out['overlong_cases'])} overlong, "
          f"{len(out['loss_cases'])} loss ({clips} with clipped tokens), {len(out['sft_cases'])} sft cases, "
          f"{os.path.getsize(args.out)} bytes; worst finite-difference relative error {max(fd):.2e}")


if __name__ == "__main__":
    sys.exit(main())
