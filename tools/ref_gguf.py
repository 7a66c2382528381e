#!/usr/bin/env python3
"""tools/ref_gguf.py: makes the GGUF / safetensors / Hugging Face fixtures
under tests/fixtures/ with the reference implementations from PyPI
(`pip install gguf numpy`): gguf.GGUFWriter writes the files and
gguf.quants quantises and dequantises, so the C reader and dequantiser are
checked against llama.cpp's own Python package.

  gguf_types.gguf        every metadata value type, one tensor per supported
                         ggml type (q_<type>) with its dequantised values
                         (ref_<type>, F32) computed by gguf.quants
  gguf_v2_align64.gguf   version-2 header, general.alignment = 64
  gguf_tiny_llama.gguf   a 2-layer llama (GQA, untied) with mixed tensor types,
                         Q/K rows permuted the way convert_hf_to_gguf.py does
  hf_tiny_llama/         the same model as a Hugging Face directory (sharded
                         safetensors + index, F32/F16/BF16), holding the
                         dequantised, un-permuted reference weights
  gguf_tiny_qwen2.gguf   1-layer qwen2 (q/k/v bias, tied embeddings, no permutation)
  hf_tiny_qwen2/         its Hugging Face directory (single model.safetensors)

  gguf_tiny_logits.json  (with --logits; needs torch + transformers) transformers'
                         logits of the two tiny HF models for two token sequences
  gguf_smollm2_ref.json  (with --smollm2 PATH) reference values of the real
                         SmolLM2-135M-Instruct Q4_1 GGUF, for tests/test_convert_smollm2.c
  gguf_smollm2_hf.json   (with --smollm2 PATH; needs torch + transformers + accelerate)
                         transformers' logits, greedy generation and chat ids on it

Run from the repository root: python3 tools/ref_gguf.py
                         python3 tools/ref_gguf.py --smollm2 $(tools/fetch_smollm2.sh)
"""
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V
from gguf import quants

OUT = "tests/fixtures"
rng = np.random.default_rng(1234)


def metadata_all_types(w):
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.bool_t", True)
    w.add_bool("test.bool_f", False)
    w.add_string("test.str", "héllo wörld ✓")
    w.add_key_value("test.arr_i32", [1, -2, 3, -4, 5], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.arr_f32", [0.5, -1.25, 3.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.arr_u8", [0, 255, 7], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.arr_str", ["a", "", "Ġthe", "日本語", "<|im_end|>"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("test.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)


def rand_fp16(n, lo, hi):
    """n float16 scale values with magnitudes in [lo, hi], as raw uint8 pairs"""
    v = (rng.uniform(lo, hi, n) * rng.choice([-1, 1], n)).astype(np.float16)
    return v.view(np.uint8).reshape(n, 2)


def k_blocks(qtype, n_blocks):
    """random Q4_K / Q6_K blocks (gguf.quants has no quantiser for them): random
    payload bytes with finite, moderate fp16 scales"""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (n_blocks, ts), dtype=np.uint8)
    if qtype == Q.Q4_K:       # d, dmin (f16) at bytes 0..3
        b[:, 0:2] = rand_fp16(n_blocks, 1e-3, 1e-2)
        b[:, 2:4] = rand_fp16(n_blocks, 1e-3, 1e-2)
    elif qtype == Q.Q6_K:     # d (f16) in the last two bytes
        b[:, ts - 2:ts] = rand_fp16(n_blocks, 1e-4, 1e-3)
    return b


