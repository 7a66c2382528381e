#!/usr/bin/env python3
"""tools/ref_model.py: PyTorch reference for rft's Llama-family model
(trainer/model.c). Writes the fixtures tests/fixtures/model_*.h5 that
tests/test_model.c checks the C model against.

For two tiny configs (Qwen2-style: untied LM head, q/k/v biases; Llama-style:
tied embeddings, no biases, n_head * head_dim != d_model, one kv head) it
draws float32 weights from a fixed seed and a packed batch of three
sequences of ragged lengths (positions restart at 0 in each sequence,
attention causal within a sequence only, explicit next-token targets, some
targets -1 = ignored, per-token weights w and entropy weights went that are
nonzero on ignored tokens too, where they must have no effect), and computes
in float64:

  logits[T, V], logp[T] (log-prob of targets[t], 0 where ignored),
  entropy[T] (0 where ignored), loss = -sum_t w[t] logp[t],
  grad/<HF name>     d loss / d parameter for every tensor (tied: the
                     embedding gradient includes the LM-head contribution),
  grad_ent/<HF name> (when stored) d(-sum_t went[t] entropy[t]) / d parameter,
  adam/              10 AdamW steps on the same batch (torch.optim.AdamW,
                     decay on 2-D tensors only, clip_grad_norm_ by global
                     norm at a per-config threshold: the Qwen2 one clips only
                     the first steps, the tied one every step): loss before
                     each step, global gradient norm before
                     clipping, and the loss after the last step.
  bf16/              the same forward and gradients (logp, entropy,
                     grad/, grad_ent/) in rft's bf16 mixed precision
                     (model.dtype: bf16): every linear layer and the LM head
                     take bf16 operands (x and W rounded to bf16 in the
                     forward, the output gradient rounded before dx = dy W
                     and dW = dy^T x; sums of the exact products in
                     float32, as rft sums them: where a value rounds to
                     bf16 depends on it, and float64 sums resolve some fp32
                     ties the other way),
                     the MLP's gate and up projections and the q/k/v
                     projections are stored rounded to bf16 (Round16: the
                     next op reads the rounded values, the gradient passes
                     through unchanged; q/k/v again after bias and RoPE, as
                     rope_forward_bf16 stores them; their gradient is rounded
                     before the bias sums it, RoundGrad16), and attention
                     rounds the operands of its products and its output as
                     rft's attention_*_bf16 ops do (BF16Attention),
                     everything else as above.

The model here is written out by hand over the packed batch (block-diagonal
causal mask) in float64, with RoPE's inv_freq, angles and cos/sin in float32
exactly as transformers computes them. When transformers is importable, the
same weights are loaded into Qwen2ForCausalLM / LlamaForCausalLM (float64,
eager attention), each sequence is run on its own, and logits and every
gradient must agree with the hand-written model (else the script fails): the
fixture values are those of the real peer. It also reruns everything in
float32 and prints how far float32 arithmetic alone moves each quantity, which
is the floor for the C test's tolerances.

File layout (readable by trainer/checkpoint.c's reader): root attributes
format = "rft-checkpoint", format_version = 1 and every model_config field;
/model/<HF name> float32 [out, in]; /ref as above (float64 values, int32
indices).

Usage: python3 tools/ref_model.py [OUTDIR]   (default tests/fixtures)
Needs torch, numpy, h5py; transformers optional (cross-check).
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

ADAM = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, steps=10)

CONFIGS = {
    # Qwen2-style: untied LM head, q/k/v biases, Hq*hd == D, GQA 4:2
    "model_qwen2": dict(
        cfg=dict(vocab=67, d_model=32, n_layer=2, n_head=4, n_kv_head=2, head_dim=8, d_ff=64,
                 rope_theta=10000.0, rms_eps=1e-5, tie_embeddings=0, qkv_bias=1, max_seq=64),
        seed=1234, lens=[5, 11, 1], ignore=[(0, -1), (1, 3)], grad_ent=False,
        grad_clip=25.0),  # clips the first steps only (norms ~40, 31, then < 25)
    # Llama-style: tied embeddings, no biases, Hq*hd = 40 != D = 32, one kv head
    "model_llama_tied": dict(
        cfg=dict(vocab=61, d_model=32, n_layer=2, n_head=4, n_kv_head=1, head_dim=10, d_ff=48,
                 rope_theta=500000.0, rms_eps=1e-6, tie_embeddings=1, qkv_bias=0, max_seq=32),
        seed=99, lens=[1, 9, 6], ignore=[(1, 0), (2, -1), (2, 2)], grad_ent=True,
        grad_clip=1.0),  # clips every step
}


def tensor_table(c):
    """(HF name, shape) in HF order, as trainer/model.c lays them out."""
    D, F = c["d_model"], c["d_ff"]
    qd, kvd = c["n_head"] * c["head_dim"], c["n_kv_head"] * c["head_dim"]
    out = [("model.embed_tokens.weight", (c["vocab"], D))]
    for l in range(c["n_layer"]):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", (D,)))
        out.append((p + "self_attn.q_proj.weight", (qd, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.q_proj.bias", (qd,)))
        out.append((p + "self_attn.k_proj.weight", (kvd, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.k_proj.bias", (kvd,)))
        out.append((p + "self_attn.v_proj.weight", (kvd, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.v_proj.bias", (kvd,)))
        out.append((p + "self_attn.o_proj.weight", (D, qd)))
        out.append((p + "post_attention_layernorm.weight", (D,)))
        out.append((p + "mlp.gate_proj.weight", (F, D)))
        out.append((p + "mlp.up_proj.weight", (F, D)))
        out.append((p + "mlp.down_proj.weight", (D, F)))
    out.append(("model.norm.weight", (D,)))
    if not c["tie_embeddings"]:
        out.append(("lm_head.weight", (c["vocab"], D)))
    return out


def make_weights(c, seed):
    """float32 numpy weights. Scales are chosen so activations are O(1),
    attention is far from uniform and the predictive distribution is far from
    flat (the checks then see every path): embeddings N(0, 0.3), linear
    weights N(0, 1/in), biases N(0, 0.1), norm weights 1 + N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    W = {}
    for name, shape in tensor_table(c):
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith(".bias"):
            x = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name == "model.embed_tokens.weight":
            x = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            x = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(shape[1])
        W[name] = x.numpy().astype(np.float32)
    return W


