#!/usr/bin/env python3
"""tools/bench/bench_ops_torch.py: PyTorch CPU timings of the ops that
bench_ops times and that are not plain matmuls (causal GQA attention via
scaled_dot_product_attention, log-softmax + gather + entropy), at the same
SmolLM2-135M shapes, so the two can be compared line by line.
Reports best-of-N wall time and process CPU time per thread.

    python3 tools/bench/bench_ops_torch.py [--threads K] [--reps N]
"""
import argparse
import time

import torch


def timed(fn, reps, threads):
    best = (1e30, 0.0)
    fn()
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best[0]:
            best = (t, c / threads)
    return best


def line(label, t, flops=0.0):
    wall, cpu = t
    s = f"{label:44s} {wall * 1e3:9.2f} ms wall {cpu * 1e3:9.2f} ms cpu/thread"
    if flops:
        s += f" {flops / wall * 1e-9:7.1f} GFLOP/s wall {flops / cpu * 1e-9:7.1f} GFLOP/s cpu"
    print(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    T, Hq, Hkv, hd, V = 2048, 9, 3, 64, 49152
    g = torch.Generator().manual_seed(0)
    for L in (2048, 256):
        B = T // L
        q = torch.randn(B, Hq, L, hd, generator=g, requires_grad=True)
        k = torch.randn(B, Hkv, L, hd, generator=g, requires_grad=True)
        v = torch.randn(B, Hkv, L, hd, generator=g, requires_grad=True)
        dO = torch.randn(B, Hq, L, hd, generator=g)
        pairs = B * L * (L + 1) / 2 * Hq

        def fwd():
            kk = k.repeat_interleave(Hq // Hkv, dim=1)
            vv = v.repeat_interleave(Hq // Hkv, dim=1)
            return torch.nn.functional.scaled_dot_product_attention(q, kk, vv, is_causal=True)

        line(f"attention fwd {B}x{L} tokens", timed(lambda: fwd().detach(), a.reps, a.threads), 4.0 * hd * pairs)
        o = fwd()
        line(f"attention bwd {B}x{L} tokens",
             timed(lambda: torch.autograd.grad(o, (q, k, v), dO, retain_graph=True), a.reps, a.threads),
             10.0 * hd * pairs)

    z = (2 * torch.randn(T, V, generator=g)).requires_grad_(True)
    tg = torch.randint(0, V, (T,), generator=g)

    def lp_fwd():
        ls = torch.log_softmax(z, -1)
        return ls.gather(1, tg[:, None])[:, 0], -(ls.exp() * ls).sum(-1)

    line("logprob fwd [2048,49152] (+entropy)", timed(lambda: lp_fwd(), a.reps, a.threads))
    lp, ent = lp_fwd()
    w1, w2 = torch.randn(T, generator=g), torch.randn(T, generator=g)
    line("logprob bwd [2048,49152]",
         timed(lambda: torch.autograd.grad((lp * w1).sum() + (ent * w2).sum(), z, retain_graph=True), a.reps,
               a.threads))


if __name__ == "__main__":
    main()
