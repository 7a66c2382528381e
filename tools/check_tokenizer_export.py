#!/usr/bin/env python3
"""tools/check_tokenizer_export.py: loads a directory written by rft (tokenizer.json +
tokenizer_config.json) with transformers' AutoTokenizer and compares its ids and
apply_chat_template output with the committed reference fixtures.

  python3 tools/check_tokenizer_export.py DIR --fixture smollm|gpt2|llama3|qwen2|real

  smollm..qwen2: DIR holds an export of tests/fixtures/tok_<name>.json;
  real: DIR holds an export of the real SmolLM2-135M-Instruct tokenizer
        (tests/fixtures/tok_smollm2_real.jsonl, ids and chat conversations).
Exit 0 when every string and conversation matches. Needs: pip install transformers jinja2
"""
import argparse
import json
import os
import sys

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--fixture", required=True, choices=["smollm", "gpt2", "llama3", "qwen2", "real"])
    a = ap.parse_args()
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(a.dir)
    if a.fixture == "real":
        rows = [json.loads(l) for l in open(os.path.join(FIX, "tok_smollm2_real.jsonl"))]
    else:
        rows = [json.loads(l) for l in open(os.path.join(FIX, "tok_cases.jsonl"))]
        rows += [r | {"chat": True} for r in map(json.loads, open(os.path.join(FIX, "tok_chat.jsonl")))
                 if r["tokenizer"] == a.fixture]
    bad = n = 0
    for row in rows:
        n += 1
        if row.get("chat"):
            ids = tk.apply_chat_template(row["messages"], tokenize=True,
                                         add_generation_prompt=row["add_generation_prompt"])
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            want = row["ids"]
        else:
            ids = tk.encode(row["text"], add_special_tokens=False)
            want = row["ids"] if a.fixture == "real" else row["ids"][a.fixture]
        if list(ids) != want:
            bad += 1
            if bad <= 5:
                print("MISMATCH", repr(row.get("text", row.get("messages")))[:100], file=sys.stderr)
    print(f"{a.dir}: {n - bad}/{n} identical ({type(tk).__name__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
