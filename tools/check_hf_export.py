#!/usr/bin/env python3
"""tools/check_hf_export.py: checks a Hugging Face directory written by
`rft convert` with transformers (pip install transformers torch gguf).

  python3 tools/check_hf_export.py OUT_DIR [--gguf MODEL.gguf]

1. transformers loads OUT_DIR (AutoModelForCausalLM, AutoTokenizer) and
   greedy-generates from a chat-formatted prompt.
2. With --gguf (the file OUT_DIR was converted from): transformers' own GGUF
   loader (from_pretrained(..., gguf_file=...), which dequantises with gguf-py
   and undoes llama.cpp's Q/K permutation itself) gives an independent
   reference: every parameter must equal ours, the logits of 5 prompts must
   agree, and the chat template must tokenize identically.
Exit status 0 when everything matches, 1 otherwise.
"""
import argparse
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "Once upon a time",
           "Water boils at a temperature of"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--gguf")
    a = ap.parse_args()
    torch.manual_seed(0)
    ok = True
    ours = AutoModelForCausalLM.from_pretrained(a.out_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(a.out_dir)
    print(f"transformers loaded {a.out_dir}: {type(ours).__name__}, {sum(p.numel() for p in ours.parameters())} parameters, "
          f"tokenizer {type(tok).__name__} ({len(tok)} tokens)")
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    if not torch.is_tensor(ids):
        ids = ids["input_ids"]
    with torch.no_grad():
        gen = ours.generate(ids, max_new_tokens=24, do_sample=False)
    print("chat greedy:", repr(tok.decode(gen[0, ids.shape[1]:])))
    if a.gguf:
        d, f = os.path.split(os.path.abspath(a.gguf))
        ref = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
        rtok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        sd_o, sd_r = ours.state_dict(), ref.state_dict()
        worst = 0.0
        for k, v in sd_r.items():
            if k not in sd_o:
                print("missing in ours:", k)
                ok = False
                continue
            diff = (sd_o[k] - v).abs().max().item() if v.numel() else 0.0
            worst = max(worst, diff)
            if diff != 0.0:
                print(f"  {k}: max |diff| {diff:.3g}")
        print(f"parameters vs transformers' GGUF loader: {len(sd_r)} tensors, max |diff| {worst:.3g}")
        ok &= worst == 0.0
        for p in PROMPTS:
            x = tok(p, return_tensors="pt").input_ids
            xr = rtok(p, return_tensors="pt").input_ids
            same_ids = torch.equal(x, xr)
            with torch.no_grad():
                lo, lr = ours(x).logits[0, -1], ref(x).logits[0, -1]
            rel = ((lo - lr).abs().max() / lr.abs().max()).item()
            print(f"  {p!r}: ids {'same' if same_ids else 'DIFFER'}, next-token logits max rel diff {rel:.3g}, "
                  f"top {tok.decode(lo.argmax())!r} / {rtok.decode(lr.argmax())!r}")
            ok &= same_ids and rel < 1e-5
        ci = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        cr = rtok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        ci = ci["input_ids"] if isinstance(ci, dict) or hasattr(ci, "keys") else ci
        cr = cr["input_ids"] if isinstance(cr, dict) or hasattr(cr, "keys") else cr
        print(f"chat template ids: {'same' if list(ci) == list(cr) else 'DIFFER'} ({len(ci)} tokens)")
        ok &= list(ci) == list(cr)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
