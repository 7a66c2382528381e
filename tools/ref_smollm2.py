#!/usr/bin/env python3
"""tools/ref_smollm2.py: transformers reference for the real-model check
(tests/test_smollm2_reference.c) on SmolLM2-135M-Instruct.

The weights transformers runs are the ones rft dequantises: the Q4_1 GGUF is
imported and exported by rft itself (`rft convert M.gguf x.h5`, `rft convert
x.h5 HF_DIR`: fp32 safetensors + config.json + tokenizer files), then loaded
with AutoModelForCausalLM (float32, eager attention). Any difference the C test
finds is therefore in rft's model, tokenizer, chat template or rollout code,
not in the dequantisation (that is covered by tests/test_convert_smollm2.c).

The reference token ids come from transformers' tokenizer built from the GGUF
metadata itself (AutoTokenizer.from_pretrained(dir, gguf_file=...), whose
chat template is the GGUF's jinja text rendered by apply_chat_template), so
they do not depend on rft's tokenizer export; the script also checks that the
tokenizer rft exported gives the same ids, and that transformers' own GGUF
loader (gguf-py dequantisation) gives the same logits as rft's export.

For 5 prompts (3 plain texts, 2 chat conversations formatted with
apply_chat_template(add_generation_prompt=True)) it writes
tests/fixtures/smollm2_ref.json:
  ids            the prompt's token ids
  top            the 50 largest next-token logits at the last position [[id, value], ...]
  probe          logits of 200 fixed vocabulary ids (evenly spaced)
  stats          mean, std, max |.|, logsumexp of the full V-vector (float64)
  greedy         32 tokens of generate(do_sample=False) with eos disabled,
                 so both sides produce exactly 32 tokens
  greedy_margin  per step, logit(top1) - logit(top2) (how fragile the argmax is)
  first_stop     index in greedy of the first eos/<|im_end|> or -1
and, for the first chat prompt, the full logits vector as base64 float32 LE.

usage (repository root):
  python3 tools/ref_smollm2.py $(tools/fetch_smollm2.sh) [--rft build/rft]   (or RFT_BIN=...) [--out tests/fixtures/smollm2_ref.json]
"""
import argparse
import base64
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

PLAIN = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n',
    "In 1969, 3 astronauts flew 384,400 km to the Moon.  Caf\u00e9 na\u00efve \u6771\u4eac \U0001F680\n\nThe next",
]
CHATS = [
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    [
        {"role": "system", "content": "You are a concise math tutor."},
        {"role": "user", "content": "What is 12 * 7?"},
        {"role": "assistant", "content": "12 * 7 = 84."},
        {"role": "user", "content": "And 12 * 8? Explain briefly."},
    ],
]
N_GEN = 32
N_TOP = 50
N_PROBE = 200
FULL_PROMPT = 3  # index of the prompt whose full logits vector is stored


def find_rft(arg):
    if arg or os.environ.get("RFT_BIN"):
        return arg or os.environ["RFT_BIN"]
    for d in sorted(os.listdir(".")):
        p = os.path.join(d, "rft")
        if d.startswith("build") and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit("ref_smollm2: no rft binary found under build*/; pass --rft PATH")


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"ref_smollm2: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


