#!/usr/bin/env python3
"""tools/bench/bench_gpu_torch.py: the PyTorch (eager, CUDA) peer of bench_gpu.c.

Same measurements, same shapes, printed as the same JSON lines:
  - matmul TFLOP/s (fp32 and TF32) at 4096^3 and the SmolLM2-135M training
    shapes;
  - training forward+backward (+AdamW) of the SmolLM2-135M shape in fp32 with
    TF32 matmuls allowed, and in bf16 autocast (torch.autocast: bf16 matmuls
    and SDPA, fp32 master weights and optimizer, rft's model.dtype bf16
    peer), packed as seqs sequences of seqlen tokens (causal SDPA per
    sequence, GQA), loss = mean token cross-entropy;
  - decode tokens/s with transformers' generate (greedy, KV cache) on a
    randomly initialised LlamaForCausalLM of the same shape, when transformers
    is installed.
Timing: CUDA synchronize around each region, median after warm-up.
Exits 77 when torch has no CUDA device.
"""
import argparse, json, statistics, sys, time

import torch
import torch.nn.functional as F

S = dict(vocab=49152, d=576, L=30, H=9, KV=3, hd=64, ff=1536, theta=100000.0)


def out(d):
    print(json.dumps(d), flush=True)


def timed(fn, reps, warm=2):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_matmul(label, M, N, K, tA, tB, dtype=torch.float32):
    a = (torch.rand((K, M) if tA else (M, K), device="cuda") * 2 - 1).to(dtype)
    b = (torch.rand((N, K) if tB else (K, N), device="cuda") * 2 - 1).to(dtype)
    A = a.t() if tA else a
    B = b.t() if tB else b
    inner = 5

    def f():
        for _ in range(inner):
            torch.mm(A, B)

    s = timed(f, 9) / inner
    tf = 2.0 * M * N * K / s / 1e12
    out(dict(bench="matmul", impl="pytorch", label=label, M=M, N=N, K=K, ms=round(s * 1e3, 4), tflops=round(tf, 2)))
    return tf


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


