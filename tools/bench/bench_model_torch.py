#!/usr/bin/env python3
"""tools/bench/bench_model_torch.py: the PyTorch peer of bench_model.c.

Same Llama-family shapes, same packed batch (B sequences of N tokens, causal
attention within each), fp32 (or --dtype bf16: torch.autocast bf16, the peer
of rft's model.dtype bf16), same thread count; forward + backward of the
mean token cross-entropy. Prints one JSON line like bench_model.
"""
import argparse, json, math, resource, time

import torch
import torch.nn.functional as F

SHAPES = {
    "smollm2": dict(vocab=49152, d=576, L=30, H=9, KV=3, hd=64, ff=1536, tie=True),
    "10m": dict(vocab=8192, d=256, L=8, H=8, KV=4, hd=32, ff=768, tie=False),
    "tiny": dict(vocab=512, d=128, L=4, H=4, KV=2, hd=32, ff=384, tie=True),
}


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
    return x * cos + rot * sin


class Model(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        d, hd = s["d"], s["hd"]
        self.emb = torch.nn.Embedding(s["vocab"], d)
        self.layers = torch.nn.ModuleList()
        for _ in range(s["L"]):
            l = torch.nn.Module()
            l.n1 = torch.nn.Parameter(torch.ones(d))
            l.q = torch.nn.Linear(d, s["H"] * hd, bias=False)
            l.k = torch.nn.Linear(d, s["KV"] * hd, bias=False)
            l.v = torch.nn.Linear(d, s["KV"] * hd, bias=False)
            l.o = torch.nn.Linear(s["H"] * hd, d, bias=False)
            l.n2 = torch.nn.Parameter(torch.ones(d))
            l.g = torch.nn.Linear(d, s["ff"], bias=False)
            l.u = torch.nn.Linear(d, s["ff"], bias=False)
            l.dn = torch.nn.Linear(s["ff"], d, bias=False)
            self.layers.append(l)
        self.nf = torch.nn.Parameter(torch.ones(d))
        self.head = None if s["tie"] else torch.nn.Linear(d, s["vocab"], bias=False)

    def forward(self, tok, cos, sin):  # tok [B, N]
        s = self.s
        B, N = tok.shape
        x = self.emb(tok)
        for l in self.layers:
            h = rms(x, l.n1)
            q = l.q(h).view(B, N, s["H"], s["hd"]).transpose(1, 2)
            k = l.k(h).view(B, N, s["KV"], s["hd"]).transpose(1, 2)
            v = l.v(h).view(B, N, s["KV"], s["hd"]).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + l.o(a.transpose(1, 2).reshape(B, N, -1))
            h = rms(x, l.n2)
            x = x + l.dn(F.silu(l.g(h)) * l.u(h))
        x = rms(x, self.nf)
        return x @ self.emb.weight.t() if self.head is None else self.head(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="10m", choices=SHAPES)
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    s = SHAPES[a.shape]
    torch.manual_seed(0)
    m = Model(s)
    n_params = sum(p.numel() for p in m.parameters())
    tok = torch.randint(0, s["vocab"], (a.seqs, a.seqlen))
    tgt = torch.randint(0, s["vocab"], (a.seqs, a.seqlen))
    inv = 1.0 / (10000.0 ** (torch.arange(0, s["hd"], 2).float() / s["hd"]))
    fr = torch.outer(torch.arange(a.seqlen).float(), inv)
    emb = torch.cat((fr, fr), -1)
    cos, sin = emb.cos(), emb.sin()
    best = 1e30
    for i in range(a.steps + 1):
        t0 = time.perf_counter()
        m.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            logits = m(tok, cos, sin)
        loss = F.cross_entropy(logits.float().view(-1, s["vocab"]), tgt.view(-1))
        loss.backward()
        dt = time.perf_counter() - t0
        if i > 0:
            best = min(best, dt)
    T = a.seqs * a.seqlen
    D, qd, kvd = s["d"], s["H"] * s["hd"], s["KV"] * s["hd"]
    per_tok = 2 * s["L"] * (D * qd + 2 * D * kvd + qd * D + 3 * D * s["ff"]) + 2 * D * s["vocab"]
    attn = a.seqs * 2 * 2 * s["H"] * s["hd"] * a.seqlen * (a.seqlen + 1) / 2 * s["L"]
    flops = 3 * (per_tok * T + attn)
    print(json.dumps(dict(impl="pytorch", dtype=a.dtype, torch=torch.__version__, shape=a.shape, params=n_params, tokens=T,
                          threads=torch.get_num_threads(), step_s=round(best, 4), tokens_per_s=round(T / best, 1),
                          gflops=round(flops / best / 1e9, 1),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))))


if __name__ == "__main__":
    main()
