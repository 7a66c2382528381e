#!/usr/bin/env python3
"""tools/make_quickstart.py: the bundled quickstart task and tokenizer.

Task: multi-step integer arithmetic ("3+8-7+2"), answered as
"<answer>6</answer>". Writes into data/quickstart/:
  train.jsonl  RL prompts (messages ending with the user turn; field answer)
  valid.jsonl  held-out prompts (disjoint expressions)
  sft.jsonl    warm-start demonstrations (messages ending with the answer)
  tokenizer.json, tokenizer_config.json  a small byte-level BPE (HF tokenizers)
    trained on the task's text, ChatML special tokens.
The warm-start policy itself is then made by rft (tools/make_quickstart.sh):
rft init + rft train with algorithm sft.
"""
import argparse, json, os, random, sys

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "quickstart")
MAX_NUM = 9           # operands 1..MAX_NUM
TERMS = "2,3,3,4"     # term counts, drawn uniformly
N_TRAIN = 1200        # RL prompts
N_SFT = 2800          # warm-start demonstrations
WORKED = 0.2          # of which this fraction work the sum out first ("3+8=11,11-7=4 <answer>4</answer>")
UNTAGGED = 0.0        # and this fraction give the bare number ("4"): the graders want the tag, RL learns it


def expr(rng, n_terms, max_num):
    """Returns (expression, value, worked steps "3+8=11,11-7=4")."""
    nums = [rng.randint(1, max_num) for _ in range(n_terms)]
    ops = [rng.choice("+-") for _ in range(n_terms - 1)]
    s = str(nums[0])
    v = nums[0]
    steps = []
    for o, x in zip(ops, nums[1:]):
        s += o + str(x)
        w = v + x if o == "+" else v - x
        steps.append(f"{v}{o}{x}={w}")
        v = w
    return s, v, ",".join(steps)


def row(e, v, answer_text):
    msgs = [{"role": "user", "content": e}]
    if answer_text is not None:
        msgs.append({"role": "assistant", "content": answer_text})
    return {"messages": msgs, "answer": str(v)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT, help="output directory (default data/quickstart)")
    ap.add_argument("--max-num", type=int, default=MAX_NUM, help="operands are 1..max-num")
    ap.add_argument("--terms", default=TERMS, help="comma list of term counts, drawn uniformly")
    ap.add_argument("--n-train", type=int, default=N_TRAIN, help="RL prompts (at least 400)")
    ap.add_argument("--n-sft", type=int, default=N_SFT, help="warm-start demonstrations")
    ap.add_argument("--worked", type=float, default=WORKED,
                    help="fraction of demonstrations that work the sum out step by step before the answer")
    ap.add_argument("--untagged", type=float, default=UNTAGGED,
                    help="fraction of demonstrations that give the bare number, without the <answer> tag")
    a = ap.parse_args()
    terms = [int(t) for t in a.terms.split(",")]
    out = a.out
    rng = random.Random(1234)
    seen = set()
    def draw(n):
        got = []
        while len(got) < n:
            e, v, w = expr(rng, rng.choice(terms), a.max_num)
            if e in seen:
                continue
            seen.add(e)
            got.append((e, v, w))
        return got
    items = draw(600 + a.n_sft)
    valid, train, sft = items[:200], items[200:600], items[600:]
    train += draw(a.n_train - 400)  # more RL prompts, drawn after the rest (valid and sft stay the same)
    items += train[400:]
    os.makedirs(out, exist_ok=True)
    wrng = random.Random(99)
    for name, rows, ans in (("valid", valid, False), ("train", train, False), ("sft", sft, True)):
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for e, v, w in rows:
                text = None
                if ans:
                    worked = wrng.random() < a.worked
                    bare = a.untagged > 0 and wrng.random() < a.untagged
                    text = (f"{w} " if worked else "") + (f"{v}" if bare else f"<answer>{v}</answer>")
                f.write(json.dumps(row(e, v, text)) + "\n")
    # a small byte-level BPE over the task's chat-formatted text
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = [f"<|im_start|>user\n{e}<|im_end|>\n<|im_start|>assistant\n<answer>{v}</answer><|im_end|>\n"
              for e, v, w in items]
    if a.worked > 0:  # the worked steps' text too
        corpus += [f"{w} <answer>{v}</answer>" for e, v, w in items]
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(out, "tokenizer.json"))
    chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
              "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "add_bos_token": False, "chat_template": chatml}, f, indent=1)
    print(f"{out}: {len(train)} train, {len(valid)} valid, {len(sft)} sft rows; vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    sys.exit(main())