def make_types():
    path = f"{OUT}/gguf_types.gguf"
    w = gguf.GGUFWriter(path, arch="test")
    metadata_all_types(w)
    rows = 3
    for qt in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q6_K]:
        cols = 256 if qt in (Q.Q4_K, Q.Q6_K) else 64
        if qt in (Q.Q4_K, Q.Q6_K):
            bs, ts = gguf.GGML_QUANT_SIZES[qt]
            raw = k_blocks(qt, rows * cols // bs).reshape(rows, cols // bs * ts)
        else:
            x = rng.normal(0, 1, (rows, cols)).astype(np.float32)
            x[0, :4] = [0.0, -0.0, 1e-6, 65504.0 if qt != Q.BF16 else 3e38]
            raw = quants.quantize(x, qt)
        ref = quants.dequantize(raw, qt).astype(np.float32).reshape(rows, cols)
        if qt == Q.F32:
            w.add_tensor(f"q_{qt.name}", raw)
        elif qt == Q.F16:
            w.add_tensor(f"q_{qt.name}", raw)
        else:
            w.add_tensor(f"q_{qt.name}", raw, raw_dtype=qt)
        w.add_tensor(f"ref_{qt.name}", ref)
    # a 3-d tensor to check dimension order: numpy shape (2, 3, 32) -> ne = {32, 3, 2}
    w.add_tensor("cube", np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_v2():
    path = f"{OUT}/gguf_v2_align64.gguf"
    w = gguf.GGUFWriter(path, arch="test")
    w.add_custom_alignment(64)
    w.add_string("test.note", "version 2, alignment 64")
    w.add_tensor("a", np.arange(5, dtype=np.float32))            # 20 bytes: next tensor at 64
    w.add_tensor("b", (np.arange(7, dtype=np.float32) * 0.5).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "r+b") as f:    # v2 and v3 share the layout (v3 only added big-endian files)
        f.seek(4)
        f.write(struct.pack("<I", 2))


def make_writer_ref():
    """what tests/test_gguf.c writes with gguf_writer, made by GGUFWriter: the
    two files must be byte-identical"""
    path = f"{OUT}/gguf_writer_ref.gguf"
    w = gguf.GGUFWriter(path, arch="test")
    w.add_uint32("w.u32", 7)
    w.add_int32("w.i32", -7)
    w.add_uint64("w.u64", 1 << 40)
    w.add_float32("w.f32", 1.5)
    w.add_bool("w.bool", True)
    w.add_string("w.str", "naïve")
    w.add_key_value("w.arr_str", ["x", "", "yz"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("w.arr_i32", [3, -1, 4], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("w.arr_f32", [0.25, -8.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_tensor("t.f32", (np.arange(15, dtype=np.float32) * 0.25 - 1).reshape(3, 5))
    w.add_tensor("t.f16", (np.arange(4, dtype=np.float32) * 0.5).astype(np.float16))
    w.add_tensor("t.bf16", quants.quantize((np.arange(64, dtype=np.float32) - 32) / 8, Q.BF16).reshape(2, 64),
                 raw_dtype=Q.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- tiny models ----

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tiny_vocab():
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"),
              ("Ġ", "s"), ("r", "e"), ("a", "t"), ("Ġ", "w"), ("o", "r"), ("e", "n")]
    for a, b in merges:
        tokens.append(a + b)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    return tokens, types, [f"{a} {b}" for a, b in merges], specials


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def add_tokenizer_gguf(w, tokens, types, merges, pre):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_unk_token_id(tokens.index("<|endoftext|>"))
    w.add_pad_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)


def write_tokenizer_json(d, tokens, merges, specials, pre_digits):
    vocab = {t: i for i, t in enumerate(tokens) if t not in specials}
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre_digits:
        pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, pre]}
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": tokens.index(s), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s in specials],
        "normalizer": None, "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(f"{d}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    tc = {"add_prefix_space": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
          "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "chat_template": CHATML,
          "model_max_length": 2048, "tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False}
    with open(f"{d}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False, indent=1)


ST_DTYPE = {np.float32: "F32", np.float16: "F16", "bf16": "BF16"}


def st_encode(arr, dt):
    if dt == "F32":
        return arr.astype(np.float32).tobytes()
    if dt == "F16":
        return arr.astype(np.float16).tobytes()
    u = np.ascontiguousarray(arr.astype(np.float32)).view(np.uint32)
    assert np.all((u & 0xFFFF) == 0), "BF16 tensor must hold bf16-representable values"
    return (u >> 16).astype(np.uint16).tobytes()


def write_safetensors(path, tensors):
    """tensors: list of (name, array, dtype-string); the format by hand (8-byte
    little-endian header length, JSON header padded with spaces, raw data)"""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr, dt in tensors:
        b = st_encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute"""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def quant_roundtrip(x, qt):
    """(raw data for GGUFWriter, dequantised float32 reference)"""
    if qt == Q.F32:
        return x.astype(np.float32), x.astype(np.float32)
    if qt == Q.F16:
        h = x.astype(np.float16)
        return h, h.astype(np.float32)
    raw = quants.quantize(x.astype(np.float32), qt)
    return raw, quants.dequantize(raw, qt).astype(np.float32).reshape(x.shape)


def bf16_round(x):
    u = x.astype(np.float32).view(np.uint32)
    u = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return u.view(np.float32)


def make_tiny(arch):
    tokens, types, merges, specials = tiny_vocab()
    V_ = len(tokens)
    if arch == "llama":
        D, L, H, KV, F, tied, bias = 64, 2, 4, 2, 96, False, False
    else:
        D, L, H, KV, F, tied, bias = 64, 1, 4, 2, 96, True, True
    hd = D // H
    theta, eps, ctx = 10000.0 if arch == "llama" else 1000000.0, 1e-5 if arch == "llama" else 1e-6, 2048
    g = gguf.GGUFWriter(f"{OUT}/gguf_tiny_{arch}.gguf", arch=arch)
    g.add_name(f"tiny-{arch}")
    g.add_block_count(L)
    g.add_context_length(ctx)
    g.add_embedding_length(D)
    g.add_feed_forward_length(F)
    g.add_head_count(H)
    g.add_head_count_kv(KV)
    g.add_rope_freq_base(theta)
    g.add_layer_norm_rms_eps(eps)
    g.add_rope_dimension_count(hd)
    if arch == "llama":
        g.add_vocab_size(V_)
    add_tokenizer_gguf(g, tokens, types, merges, "smollm" if arch == "llama" else "qwen2")

    hf = []  # (name, reference array, safetensors dtype)

    def put(gname, hname, x, qt, perm=None):
        """x: HF-layout weights; the GGUF gets them permuted (llama q/k) and
        quantised as qt; the HF reference is the dequantised, un-permuted data"""
        if qt == Q.BF16:
            x = bf16_round(x)
        xg = permute(x, H, perm) if perm is not None else x
        if qt == Q.BF16:
            raw = quants.quantize(xg.astype(np.float32), Q.BF16)
            ref_g = xg.astype(np.float32)
        else:
            raw, ref_g = quant_roundtrip(xg, qt)
        if qt in (Q.F32, Q.F16):
            g.add_tensor(gname, raw)
        else:
            g.add_tensor(gname, raw, raw_dtype=qt)
        ref = ref_g
        if perm is not None:   # un-permute the reference (inverse of permute)
            nh = perm if perm != H else H
            ref = ref_g.reshape(nh, ref_g.shape[0] // nh // 2, 2, *ref_g.shape[1:]).swapaxes(1, 2).reshape(ref_g.shape)
            assert np.array_equal(permute(ref, H, perm), ref_g)
        dt = {Q.F16: "F16", Q.BF16: "BF16"}.get(qt, "F32")
        hf.append((hname, ref, dt))

    r = lambda *s: rng.normal(0, 0.05, s).astype(np.float32)
    put("token_embd.weight", "model.embed_tokens.weight", r(V_, D), Q.F16)
    for l in range(L):
        p, hp = f"blk.{l}.", f"model.layers.{l}."
        a, b = (Q.Q8_0, Q.Q4_1) if l == 0 else (Q.Q5_0, Q.Q5_1)
        put(p + "attn_norm.weight", hp + "input_layernorm.weight", 1 + r(D), Q.F32)
        qperm = H if arch == "llama" else None
        kperm = KV if arch == "llama" else None
        put(p + "attn_q.weight", hp + "self_attn.q_proj.weight", r(H * hd, D), Q.F16, qperm)
        put(p + "attn_k.weight", hp + "self_attn.k_proj.weight", r(KV * hd, D), a, kperm)
        put(p + "attn_v.weight", hp + "self_attn.v_proj.weight", r(KV * hd, D), Q.BF16)
        if bias:
            put(p + "attn_q.bias", hp + "self_attn.q_proj.bias", r(H * hd), Q.F32)
            put(p + "attn_k.bias", hp + "self_attn.k_proj.bias", r(KV * hd), Q.F32)
            put(p + "attn_v.bias", hp + "self_attn.v_proj.bias", r(KV * hd), Q.F32)
        put(p + "attn_output.weight", hp + "self_attn.o_proj.weight", r(D, H * hd), Q.F32)
        put(p + "ffn_norm.weight", hp + "post_attention_layernorm.weight", 1 + r(D), Q.BF16)
        put(p + "ffn_gate.weight", hp + "mlp.gate_proj.weight", r(F, D), Q.Q4_0)
        put(p + "ffn_up.weight", hp + "mlp.up_proj.weight", r(F, D), b)
        put(p + "ffn_down.weight", hp + "mlp.down_proj.weight", r(D, F), a)
    put("output_norm.weight", "model.norm.weight", 1 + r(D), Q.F32)
    if not tied:
        put("output.weight", "lm_head.weight", r(V_, D), Q.Q8_0)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()

    d = f"{OUT}/hf_tiny_{arch}"
    os.makedirs(d, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"], "model_type": arch,
           "vocab_size": V_, "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": KV, "max_position_embeddings": ctx,
           "rms_norm_eps": eps, "rope_theta": theta, "tie_word_embeddings": tied, "hidden_act": "silu",
           "bos_token_id": tokens.index("<|im_start|>"), "eos_token_id": tokens.index("<|im_end|>"),
           "torch_dtype": "float32"}
    if arch == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "head_dim": hd, "pretraining_tp": 1})
    with open(f"{d}/config.json", "w") as f:
        json.dump(cfg, f, indent=1)
    write_tokenizer_json(d, tokens, merges, specials, arch == "llama")
    if arch == "llama":   # two shards + index
        half = len(hf) // 2
        shards = [hf[:half], hf[half:]]
        wmap = {}
        for i, s in enumerate(shards):
            fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(f"{d}/{fn}", s)
            for name, _, _ in s:
                wmap[name] = fn
        total = sum(len(st_encode(a, dt)) for _, a, dt in hf)
        with open(f"{d}/model.safetensors.index.json", "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=1)
    else:
        write_safetensors(f"{d}/model.safetensors", hf)


def make_fuzz_seeds():
    """small seed inputs for tests/fuzz/fuzz_gguf.c and fuzz_safetensors.c"""
    import shutil
    for fn in ("gguf_v2_align64.gguf", "gguf_writer_ref.gguf", "gguf_types.gguf"):
        shutil.copy(f"{OUT}/{fn}", f"tests/fuzz/corpus_gguf/{fn}")
    d = "tests/fuzz/corpus_safetensors"
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    write_safetensors(f"{d}/f32.safetensors", [("a", x, "F32")])
    write_safetensors(f"{d}/mixed.safetensors", [("w", x, "F16"), ("b", x[0], "BF16"), ("c", x[:, :1], "F32")])
    write_safetensors(f"{d}/empty.safetensors", [])


def make_tiny_logits():
    """tests/fixtures/gguf_tiny_logits.json: transformers' float32 logits of the
    tiny HF fixtures (hf_tiny_llama, hf_tiny_qwen2) for two token sequences
    (needs torch and transformers)"""
    import torch
    from transformers import AutoModelForCausalLM
    seqs = [[270, 72, 101, 108, 256, 257, 32, 119], [10, 260, 33, 271, 99, 64, 65, 66, 67, 68, 262, 5]]
    out = {"seqs": seqs}
    for arch in ("llama", "qwen2"):
        m = AutoModelForCausalLM.from_pretrained(f"{OUT}/hf_tiny_{arch}", dtype=torch.float32).eval()
        with torch.no_grad():
            out[arch] = [[[float(f"{v:.7g}") for v in row] for row in m(torch.tensor([s])).logits[0].tolist()]
                         for s in seqs]
    with open(f"{OUT}/gguf_tiny_logits.json", "w") as fp:
        json.dump(out, fp, separators=(",", ":"))


SMOL_PROMPTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "Once upon a time",
                "Water boils at a temperature of"]
SMOL_CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def make_smollm2_transformers(path):
    """tests/fixtures/gguf_smollm2_hf.json: transformers (float32, weights from
    its own GGUF loader: gguf-py dequantisation, its own Q/K un-permutation)
    on the real SmolLM2 GGUF: last-position logits of 5 prompts (the top 16
    and 496 fixed vocabulary entries), 32 greedy tokens after the chat-formatted
    prompt, and the prompt's ids from apply_chat_template"""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.split(os.path.abspath(path))
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    fixed = np.linspace(0, m.config.vocab_size - 1, 496).astype(np.int64)
    prompts = []
    for p in SMOL_PROMPTS:
        ids = tok(p).input_ids
        with torch.no_grad():
            lg = m(torch.tensor([ids])).logits[0, -1].numpy()
        top = np.argsort(-lg)[:16]
        idx = np.concatenate([top, fixed])
        prompts.append({"text": p, "ids": ids, "max_abs_logit": float(np.abs(lg).max()),
                        "index": idx.tolist(), "logits": [float(lg[i]) for i in idx]})
    chat = tok.apply_chat_template(SMOL_CHAT, add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    with torch.no_grad():
        g = m.generate(torch.tensor([chat]), max_new_tokens=32, do_sample=False, eos_token_id=None,
                       pad_token_id=tok.eos_token_id)
    gen = g[0, len(chat):].tolist()
    with open(f"{OUT}/gguf_smollm2_hf.json", "w") as fp:
        json.dump({"file": f, "prompts": prompts, "chat": SMOL_CHAT, "chat_ids": chat, "greedy": gen,
                   "greedy_text": tok.decode(gen)}, fp)


def make_smollm2_ref(path):
    """tests/fixtures/gguf_smollm2_ref.json: for a few tensors of the real
    SmolLM2-135M-Instruct Q4_1 GGUF (tools/fetch_smollm2.sh), the values gguf-py
    dequantises, un-permuted for Q/K like the HF checkpoint they came from:
    sum, sum of squares, and 64 values at fixed flat indices"""
    r = gguf.GGUFReader(path)
    f = {k: r.fields[k].contents() for k in ("llama.attention.head_count", "llama.attention.head_count_kv")}
    nh, nkv = f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    want = {"token_embd.weight": ("model.embed_tokens.weight", None),
            "blk.0.attn_q.weight": ("model.layers.0.self_attn.q_proj.weight", nh),
            "blk.0.attn_k.weight": ("model.layers.0.self_attn.k_proj.weight", nkv),
            "blk.0.attn_v.weight": ("model.layers.0.self_attn.v_proj.weight", None),
            "blk.17.attn_k.weight": ("model.layers.17.self_attn.k_proj.weight", nkv),
            "blk.29.ffn_down.weight": ("model.layers.29.mlp.down_proj.weight", None),
            "blk.29.ffn_norm.weight": ("model.layers.29.post_attention_layernorm.weight", None),
            "output_norm.weight": ("model.norm.weight", None)}
    out = []
    for t in r.tensors:
        if t.name not in want:
            continue
        hf, heads = want[t.name]
        x = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(d) for d in reversed(t.shape)]
        x = x.reshape(shape)
        if heads:
            x = x.reshape(heads, x.shape[0] // heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(shape)
        flat = x.reshape(-1)
        idx = np.linspace(0, flat.size - 1, 64).astype(np.int64)
        out.append({"gguf": t.name, "hf": hf, "type": t.tensor_type.name, "shape": shape,
                    "sum": float(flat.astype(np.float64).sum()), "sumsq": float((flat.astype(np.float64) ** 2).sum()),
                    "index": idx.tolist(), "values": [float(v) for v in flat[idx]]})
    with open(f"{OUT}/gguf_smollm2_ref.json", "w") as fp:
        json.dump({"file": os.path.basename(path), "tensors": out}, fp, indent=1)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 2 and sys.argv[1] == "--logits":
        make_tiny_logits()
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--smollm2":
        make_smollm2_ref(sys.argv[2])
        make_smollm2_transformers(sys.argv[2])
        sys.exit(0)
    os.makedirs(OUT, exist_ok=True)
    make_types()
    make_v2()
    make_writer_ref()
    make_tiny("llama")
    make_tiny("qwen2")
    make_fuzz_seeds()
    try:   # cross-check the hand-written safetensors with the reference package when present
        from safetensors import safe_open
        for d in ("hf_tiny_llama", "hf_tiny_qwen2"):
            for fn in sorted(os.listdir(f"{OUT}/{d}")):
                if fn.endswith(".safetensors"):
                    with safe_open(f"{OUT}/{d}/{fn}", "numpy") as f:
                        for k in f.keys():
                            if f.get_slice(k).get_dtype() != "BF16":
                                f.get_tensor(k)
    except ImportError:
        print("safetensors package absent: fixtures not cross-checked")
    for fn in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, fn)
        if fn.startswith(("gguf_", "hf_tiny")):
            print(fn, os.path.getsize(p) if os.path.isfile(p) else "dir")