class Model(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        d, hd = s["d"], s["hd"]
        self.emb = torch.nn.Embedding(s["vocab"], d)
        torch.nn.init.normal_(self.emb.weight, std=0.02)
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

    def forward(self, tok, cos, sin):  # tok [B, N]: B sequences of N tokens (the packed batch)
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
        return rms(x, self.nf) @ self.emb.weight.t()  # tied LM head


def flops_train(s, seqs, seqlen):
    D, qd, kvd = s["d"], s["H"] * s["hd"], s["KV"] * s["hd"]
    per_tok = 2 * s["L"] * (D * qd + 2 * D * kvd + qd * D + 3 * D * s["ff"]) + 2 * D * s["vocab"]
    attn = seqs * 2 * 2 * s["H"] * s["hd"] * seqlen * (seqlen + 1) / 2 * s["L"]
    return 3 * (per_tok * seqs * seqlen + attn)


def bench_train(seqs, seqlen, steps, peak16, peak32, dtype):
    torch.manual_seed(0)
    m = Model(S).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tok = torch.randint(0, S["vocab"], (seqs, seqlen), device="cuda")
    tgt = torch.randint(0, S["vocab"], (seqs, seqlen), device="cuda")
    inv = 1.0 / (S["theta"] ** (torch.arange(0, S["hd"], 2, device="cuda").float() / S["hd"]))
    fr = torch.outer(torch.arange(seqlen, device="cuda").float(), inv)
    emb = torch.cat((fr, fr), -1)
    cos, sin = emb.cos(), emb.sin()
    tf, tb, to = [], [], []
    for i in range(steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            logits = m(tok, cos, sin)
        loss = F.cross_entropy(logits.float().view(-1, S["vocab"]), tgt.view(-1))
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        loss.backward()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        t3 = time.perf_counter()
        if i > 0:
            tf.append(t1 - t0), tb.append(t2 - t1), to.append(t3 - t2)
        del logits, loss
    f, b, o = statistics.median(tf), statistics.median(tb), statistics.median(to)
    fl = flops_train(S, seqs, seqlen)
    tfs = fl / (f + b) / 1e12
    out(dict(bench="train", impl="pytorch", dtype=dtype, torch=torch.__version__, shape="smollm2-135m",
             params=sum(p.numel() for p in m.parameters()), tokens=seqs * seqlen, seqs=seqs, seqlen=seqlen,
             fwd_ms=round(f * 1e3, 2), bwd_ms=round(b * 1e3, 2), adamw_ms=round(o * 1e3, 2),
             tokens_per_s=round(seqs * seqlen / (f + b)), tflops=round(tfs, 2),
             mfu_vs_bf16_gemm=round(tfs / peak16, 3) if peak16 else 0,
             mfu_vs_tf32_gemm=round(tfs / peak32, 3) if peak32 else 0))
    del m, opt
    torch.cuda.empty_cache()


def bench_decode(batch, prompt, gen, dtype):
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        out(dict(bench="decode", impl="transformers", dtype=dtype, batch=batch,
                 skipped=f"transformers not importable: {e}"))
        return
    cfg = LlamaConfig(vocab_size=S["vocab"], hidden_size=S["d"], intermediate_size=S["ff"],
                      num_hidden_layers=S["L"], num_attention_heads=S["H"], num_key_value_heads=S["KV"],
                      head_dim=S["hd"], rope_theta=S["theta"], tie_word_embeddings=True,
                      max_position_embeddings=prompt + gen + 8)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).cuda().eval()
    if dtype == "bf16":
        m = m.to(torch.bfloat16)
    ids = torch.randint(0, S["vocab"], (batch, prompt), device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        tp = timed(lambda: m.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw), 3, warm=1)
        tg = timed(lambda: m.generate(ids, max_new_tokens=gen + 1, min_new_tokens=gen + 1, **kw), 3, warm=1)
    step = (tg - tp) / gen
    out(dict(bench="decode", impl="transformers", dtype=dtype, batch=batch, prompt=prompt, gen=gen,
             step_ms=round(step * 1e3, 3), tokens_per_s=round(batch / step)))
    del m
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--decode", default="1,64,256")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--gen", type=int, default=32)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIPPED: torch sees no CUDA device")
        sys.exit(77)
    T = a.seqs * a.seqlen
    torch.backends.cuda.matmul.allow_tf32 = False
    bench_matmul("fp32 4096^3", 4096, 4096, 4096, 0, 0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    peak = bench_matmul("tf32 4096^3", 4096, 4096, 4096, 0, 0)
    bench_matmul("tf32 x@W^T [T,576]x[1536,576]", T, 1536, 576, 0, 1)
    bench_matmul("tf32 dW=dy^T@x [1536,T]x[T,576]", 1536, 576, T, 1, 0)
    bench_matmul("tf32 dx=dy@W [T,1536]x[1536,576]", T, 576, 1536, 0, 0)
    bench_matmul("tf32 lm_head [4096,576]x[49152,576]", 4096, 49152, 576, 0, 1)
    peak16 = bench_matmul("bf16 4096^3", 4096, 4096, 4096, 0, 0, torch.bfloat16)
    bench_matmul("bf16 x@W^T [T,576]x[1536,576]", T, 1536, 576, 0, 1, torch.bfloat16)
    bench_matmul("bf16 dW=dy^T@x [1536,T]x[T,576]", 1536, 576, T, 1, 0, torch.bfloat16)
    bench_matmul("bf16 dx=dy@W [T,1536]x[1536,576]", T, 576, 1536, 0, 0, torch.bfloat16)
    bench_matmul("bf16 lm_head [4096,576]x[49152,576]", 4096, 49152, 576, 0, 1, torch.bfloat16)
    bench_train(a.seqs, a.seqlen, a.steps, peak16, peak, "fp32")
    bench_train(a.seqs, a.seqlen, a.steps, peak16, peak, "bf16")
    for b in [int(x) for x in a.decode.split(",") if x]:
        bench_decode(b, a.prompt, a.gen, "fp32")
        bench_decode(b, a.prompt, a.gen, "bf16")


if __name__ == "__main__":
    main()
