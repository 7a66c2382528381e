#!/usr/bin/env python3
"""tools/bench/bench_decode_hf.py: the peer of bench_decode.c: Hugging Face
transformers' generate() (PyTorch CPU, fp32, KV cache on, greedy, no early
stop) on the same shapes: B prompts of P random tokens, N new tokens each.
Prints one JSON line per batch size."""
import argparse, json, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "smollm2": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, intermediate_size=1536, tie_word_embeddings=True),
    "10m": dict(vocab_size=8192, hidden_size=256, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, intermediate_size=768, tie_word_embeddings=False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="smollm2", choices=SHAPES)
    ap.add_argument("--batch", default="1,16,64")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5, **SHAPES[a.shape])
    m = LlamaForCausalLM(cfg).eval()
    if a.dtype == "bf16":
        m = m.to(torch.bfloat16)
    n_params = sum(p.numel() for p in m.parameters())
    for B in [int(x) for x in a.batch.split(",")]:
        ids = torch.randint(0, cfg.vocab_size, (B, a.prompt))
        att = torch.ones_like(ids)
        kw = dict(attention_mask=att, do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
        with torch.inference_mode():
            t0, c0 = time.perf_counter(), time.process_time()
            m.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            tp, cp = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            out = m.generate(ids, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
            tt, ct = time.perf_counter() - t0, time.process_time() - c0
        toks = (out.shape[1] - a.prompt) * B
        print(json.dumps(dict(impl="transformers", dtype=a.dtype, params=n_params, batch=B, prompt=a.prompt, new=a.new,
                              threads=torch.get_num_threads(), total_s=round(tt, 3), prefill_s=round(tp, 3),
                              tokens_per_s=round(toks / tt, 1),
                              decode_tokens_per_s=round((toks - B) / (tt - tp), 1),
                              # CPU seconds of all threads (comparable on a loaded machine)
                              decode_cpu_ms_per_step=round(1e3 * (ct - cp) / (a.new - 1), 2),
                              decode_cpu_ms_per_token=round(1e3 * (ct - cp) / (toks - B), 3))), flush=True)


if __name__ == "__main__":
    main()