def make_batch(c, seed, lens, ignore):
    """Packed batch: tokens, explicit targets (next token; the last token of a
    sequence gets a random 'continuation' target; listed (seq, index) pairs
    get -1), cu_seqlens, pos, w and went (nonzero everywhere, ignored tokens
    included)."""
    rng = np.random.default_rng(seed)
    V = c["vocab"]
    toks, tgts, pos = [], [], []
    for s, n in enumerate(lens):
        seq = rng.integers(0, V, size=n + 1)
        toks += list(seq[:n])
        tg = list(seq[1:n + 1])
        for (si, i) in ignore:
            if si == s:
                tg[i] = -1
        tgts += tg
        pos += list(range(n))
    T = len(toks)
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    w = rng.normal(0.0, 0.5, size=T)
    went = rng.normal(0.0, 0.5, size=T)
    return dict(tokens=np.array(toks, np.int32), targets=np.array(tgts, np.int32), cu_seqlens=cu,
                pos=np.array(pos, np.int32), w=w, went=went)


# ---------------------------------------------------------------- the model

def rope_cos_sin(pos, hd, theta, dtype):
    """transformers' default RoPE: inv_freq, angles and cos/sin in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.as_tensor(pos).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)  # [T, hd]


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def bf16(t):
    """t rounded as rft rounds its fp32 activations: to float32, then to
    bfloat16 (nearest even), back to t's dtype."""
    return t.float().bfloat16().to(t.dtype)


class BF16Linear(torch.autograd.Function):
    """y = bf16(x) @ bf16(W)^T; backward dx = bf16(dy) @ bf16(W),
    dW = bf16(dy)^T @ bf16(x): rft's gemm_bf16 products (model.dtype bf16)."""

    @staticmethod
    def forward(ctx, x, W):
        xb, Wb = bf16(x), bf16(W)
        ctx.save_for_backward(xb, Wb)
        return xb @ Wb.T

    @staticmethod
    def backward(ctx, dy):
        xb, Wb = ctx.saved_tensors
        dyb = bf16(dy)
        return dyb @ Wb, dyb.T @ xb


class Round16(torch.autograd.Function):
    """bf16(y) forward, identity backward: a GEMM output stored in bf16
    (gemm_bf16's C16: the MLP's gate and up in model.dtype bf16)."""

    @staticmethod
    def forward(ctx, y):
        return bf16(y)

    @staticmethod
    def backward(ctx, dy):
        return dy


