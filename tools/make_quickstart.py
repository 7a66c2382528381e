#!/usr/bin/env python3
"""tools/make_quickstart.py: the bundled quickstart task and tokenizer.

Task: multi-step integer arithmetic ("31+8-17"), answered as
"<answer>22</answer>". Writes into data/quickstart/:
  train.jsonl  RL prompts (messages ending with the user turn; field answer)
  valid.jsonl  held-out prompts (disjoint expressions)
  sft.jsonl    warm-start demonstrations (messages ending with the answer)
  tokenizer.json, tokenizer_config.json  a small byte-level BPE (HF tokenizers)
    trained on the task's text, ChatML special tokens.
The warm-start policy itself is then made by rft (tools/make_quickstart.sh):
rft init + rft train with algorithm sft.
"""
import json, os, random, sys

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "quickstart")


def expr(rng, n_terms):
    nums = [rng.randint(1, 40) for _ in range(n_terms)]
    ops = [rng.choice("+-") for _ in range(n_terms - 1)]
    s = str(nums[0])
    v = nums[0]
    for o, x in zip(ops, nums[1:]):
        s += o + str(x)
        v = v + x if o == "+" else v - x
    return s, v


def row(e, v, with_answer):
    msgs = [{"role": "user", "content": e}]
    if with_answer:
        msgs.append({"role": "assistant", "content": f"<answer>{v}</answer>"})
    return {"messages": msgs, "answer": str(v)}


def main():
    rng = random.Random(1234)
    seen = set()
    items = []
    while len(items) < 3400:
        e, v = expr(rng, rng.choice([2, 3, 3, 4]))
        if e in seen:
            continue
        seen.add(e)
        items.append((e, v))
    valid, train, sft = items[:200], items[200:600], items[600:]
    os.makedirs(OUT, exist_ok=True)
    for name, rows, ans in (("valid", valid, False), ("train", train, False), ("sft", sft, True)):
        with open(os.path.join(OUT, name + ".jsonl"), "w") as f:
            for e, v in rows:
                f.write(json.dumps(row(e, v, ans)) + "\n")
    # a small byte-level BPE over the task's chat-formatted text
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = [f"<|im_start|>user\n{e}<|im_end|>\n<|im_start|>assistant\n<answer>{v}</answer><|im_end|>\n"
              for e, v in items]
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
              "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "add_bos_token": False, "chat_template": chatml}, f, indent=1)
    print(f"{OUT}: {len(train)} train, {len(valid)} valid, {len(sft)} sft rows; vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    sys.exit(main())
