#!/usr/bin/env python3
"""tools/make_ckpt_fixture.py: writes tests/fixtures/ckpt_h5py.h5, an rft
checkpoint written independently of rft with h5py and h5py's own conventions
(variable-length UTF-8 strings, int32/uint16/float64 attributes, an integer
rope_theta, an int64 data order), so tests/test_checkpoint.c can check that
rft reads what Python tools (converters, notebooks) write. Tensor names are
spelled here from the Hugging Face Llama/Qwen2 naming, not taken from rft.

Values are exact in float32: tensor k (in HF order), element i holds
((7 i + 13 k) % 101 - 50) / 64; optimizer m holds half of that, v its
absolute value. Usage: python3 tools/make_ckpt_fixture.py [OUT]
"""
import sys

import h5py
import numpy as np

CFG = dict(vocab=16, d_model=8, n_layer=1, n_head=2, n_kv_head=1, head_dim=4, d_ff=12,
           rope_theta=10000, rms_eps=1e-5, tie_embeddings=0, qkv_bias=1, max_seq=64)


def tensors(c):
    D, F = c["d_model"], c["d_ff"]
    q, kv = c["n_head"] * c["head_dim"], c["n_kv_head"] * c["head_dim"]
    out = [("model.embed_tokens.weight", (c["vocab"], D))]
    for l in range(c["n_layer"]):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", (D,)))
        out.append((p + "self_attn.q_proj.weight", (q, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.q_proj.bias", (q,)))
        out.append((p + "self_attn.k_proj.weight", (kv, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.k_proj.bias", (kv,)))
        out.append((p + "self_attn.v_proj.weight", (kv, D)))
        if c["qkv_bias"]:
            out.append((p + "self_attn.v_proj.bias", (kv,)))
        out.append((p + "self_attn.o_proj.weight", (D, q)))
        out.append((p + "post_attention_layernorm.weight", (D,)))
        out.append((p + "mlp.gate_proj.weight", (F, D)))
        out.append((p + "mlp.up_proj.weight", (F, D)))
        out.append((p + "mlp.down_proj.weight", (D, F)))
    out.append(("model.norm.weight", (D,)))
    if not c["tie_embeddings"]:
        out.append(("lm_head.weight", (c["vocab"], D)))
    return out


def values(k, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((7 * i + 13 * k) % 101 - 50) / 64.0).astype(np.float32).reshape(shape)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ckpt_h5py.h5"
    # v110: readable by HDF5 1.10 (Debian bookworm) whatever HDF5 h5py bundles
    with h5py.File(out, "w", libver=("earliest", "v110")) as f:
        f.attrs["format"] = "rft-checkpoint"            # variable-length UTF-8
        f.attrs["format_version"] = np.int32(1)
        for k, v in CFG.items():
            if k == "rms_eps":
                f.attrs[k] = np.float64(v)
            elif k == "vocab":
                f.attrs[k] = np.uint16(v)
            elif k == "rope_theta":
                f.attrs[k] = np.int64(v)                 # an integer where a float is expected
            else:
                f.attrs[k] = np.int32(v)
        g = f.create_group("model")
        opt = f.create_group("optimizer")
        m, v = opt.create_group("m"), opt.create_group("v")
        for k, (name, shape) in enumerate(tensors(CFG)):
            x = values(k, shape)
            g[name] = x
            m[name] = x / 2
            v[name] = np.abs(x)
        opt.attrs.update(dict(step=5, lr=0.001, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
                              grad_clip=1.0, schedule="linear", warmup_steps=2, total_steps=50,
                              min_lr_ratio=0.0))
        tr = f.create_group("trainer")
        tr.attrs.update(dict(step=5, epoch=1, cursor=3, rng_counter=77, best_valid_reward=0.5,
                             best_step=4, wall_seconds=1.25))
        tr.attrs["seed"] = np.uint64(2**63 + 5)
        tr["config_text"] = "model: tiny\nlr: 1e-3  # caf\u00e9\n"   # scalar variable-length string
        tr["data_order"] = np.array([2, 0, 3, 1], dtype=np.int64)
        sc = tr.create_group("scalars")
        sc.attrs["kl_coef"] = 0.25


if __name__ == "__main__":
    main()