class RoundGrad16(torch.autograd.Function):
    """identity forward, bf16(dy) backward: a gradient rft stores in bf16
    before the op that reads it (SwiGLU's input gradient dh and the norms'
    output gradients, written by the dx GEMM of the products that read them)
    or rounds before it is summed (the q/k/v bias gradients: column sums of
    attention_backward_bf16's rounded rows)."""

    @staticmethod
    def forward(ctx, y):
        return y

    @staticmethod
    def backward(ctx, dy):
        return bf16(dy)


class BF16Attention(torch.autograd.Function):
    """rft's attention_forward_bf16 / attention_backward_bf16 (kernels/backend.h)
    for rows of at most 64 keys (one key tile of the online softmax): the
    operands of Q K^T, P V, dO V^T, P^T dO, dS^T Q and dS K rounded to bf16;
    P = bf16(exp(s - m)) / sum(exp(s - m)); the output O rounded to bf16
    (o_proj's operand) and the incoming dO too (o_proj's backward writes it
    in bf16); lse, the softmax statistics and D = rowsum(dO O) (over those
    rounded values) unrounded. q, k, v [H, T, hd] (k, v repeated per query
    head); mask [T, T] True where a key is visible."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        qb, kb, vb = bf16(q), bf16(k), bf16(v)
        s = (scale * qb @ kb.transpose(1, 2)).masked_fill(~mask[None], float("-inf"))
        m = s.max(-1, keepdim=True).values
        e = torch.exp(s - m)
        l = e.sum(-1, keepdim=True)
        o = bf16((bf16(e) / l) @ vb)
        lse = m + torch.log(l)
        ctx.save_for_backward(qb, kb, vb, o, lse, mask)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        qb, kb, vb, o, lse, mask = ctx.saved_tensors
        scale = ctx.scale
        s = (scale * qb @ kb.transpose(1, 2)).masked_fill(~mask[None], float("-inf"))
        p = torch.exp(s - lse)
        do = bf16(do)
        dp = do @ vb.transpose(1, 2)
        d = (do * o).sum(-1, keepdim=True)
        ds = p * (dp - d)
        dv = bf16(p).transpose(1, 2) @ do
        dk = scale * bf16(ds).transpose(1, 2) @ qb
        dq = scale * bf16(ds) @ kb
        return dq, dk, dv, None, None


def forward(P, c, b, mixed=False):
    """Packed-batch forward. P: name -> tensor. Returns logits [T, V].
    mixed: every linear layer through BF16Linear (model.dtype bf16)."""
    lin = BF16Linear.apply if mixed else (lambda x, W: x @ W.T)
    tokens = torch.as_tensor(b["tokens"]).long()
    T = tokens.shape[0]
    D, Hq, Hkv, hd = c["d_model"], c["n_head"], c["n_kv_head"], c["head_dim"]
    dtype = P["model.embed_tokens.weight"].dtype
    cos, sin = rope_cos_sin(b["pos"], hd, c["rope_theta"], dtype)
    cos, sin = cos[:, None, :], sin[:, None, :]
    seq = torch.zeros(T, dtype=torch.long)
    cu = b["cu_seqlens"]
    for s in range(len(cu) - 1):
        seq[cu[s]:cu[s + 1]] = s
    idx = torch.arange(T)
    mask = (seq[:, None] == seq[None, :]) & (idx[None, :] <= idx[:, None])  # [Tq, Tk]
    eps = c["rms_eps"]
    x = P["model.embed_tokens.weight"][tokens]
    for l in range(c["n_layer"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        if mixed:  # its gradient comes rounded from the products' dx GEMM (C16)
            h = RoundGrad16.apply(h)
        q = lin(h, P[p + "self_attn.q_proj.weight"])
        k = lin(h, P[p + "self_attn.k_proj.weight"])
        v = lin(h, P[p + "self_attn.v_proj.weight"])
        if mixed:  # the products stored in bf16 (gemm_bf16 C16)
            q, k, v = Round16.apply(q), Round16.apply(k), Round16.apply(v)
        if c["qkv_bias"]:
            q = q + P[p + "self_attn.q_proj.bias"]
            k = k + P[p + "self_attn.k_proj.bias"]
            v = v + P[p + "self_attn.v_proj.bias"]
        if mixed:  # attention_backward_bf16 rounds the gradient (after RoPE^T) before the bias sums it
            q, k, v = RoundGrad16.apply(q), RoundGrad16.apply(k), RoundGrad16.apply(v)
        q, k, v = q.view(T, Hq, hd), k.view(T, Hkv, hd), v.view(T, Hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if mixed:  # rope_forward_bf16 rounds its rows once (q, k after RoPE, v after its bias)
            q, k, v = Round16.apply(q), Round16.apply(k), Round16.apply(v)
        k = k.repeat_interleave(Hq // Hkv, dim=1)  # query head h reads kv head h // (Hq/Hkv)
        v = v.repeat_interleave(Hq // Hkv, dim=1)
        if mixed:  # rft's bf16 attention; every fixture sequence fits one 64-key tile
            assert max(np.diff(b["cu_seqlens"])) <= 64
            att = BF16Attention.apply(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), mask,
                                      hd ** -0.5).transpose(0, 1).reshape(T, Hq * hd)
        else:
            sc = torch.einsum("thd,shd->hts", q, k) * hd ** -0.5
            sc = sc.masked_fill(~mask[None], float("-inf"))
            att = torch.einsum("hts,shd->thd", torch.softmax(sc, dim=-1), v).reshape(T, Hq * hd)
        x = x + lin(att, P[p + "self_attn.o_proj.weight"])
        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        if mixed:
            h = RoundGrad16.apply(h)
        g = lin(h, P[p + "mlp.gate_proj.weight"])
        u = lin(h, P[p + "mlp.up_proj.weight"])
        if mixed:  # stored in bf16 (gemm_bf16 C16)
            g, u = Round16.apply(g), Round16.apply(u)
        h = torch.nn.functional.silu(g) * u
        if mixed:  # its gradient comes rounded from the down projection's dx GEMM (C16)
            h = RoundGrad16.apply(h)
        x = x + lin(h, P[p + "mlp.down_proj.weight"])
    x = rmsnorm(x, P["model.norm.weight"], eps)
    if mixed:
        x = RoundGrad16.apply(x)
    head = P["model.embed_tokens.weight"] if c["tie_embeddings"] else P["lm_head.weight"]
    return lin(x, head)


def logp_entropy(logits, targets):
    """logp of targets and entropy per row; both 0 where targets < 0."""
    tg = torch.as_tensor(targets).long()
    valid = tg >= 0
    lsm = torch.log_softmax(logits, dim=-1)
    lp = lsm.gather(1, tg.clamp(min=0)[:, None])[:, 0] * valid
    ent = -(lsm.exp() * lsm).sum(-1) * valid
    return lp, ent


def leaves(W, dtype):
    return {n: torch.tensor(x, dtype=dtype, requires_grad=True) for n, x in W.items()}


def grads_of(P, loss):
    for t in P.values():
        t.grad = None
    loss.backward()
    return {n: t.grad.detach().clone() for n, t in P.items()}


def compute(c, W, b, dtype, want_ent, clip):
    """Everything the fixture holds, in the given dtype."""
    P = leaves(W, dtype)
    w = torch.as_tensor(b["w"], dtype=dtype)
    went = torch.as_tensor(b["went"], dtype=dtype)
    logits = forward(P, c, b)
    lp, ent = logp_entropy(logits, b["targets"])
    loss = -(w * lp).sum()
    out = dict(logits=logits.detach(), logp=lp.detach(), entropy=ent.detach(), loss=loss.detach())
    out["grad"] = grads_of(P, loss)
    if want_ent:
        logits = forward(P, c, b)
        _, ent = logp_entropy(logits, b["targets"])
        out["grad_ent"] = grads_of(P, -(went * ent).sum())
    out["adam"] = adam_run(c, W, b, dtype, clip)
    out["bf16"] = compute_mixed(c, W, b, dtype, want_ent)
    return out


def compute_mixed(c, W, b, dtype, want_ent):
    """logp, entropy and gradients in bf16 mixed precision."""
    P = leaves(W, dtype)
    w = torch.as_tensor(b["w"], dtype=dtype)
    went = torch.as_tensor(b["went"], dtype=dtype)
    lp, ent = logp_entropy(forward(P, c, b, mixed=True), b["targets"])
    out = dict(logp=lp.detach(), entropy=ent.detach(), grad=grads_of(P, -(w * lp).sum()))
    if want_ent:
        _, ent = logp_entropy(forward(P, c, b, mixed=True), b["targets"])
        out["grad_ent"] = grads_of(P, -(went * ent).sum())
    return out


def adam_run(c, W, b, dtype, clip):
    """ADAM['steps'] AdamW steps on the fixed batch, loss = -sum w logp."""
    P = leaves(W, dtype)
    w = torch.as_tensor(b["w"], dtype=dtype)
    decay = [t for t in P.values() if t.dim() == 2]
    no_decay = [t for t in P.values() if t.dim() != 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=ADAM["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"],
                            foreach=False)
    losses, norms = [], []
    for _ in range(ADAM["steps"]):
        opt.zero_grad(set_to_none=True)
        lp, _ = logp_entropy(forward(P, c, b), b["targets"])
        loss = -(w * lp).sum()
        loss.backward()
        n = torch.nn.utils.clip_grad_norm_(list(P.values()), clip)
        losses.append(loss.item())
        norms.append(n.item())
        opt.step()
    with torch.no_grad():
        lp, _ = logp_entropy(forward(P, c, b), b["targets"])
        final = -(w * lp).sum().item()
    return dict(losses=np.array(losses), grad_norms=np.array(norms), final_loss=final)


# ------------------------------------------------- cross-check: transformers

def hf_check(c, W, b, ref):
    """Loads W into transformers' own model class and compares logits and
    gradients with the hand-written model. Returns the worst relative
    differences, or None when transformers is not installed."""
    try:
        import transformers
    except ImportError:
        return None
    common = dict(vocab_size=c["vocab"], hidden_size=c["d_model"], intermediate_size=c["d_ff"],
                  num_hidden_layers=c["n_layer"], num_attention_heads=c["n_head"],
                  num_key_value_heads=c["n_kv_head"], head_dim=c["head_dim"], rms_norm_eps=c["rms_eps"],
                  max_position_embeddings=c["max_seq"], tie_word_embeddings=bool(c["tie_embeddings"]),
                  hidden_act="silu", rope_theta=c["rope_theta"],
                  rope_parameters=dict(rope_type="default", rope_theta=c["rope_theta"]))
    if c["qkv_bias"]:
        cls, conf = transformers.Qwen2ForCausalLM, transformers.Qwen2Config(**common)
    else:
        cls, conf = transformers.LlamaForCausalLM, transformers.LlamaConfig(
            attention_bias=False, mlp_bias=False, **common)
    conf._attn_implementation = "eager"
    torch.manual_seed(0)
    model = cls(conf).double()
    model.eval()
    sd = {n: torch.tensor(x, dtype=torch.float64) for n, x in W.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not (c["tie_embeddings"] and m == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"transformers model has other tensors: missing {missing}, unexpected {unexpected}")
    if c["tie_embeddings"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    cu = b["cu_seqlens"]
    logits = []
    for s in range(len(cu) - 1):
        ids = torch.as_tensor(b["tokens"][cu[s]:cu[s + 1]]).long()[None]
        pos = torch.as_tensor(b["pos"][cu[s]:cu[s + 1]]).long()[None]
        logits.append(model(input_ids=ids, position_ids=pos, use_cache=False).logits[0])
    logits = torch.cat(logits)
    lp, _ = logp_entropy(logits, b["targets"])
    loss = -(torch.as_tensor(b["w"]) * lp).sum()
    model.zero_grad(set_to_none=True)
    loss.backward()
    params = dict(model.named_parameters())
    worst = dict(logits=rel(logits.detach(), ref["logits"]), grad=0.0)
    for n in W:
        worst["grad"] = max(worst["grad"], rel(params[n].grad, ref["grad"][n]))
    return worst


def rel(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / max(b.norm(), 1e-300))


# ------------------------------------------------------------------ writing

def write(path, c, W, b, ref, mixed, grad_ent, clip):
    with h5py.File(path, "w", libver=("earliest", "v110")) as f:
        f.attrs["format"] = "rft-checkpoint"
        f.attrs["format_version"] = np.int32(1)
        for k, v in c.items():
            f.attrs[k] = np.float64(v) if k in ("rope_theta", "rms_eps") else np.int32(v)
        g = f.create_group("model")
        for name, _ in tensor_table(c):
            g[name] = W[name]
        r = f.create_group("ref")
        for k in ("tokens", "targets", "cu_seqlens", "pos"):
            r[k] = b[k].astype(np.int32)
        r["w"] = b["w"].astype(np.float64)
        r["went"] = b["went"].astype(np.float64)
        r["logits"] = ref["logits"].numpy().astype(np.float32)
        for k in ("logp", "entropy"):
            r[k] = ref[k].numpy().astype(np.float64)
        r.attrs["loss"] = np.float64(ref["loss"].item())
        gg = r.create_group("grad")
        for name, _ in tensor_table(c):
            gg[name] = ref["grad"][name].numpy().astype(np.float32)
        if grad_ent:
            ge = r.create_group("grad_ent")
            for name, _ in tensor_table(c):
                ge[name] = ref["grad_ent"][name].numpy().astype(np.float32)
        a = r.create_group("adam")
        for k in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            a.attrs[k] = np.float64(ADAM[k])
        a.attrs["grad_clip"] = np.float64(clip)
        a.attrs["steps"] = np.int32(ADAM["steps"])
        a["losses"] = ref["adam"]["losses"]
        a["grad_norms"] = ref["adam"]["grad_norms"]
        a.attrs["final_loss"] = np.float64(ref["adam"]["final_loss"])
        m = r.create_group("bf16")
        for k in ("logp", "entropy"):
            m[k] = mixed[k].numpy().astype(np.float64)
        for k in ("grad", "grad_ent") if grad_ent else ("grad",):
            gm = m.create_group(k)
            for name, _ in tensor_table(c):
                gm[name] = mixed[k][name].numpy().astype(np.float32)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.use_deterministic_algorithms(True)
    for name, spec in CONFIGS.items():
        c = spec["cfg"]
        W = make_weights(c, spec["seed"])
        b = make_batch(c, spec["seed"] + 1, spec["lens"], spec["ignore"])
        ref = compute(c, W, b, torch.float64, spec["grad_ent"], spec["grad_clip"])
        f32 = compute(c, W, b, torch.float32, spec["grad_ent"], spec["grad_clip"])
        hf = hf_check(c, W, b, ref)
        print(f"{name}: T={len(b['tokens'])} params={sum(x.size for x in W.values())} loss={ref['loss'].item():.6f}")
        if hf is None:
            print("  transformers not installed: cross-check skipped")
        else:
            print(f"  vs transformers (float64): logits rel {hf['logits']:.2e}, worst gradient rel {hf['grad']:.2e}")
            if hf["logits"] > 1e-6 or hf["grad"] > 1e-6:
                raise SystemExit(f"{name}: hand-written model disagrees with transformers")
        worst_g = max(rel(f32["grad"][n], ref["grad"][n]) for n in W)
        print(f"  float32 vs float64: logits {rel(f32['logits'], ref['logits']):.2e}, "
              f"logp {rel(f32['logp'], ref['logp']):.2e}, entropy {rel(f32['entropy'], ref['entropy']):.2e}, "
              f"worst gradient {worst_g:.2e}")
        al, bl = f32["adam"]["losses"], ref["adam"]["losses"]
        an, bn = f32["adam"]["grad_norms"], ref["adam"]["grad_norms"]
        print(f"  adam losses {np.array2string(bl, precision=5)}")
        print(f"  adam grad norms {np.array2string(bn, precision=4)}  final loss {ref['adam']['final_loss']:.6f}")
        print(f"  clipped at {spec['grad_clip']}: steps {[i + 1 for i in range(len(bn)) if bn[i] > spec['grad_clip']]}")
        mb, mf = ref["bf16"], f32["bf16"]
        print(f"  bf16 mixed vs fp32 (float64): logp {rel(mb['logp'], ref['logp']):.2e}, worst gradient "
              f"{max(rel(mb['grad'][n], ref['grad'][n]) for n in W):.2e}")
        print(f"  bf16 mixed, float32 vs float64 sums: logp {rel(mf['logp'], mb['logp']):.2e}, worst gradient "
              f"{max(rel(mf['grad'][n], mb['grad'][n]) for n in W):.2e}")
        print(f"  adam float32 vs float64: worst loss rel {np.max(np.abs(al - bl) / np.abs(bl)):.2e}, "
              f"worst norm rel {np.max(np.abs(an - bn) / bn):.2e}")
        path = os.path.join(outdir, name + ".h5")
        # bf16/ from the float32 run: rft decides each bf16 rounding on fp32
        # values, and float64 sums resolve some fp32 ties the other way
        write(path, c, W, b, ref, f32["bf16"], spec["grad_ent"], spec["grad_clip"])
        print(f"  wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