def chat_ids(tok, msgs):
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--rft", default=None)
    ap.add_argument("--out", default="tests/fixtures/smollm2_ref.json")
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rft = find_rft(a.rft)
    tmp = tempfile.mkdtemp(prefix="ref_smollm2_")
    try:
        h5 = os.path.join(tmp, "smollm2.h5")
        hf = os.path.join(tmp, "hf")
        run([rft, "convert", a.gguf, h5])
        run([rft, "convert", h5, hf])
        with open(os.path.join(hf, "config.json")) as f:
            cfg = json.load(f)
        print("rft export config:", json.dumps(cfg), file=sys.stderr)
        from safetensors import safe_open
        with safe_open(os.path.join(hf, "model.safetensors"), "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        if dtypes != {"F32"}:
            sys.exit(f"ref_smollm2: rft exported {dtypes}, expected F32 safetensors")

        model, info = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager",
                                                           output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            sys.exit(f"ref_smollm2: transformers loading rft's export: {bad}")
        model.eval()

        gdir, gfile = os.path.split(os.path.abspath(a.gguf))
        tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)  # from the GGUF metadata, not rft's export
        tok_x = AutoTokenizer.from_pretrained(hf)  # rft's exported tokenizer.json + tokenizer_config.json
        stop_ids = sorted({i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"),
                                       tok.convert_tokens_to_ids("<|endoftext|>")) if i is not None and i >= 0})

        prompts = []
        for p in PLAIN:
            ids = [int(i) for i in tok(p).input_ids]
            if [int(i) for i in tok_x(p).input_ids] != ids:
                print(f"WARNING: rft-exported tokenizer.json differs on {p!r}", file=sys.stderr)
            prompts.append({"kind": "text", "text": p, "ids": ids})
        for msgs in CHATS:
            ids = chat_ids(tok, msgs)
            if chat_ids(tok_x, msgs) != ids:
                print(f"WARNING: rft-exported chat template/tokenizer differs on {msgs!r}", file=sys.stderr)
            prompts.append({"kind": "chat", "messages": msgs,
                            "text": tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                            "ids": ids})

        V = model.config.vocab_size
        probe = np.linspace(0, V - 1, N_PROBE).round().astype(np.int64)
        full_b64 = None
        for k, pr in enumerate(prompts):
            x = torch.tensor([pr["ids"]])
            with torch.no_grad():
                lg = model(x).logits[0, -1].double().numpy()
                out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_GEN, min_new_tokens=N_GEN,
                                     do_sample=False, eos_token_id=None, pad_token_id=0, output_scores=True,
                                     return_dict_in_generate=True, temperature=None, top_p=None, top_k=None)
            gen = out.sequences[0, len(pr["ids"]):].tolist()
            assert len(gen) == N_GEN, len(gen)
            margins = []
            for s in out.scores:  # raw logits: no processors active with these settings
                t2 = torch.topk(s[0].double(), 2).values
                margins.append(float(t2[0] - t2[1]))
            assert int(torch.argmax(out.scores[0][0])) == int(np.argmax(lg)) == gen[0]
            top = np.argsort(-lg, kind="stable")[:N_TOP]
            m = lg.max()
            pr.update({
                "top": [[int(i), float(lg[i])] for i in top],
                "probe": [[int(i), float(lg[i])] for i in probe],
                "stats": {"mean": float(lg.mean()), "std": float(lg.std()), "max_abs": float(np.abs(lg).max()),
                          "logsumexp": float(m + math.log(np.exp(lg - m).sum()))},
                "greedy": [int(t) for t in gen],
                "greedy_margin": [round(v, 6) for v in margins],
                "first_stop": next((j for j, t in enumerate(gen) if t in stop_ids), -1),
                "greedy_text": tok.decode(gen),
            })
            if k == FULL_PROMPT:
                full_b64 = base64.b64encode(lg.astype("<f4").tobytes()).decode()
            print(f"prompt {k} ({len(pr['ids'])} ids): top {top[0]} {lg[top[0]]:.4f}, min greedy margin "
                  f"{min(margins):.4f}, text {pr['greedy_text']!r}", file=sys.stderr)

        # cross-check: transformers' own GGUF loader (gguf-py dequantisation) on the same prompts
        try:
            mg = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32,
                                                      attn_implementation="eager").eval()
            worst = 0.0
            for pr in prompts:
                with torch.no_grad():
                    lg2 = mg(torch.tensor([pr["ids"]])).logits[0, -1].double().numpy()
                ref = np.array([v for _, v in pr["top"]])
                worst = max(worst, float(np.abs(lg2[[i for i, _ in pr["top"]]] - ref).max() / np.abs(ref).max()))
            print(f"transformers GGUF loader vs rft's fp32 export: top-{N_TOP} logits max rel diff {worst:.3g}",
                  file=sys.stderr)
            del mg
        except Exception as e:  # informative only
            print(f"(transformers GGUF loader cross-check skipped: {e})", file=sys.stderr)

        doc = {
            "about": "transformers on SmolLM2-135M-Instruct Q4_1 weights dequantised and exported by rft "
                     "(tools/ref_smollm2.py); ids from transformers' GGUF tokenizer / apply_chat_template",
            "gguf": gfile,
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
            "vocab": V,
            "stop_ids": stop_ids,
            "n_gen": N_GEN,
            "prompts": prompts,
            "full_logits_prompt": FULL_PROMPT,
            "full_logits_f32_b64": full_b64,
        }
        with open(a.out, "w") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
