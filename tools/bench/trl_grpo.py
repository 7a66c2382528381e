#!/usr/bin/env python3
"""tools/bench/trl_grpo.py: the TRL side of the rft-vs-TRL GRPO benchmark
(tools/bench/run_trl_bench.sh drives it; results in docs/bench_trl.md).

Subcommands:
  train   N steps of TRL's GRPOTrainer (PyTorch CPU, fp32) on a Hugging Face
          export of the rft policy (`rft convert X.h5 DIR`), with the
          hyperparameters, graders and reward weights read from the same rft
          YAML config, and the prompts of each step taken in the order rft
          used (from rft's samples.jsonl). Times every optimizer step (wall,
          user and system CPU) and saves the policy every --save-every steps.
  eval    greedy evaluation of Hugging Face model directories with
          transformers generate() on the first --rows valid rows, graded by
          the Python graders below (the rft side is `rft eval`).
  parity  checks that the export is the same model under both programs:
          greedy tokens and their log-probs from `rft sample` against the
          same prompts run through transformers with the chat template.
  rftrun  runs `rft train` and records the user/system CPU time of each step
          (from /proc/PID/stat when each metrics.jsonl record appears).

The graders re-implement rft's built-ins exactly for the configs this bench
supports (the same definitions as tools/ref_graders.py, the conformance
reference of graders/builtin/):
  numeric  extract tag:NAME / last / first: the last (first) number inside
           the last <NAME>...</NAME>; equal to the reference's last number
           (math.isclose, rel_tol 1e-9, abs_tol 0) -> 1.0, else 0.0
  regex    re.search(pattern, text) -> 1.0, else 0.0 (Python's re and PCRE2
           agree on the patterns used here: ^, $, classes, quantifiers)
reward = sum of weight * score (reward.weights).
"""
import argparse, json, math, os, re, resource, subprocess, sys, time

import yaml

# ----------------------------------------------------------------- config


def load_rft_config(path, overrides=()):
    """The subset of an rft YAML config the bench maps to TRL, with rft's
    defaults (rft train --help-config) and its per-algorithm 'auto' values
    (docs/algorithms.md)."""
    with open(path) as f:
        c = yaml.safe_load(f)
    for kv in overrides:
        k, v = kv.split("=", 1)
        sec, key = k.split(".", 1) if "." in k else (None, k)
        d = c.setdefault(sec, {}) if sec else c
        d[key] = yaml.safe_load(v)
    s, a, t = c.get("sampling", {}), c.get("algorithm", {}), c.get("train", {})
    algo = a.get("name", "grpo")
    auto_scale = {"grpo": "group", "dr_grpo": "none", "dapo": "group", "gspo": "group"}
    auto_agg = {"grpo": "seq_mean", "dr_grpo": "seq_sum_norm", "dapo": "token_mean", "gspo": "seq_mean"}
    if algo not in auto_scale:
        sys.exit(f"trl_grpo.py: {path}: algorithm.name {algo}: the bench maps grpo, dr_grpo, dapo, gspo only")
    eps_low = float(a.get("eps_low", 0.2))
    eps_high = a.get("eps_high", "auto")
    eps_high = (0.28 if algo == "dapo" else eps_low) if eps_high == "auto" else float(eps_high)
    scale = a.get("scale_rewards", "auto")
    agg = a.get("loss_agg", "auto")
    cfg = {
        "algo": algo,
        "group_size": int(s.get("group_size", 8)),
        "max_new_tokens": int(s.get("max_new_tokens", 128)),
        "temperature": float(s.get("temperature", 1.0)),
        "top_p": float(s.get("top_p", 1.0)),
        "top_k": int(s.get("top_k", 0)),
        "min_p": float(s.get("min_p", 0.0)),
        "scale_rewards": auto_scale[algo] if scale == "auto" else scale,
        "loss_agg": auto_agg[algo] if agg == "auto" else agg,
        "eps_low": eps_low, "eps_high": eps_high,
        "kl_beta": float(a.get("kl_beta", 0.0)),
        "batch_size": int(t.get("batch_size", 8)),
        "learning_rate": float(t.get("learning_rate", 1e-5)),
        "lr_schedule": t.get("lr_schedule", "constant"),
        "warmup_steps": int(t.get("warmup_steps", 0)),
        "weight_decay": float(t.get("weight_decay", 0.0)),
        "beta1": float(t.get("beta1", 0.9)), "beta2": float(t.get("beta2", 0.999)),
        "adam_eps": float(t.get("adam_eps", 1e-8)),
        "grad_clip": float(t.get("grad_clip", 1.0)),
        "seed": int(t.get("seed", 0)),
        "graders": c.get("graders", {}),
        "weights": c.get("reward", {}).get("weights"),
    }
    for k, dflt in [("ppo_epochs", 1), ("mini_batches", 1), ("entropy_coef", 0.0), ("overlong_buffer", 0)]:
        if a.get(k, dflt) != dflt:
            sys.exit(f"trl_grpo.py: {path}: algorithm.{k} is not mapped by this bench (keep {dflt})")
    for k in ("dynamic_sampling", "mask_truncated"):
        if a.get(k) not in (None, False, "auto") or (k == "dynamic_sampling" and algo == "dapo" and a.get(k) != False):
            sys.exit(f"trl_grpo.py: {path}: algorithm.{k} is not mapped by this bench")
    if s.get("stop"):
        sys.exit(f"trl_grpo.py: {path}: sampling.stop strings are not mapped by this bench")
    if cfg["weights"] is None:
        sys.exit(f"trl_grpo.py: {path}: the bench needs reward.weights (a formula is not mapped)")
    return cfg


# ----------------------------------------------------------------- graders
# numbers: the expression of graders/builtin/numeric.c (tools/ref_graders.py)
NU_MANT = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+"
NU_RE = re.compile(
    r"\\[dt]?frac\{\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*\}\{\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*\}"
    r"|((?:(?<![A-Za-z0-9.])[-+\u2212])?(?:" + NU_MANT + r")(?:[eE][-+]?[0-9]+)?)(?:/(" + NU_MANT + r"))?")


def _nu_val(t):
    return float(t.replace(",", "").replace("\u2212", "-"))


def numbers(t):
    out = []
    for m in NU_RE.finditer(t):
        if m.group(1) is not None:
            a, b = _nu_val(m.group(1)), _nu_val(m.group(2))
            v = a / b if b != 0 else math.nan
        else:
            v = _nu_val(m.group(3))
            if m.group(4) is not None:
                d = _nu_val(m.group(4))
                v = v / d if d != 0 else math.nan
        if math.isfinite(v):
            out.append(v)
    return out


def expand(tmpl, text, row):
    """{{sample.output_text}} and {{item.FIELD}} (top-level fields only)."""
    def sub(m):
        k = m.group(1).strip()
        if k == "sample.output_text":
            return text
        if k.startswith("item."):
            v = row[k[5:]]
            return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        raise ValueError(f"template {k} is not supported by the bench")
    return re.sub(r"\{\{([^}]*)\}\}", sub, tmpl)


def make_grader(name, g):
    kind = g.get("type")
    if kind == "numeric":
        ex = g.get("extract", "last")
        if "pattern" in g or not (ex in ("last", "first") or ex.startswith("tag:")):
            sys.exit(f"trl_grpo.py: grader {name}: numeric extract {ex} / pattern is not mapped by this bench")
        rel, ab = float(g.get("rel_tol", 1e-9)), float(g.get("abs_tol", 0.0))

        def grade(text, row):
            x_in, ref = expand(g["input"], text, row), expand(g["reference"], text, row)
            rn = numbers(ref)
            if not rn:
                raise ValueError(f"grader {name}: reference without a number: {ref!r}")
            if ex.startswith("tag:"):
                op, cl = "<%s>" % ex[4:], "</%s>" % ex[4:]
                c = x_in.rfind(cl)
                o = x_in.rfind(op, 0, c) if c >= 0 else -1
                if o < 0:
                    return 0.0
                x_in = x_in[o + len(op):c]
            xs = numbers(x_in)
            if not xs:
                return 0.0
            x = xs[0] if ex == "first" else xs[-1]
            return float(math.isclose(x, rn[-1], rel_tol=rel, abs_tol=ab))
        return grade
    if kind == "regex":
        extra = set(g) - {"type", "input", "pattern", "match"}
        if extra:
            sys.exit(f"trl_grpo.py: grader {name}: regex keys {sorted(extra)} are not mapped by this bench")
        rx = re.compile(g["pattern"])
        full = g.get("match", "search") == "full"

        def grade(text, row):
            s = expand(g["input"], text, row)
            return float(bool(rx.fullmatch(s) if full else rx.search(s)))
        return grade
    sys.exit(f"trl_grpo.py: grader {name}: type {kind} is not mapped by this bench (numeric, regex)")


def make_graders(cfg):
    gs = {n: make_grader(n, g) for n, g in cfg["graders"].items()}
    w = {n: float(x) for n, x in cfg["weights"].items() if float(x) != 0}
    for n in w:
        if n not in gs:
            sys.exit(f"trl_grpo.py: reward.weights names unknown grader {n}")
    return gs, w


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def completion_text(c):
    """TRL passes conversational completions as [{'role': 'assistant', 'content': ...}]."""
    return c[0]["content"] if isinstance(c, list) else c


# ----------------------------------------------------------------- torch setup


def torch_setup(threads):
    import torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    return torch


def load_model(torch, path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    # rft stops at the end-of-turn token and <|endoftext|> (chat_stop_tokens)
    stops = [model.config.eos_token_id] if isinstance(model.config.eos_token_id, int) else list(model.config.eos_token_id)
    for s in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"):
        i = tok.convert_tokens_to_ids(s)
        if i is not None and i != tok.unk_token_id and i not in stops and s in tok.all_special_tokens + list(tok.added_tokens_encoder):
            stops.append(i)
    model.generation_config.eos_token_id = stops
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, stops


# ----------------------------------------------------------------- eval


def greedy_eval(torch, model, tok, stops, rows, max_new, graders, weights, batch=50):
    """Greedy completions of rows (chat template, generation prompt), graded."""
    tok.padding_side = "left"
    model.eval()
    texts = []
    lens = []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        enc = tok.apply_chat_template([r["messages"] for r in chunk], add_generation_prompt=True, tokenize=True,
                                      return_dict=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False,
                                 max_new_tokens=max_new, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        comp = out[:, enc["input_ids"].shape[1]:].tolist()
        for c in comp:
            n = len(c)
            for j, t in enumerate(c):
                if t in stops:
                    n = j + 1
                    break
            lens.append(n)
            texts.append(tok.decode(c[:n], skip_special_tokens=True))
    per = {n: [] for n in graders}
    rew = []
    for t, r in zip(texts, rows):
        s = {n: g(t, r) for n, g in graders.items()}
        for n in graders:
            per[n].append(s[n])
        rew.append(sum(weights.get(n, 0.0) * s[n] for n in graders))
    return {"rows": len(rows), "reward_mean": sum(rew) / len(rew),
            "graders": {n: sum(v) / len(v) for n, v in per.items()},
            "mean_length": sum(lens) / len(lens), "completions": texts}


def cmd_eval(a):
    torch = torch_setup(a.threads)
    cfg = load_rft_config(a.config, a.set)
    graders, weights = make_graders(cfg)
    rows = read_jsonl(a.valid)[:a.rows] if a.rows > 0 else read_jsonl(a.valid)
    res = {}
    for d in a.models:
        model, tok, stops = load_model(torch, d)
        t0 = time.perf_counter()
        r = greedy_eval(torch, model, tok, stops, rows, cfg["max_new_tokens"], graders, weights)
        r["seconds"] = time.perf_counter() - t0
        if not a.keep_completions:
            r.pop("completions")
        res[d] = r
        print(f"{d}: valid reward {r['reward_mean']:.4f} " +
              " ".join(f"{n} {v:.3f}" for n, v in r["graders"].items()), file=sys.stderr)
    json.dump(res, open(a.json, "w") if a.json else sys.stdout, indent=1)


# ----------------------------------------------------------------- parity


def cmd_parity(a):
    torch = torch_setup(a.threads)
    model, tok, stops = load_model(torch, a.hf)
    model.eval()
    rows = read_jsonl(a.valid)[:a.n]
    worst, same = 0.0, 0
    for r in rows:
        prompt = r["messages"][-1]["content"]
        p = subprocess.run([a.rft, "sample", "--model", a.policy, "--prompt", prompt, "--temperature", "0", "--json",
                            "--max-new-tokens", str(a.max_new_tokens), "--threads", "1"],
                           capture_output=True, text=True, check=True)
        o = json.loads(p.stdout.splitlines()[0])
        ids = tok.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        x = torch.tensor([list(ids) + o["tokens"]])
        with torch.no_grad():
            lp = torch.log_softmax(model(x).logits[0].float(), -1)
        n0 = len(ids)
        hf_greedy = [int(lp[n0 - 1 + j].argmax()) for j in range(len(o["tokens"]))]
        hf_lp = [float(lp[n0 - 1 + j, t]) for j, t in enumerate(o["tokens"])]
        same += hf_greedy == o["tokens"]
        worst = max(worst, max(abs(u - v) for u, v in zip(hf_lp, o["logprobs"])))
    print(f"parity: {same}/{len(rows)} prompts with rft's greedy tokens = transformers' argmax at every position; "
          f"max |logprob difference| {worst:.2e}")
    if same != len(rows) or worst > 1e-3:
        sys.exit("parity: the export does not behave like the rft policy")


# ----------------------------------------------------------------- rft run with CPU accounting


def proc_cpu(pid):
    """(user, system) CPU seconds of a live process, all its threads, plus its
    live descendants (rft's grader worker processes) and the children it
    has reaped (cutime, cstime)."""
    tree = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        x = s[s.rindex(")") + 2:].split()
        tree[int(d)] = (int(x[1]), int(x[11]), int(x[12]), int(x[13]), int(x[14]))
    if pid not in tree:
        raise ProcessLookupError(pid)
    u, y = tree[pid][1] + tree[pid][3], tree[pid][2] + tree[pid][4]
    todo = [pid]
    while todo:
        q = todo.pop()
        for c, v in tree.items():
            if v[0] == q:
                u, y = u + v[1], y + v[2]
                todo.append(c)
    tck = os.sysconf("SC_CLK_TCK")
    return u / tck, y / tck


def cmd_rftrun(a):
    metrics = os.path.join(a.out_dir, "metrics.jsonl")
    if os.path.exists(metrics):
        os.unlink(metrics)
    cmd = a.cmd
    t0 = time.perf_counter()
    log = open(os.path.join(os.path.dirname(a.json) or ".", "rft_train.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    steps, seen, last = {}, 0, None
    while True:
        done = p.poll() is not None
        try:
            with open(metrics) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            lines = []
        full = [l for l in lines[:-1] if l.strip()]
        if len(full) > seen:
            try:
                cpu = proc_cpu(p.pid) if not done else None
            except (FileNotFoundError, ProcessLookupError):
                cpu = None
            now = time.perf_counter()
            for l in full[seen:]:
                rec = json.loads(l)
                steps[rec["step"]] = {"cpu": cpu, "t": now, "rec": rec}
            seen = len(full)
        if done:
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"rftrun: {' '.join(cmd)} exited {p.returncode}")
    out = []
    ks = sorted(steps)
    for i, k in enumerate(ks):
        if k == 0 or i == 0:
            continue
        prev, cur = steps[ks[i - 1]], steps[k]
        rec = cur["rec"]
        d = {"step": k, "wall": rec["timing/step"] - rec.get("timing/eval", 0.0), "reward": rec.get("reward"),
             "rewards": {x.split("/")[1]: v for x, v in rec.items() if x.startswith("rewards/")},
             "mean_length": rec.get("completions/mean_length"),
             "timing": {x: v for x, v in rec.items() if x.startswith("timing/")}}
        # CPU of a step: between the records of the previous and this step,
        # exact only when the poller caught both records before the next one
        if prev["cpu"] and cur["cpu"] and "timing/eval" not in rec:
            d["user"] = cur["cpu"][0] - prev["cpu"][0]
            d["sys"] = cur["cpu"][1] - prev["cpu"][1]
        out.append(d)
    res = {"cmd": cmd, "wall_total": wall, "user_total": ru.ru_utime, "sys_total": ru.ru_stime, "steps": out,
           "valid": {k: v["rec"].get("valid_reward_mean") for k, v in steps.items() if "valid_reward_mean" in v["rec"]}}
    json.dump(res, open(a.json, "w"), indent=1)


# ----------------------------------------------------------------- train


def rft_order(samples_path, G, B, steps):
    """The train rows of each step, in rft's order, from samples.jsonl
    written with train.log_samples >= batch_size * group_size."""
    per = {}
    for rec in read_jsonl(samples_path):
        per.setdefault(rec["step"], []).append(rec["row"])
    order = []
    for s in range(1, steps + 1):
        rows = per.get(s, [])
        if len(rows) < B * G:
            sys.exit(f"train: {samples_path}: step {s} has {len(rows)} samples, need {B * G} "
                     "(run rft with --set train.log_samples={B * G})")
        order += rows[::G][:B]
    return order


def cmd_train(a):
    torch = torch_setup(a.threads)
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cfg = load_rft_config(a.config, a.set)
    graders, weights = make_graders(cfg)
    B, G = cfg["batch_size"], cfg["group_size"]
    train = read_jsonl(a.train)
    order = rft_order(a.order, G, B, a.steps) if a.order else None
    rows = [train[i] for i in order] if order else train
    ds = Dataset.from_list([{"prompt": r["messages"], "row": r} for r in rows])

    names = list(graders)

    def make_rf(n):
        g = graders[n]

        def rf(prompts, completions, row, **kw):
            return [g(completion_text(c), r) for c, r in zip(completions, row)]
        rf.__name__ = n
        return rf

    loss_type = {"seq_mean": "grpo", "token_mean": "bnpo", "seq_sum_norm": "dr_grpo"}[cfg["loss_agg"]]
    if cfg["lr_schedule"] != "constant":
        sys.exit("train: only lr_schedule constant is mapped (rft decays over its whole run, TRL over max_steps)")
    args = GRPOConfig(
        output_dir=a.out,
        use_cpu=True, bf16=False, fp16=False, report_to="none", logging_steps=1, save_strategy="no",
        max_steps=a.steps, per_device_train_batch_size=B * G, gradient_accumulation_steps=1,
        num_generations=G, generation_batch_size=B * G, num_iterations=1,
        max_completion_length=cfg["max_new_tokens"], temperature=cfg["temperature"], top_p=cfg["top_p"],
        top_k=cfg["top_k"], min_p=cfg["min_p"] or None,
        beta=cfg["kl_beta"], epsilon=cfg["eps_low"], epsilon_high=cfg["eps_high"], loss_type=loss_type,
        scale_rewards=cfg["scale_rewards"], mask_truncated_completions=False,
        learning_rate=cfg["learning_rate"], lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch", adam_beta1=cfg["beta1"], adam_beta2=cfg["beta2"], adam_epsilon=cfg["adam_eps"],
        weight_decay=cfg["weight_decay"], max_grad_norm=cfg["grad_clip"] if cfg["grad_clip"] > 0 else None,
        reward_weights=[weights.get(n, 0.0) for n in names], seed=a.seed, data_seed=a.seed,
        shuffle_dataset=order is None, dataloader_num_workers=0, disable_dropout=True, log_completions=False,
        remove_unused_columns=False,
    )
    model, tok, stops = load_model(torch, a.hf)

    timings = []
    hist = []
    # TRL times its phases with profiling_context (generate, reward functions,
    # ...) but only reports them to wandb/mlflow/trackio: collect them per step
    import trl.extras.profiling as prof
    phase = {}
    def keep(self, duration):
        phase[self.name] = phase.get(self.name, 0.0) + duration
    prof.ProfilingContext._log_metrics = keep

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            phase.clear()
            self.t, self.c = time.perf_counter(), os.times()

        def on_step_end(self, args, state, control, **kw):
            c = os.times()
            timings.append({"step": state.global_step, "wall": time.perf_counter() - self.t,
                            "user": c.user - self.c.user, "sys": c.system - self.c.system, "phases": dict(phase)})
            phase.clear()

    class Saver(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if a.save_every and state.global_step % a.save_every == 0:
                d = os.path.join(a.out, f"step-{state.global_step:06d}")
                model.save_pretrained(d, safe_serialization=True)
                tok.save_pretrained(d)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                hist.append({"step": state.global_step, **logs})

    # The optimizer and schedule as rft's (trainer/optim.c): AdamW with decoupled
    # weight decay on matrices only; linear warm-up lr * min(1, k / warmup) at
    # optimizer step k = 1, 2, ... (HF's constant_with_warmup gives (k - 1) / warmup).
    mats = [p for p in model.parameters() if p.ndim >= 2]
    vecs = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": mats, "weight_decay": cfg["weight_decay"]},
                             {"params": vecs, "weight_decay": 0.0}], lr=cfg["learning_rate"],
                            betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["adam_eps"], foreach=False)
    W = cfg["warmup_steps"]
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / W) if W > 0 else 1.0)
    trainer = GRPOTrainer(model=model, reward_funcs=[make_rf(n) for n in names], args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[Timer(), Saver()], optimizers=(opt, sch))
    if a.save_every:
        d = os.path.join(a.out, "step-000000")
        model.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
    t0, c0 = time.perf_counter(), os.times()
    trainer.train()
    c1 = os.times()
    res = {"threads": a.threads, "torch_threads": torch.get_num_threads(), "steps": [], "wall_total": time.perf_counter() - t0,
           "user_total": c1.user - c0.user, "sys_total": c1.system - c0.system,
           "grpo_config": {k: getattr(args, k) for k in (
               "per_device_train_batch_size", "num_generations", "generation_batch_size", "steps_per_generation",
               "max_completion_length", "temperature", "top_p", "top_k", "beta", "epsilon", "epsilon_high",
               "loss_type", "scale_rewards", "learning_rate", "lr_scheduler_type", "adam_beta1", "adam_beta2",
               "adam_epsilon", "weight_decay", "max_grad_norm", "reward_weights", "num_iterations", "seed")}}
    res["grpo_config"]["optim"] = str(args.optim)
    for t in timings:
        h = next((x for x in hist if x["step"] == t["step"]), {})
        t["reward"] = h.get("reward")
        t["rewards"] = {n: h.get(f"rewards/{n}/mean") for n in names}
        t["mean_length"] = h.get("completions/mean_length")
        res["steps"].append(t)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1, default=str)


# ----------------------------------------------------------------- report


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return float("nan") if n == 0 else (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def cmd_report(a):
    """Markdown summary of one bench directory (run_trl_bench.sh's OUT)."""
    o = a.out
    rr = json.load(open(os.path.join(o, "rft_run.json")))
    tr = json.load(open(os.path.join(o, "trl_run.json")))
    pe = json.load(open(os.path.join(o, "eval_python.json")))
    re_ = {}
    for l in open(os.path.join(o, "eval_rft.jsonl")):
        if l.strip():
            d = json.loads(l)
            re_[d["tag"]] = d
    def stats(steps):
        s = [x for x in steps if x["step"] > 1]
        w = median([x["wall"] for x in s])
        u = median([x["user"] for x in s if x.get("user") is not None])
        us = median([x["user"] + x["sys"] for x in s if x.get("user") is not None])
        return w, u, us, len(s)
    rw, ru, rus, rn = stats(rr["steps"])
    tw, tu, tus, tn = stats(tr["steps"])
    out = []
    P = out.append
    P("| seconds per step (median, steps 2..N) | rft | TRL | TRL / rft |")
    P("|---|---|---|---|")
    P(f"| wall | {rw:.3f} | {tw:.3f} | {tw / rw:.2f}x |")
    P(f"| user CPU | {ru:.3f} | {tu:.3f} | {tu / ru:.2f}x |")
    P(f"| user + system CPU | {rus:.3f} | {tus:.3f} | {tus / rus:.2f}x |")
    P("")
    def ph(steps, key):
        v = [x[key] for x in steps if x["step"] > 1 and x.get(key) is not None]
        return median(v)
    rs = [dict(step=x["step"], **x["timing"]) for x in rr["steps"]]
    ts = [dict(step=x["step"], gen=x.get("phases", {}).get("GRPOTrainer.transformers.generate"),
               rew=x.get("phases", {}).get("GRPOTrainer._calculate_rewards"),
               rest=x["wall"] - x.get("phases", {}).get("GRPOTrainer.transformers.generate", math.nan)
               - x.get("phases", {}).get("GRPOTrainer._calculate_rewards", math.nan)) for x in tr["steps"]]
    P("| wall seconds per phase (median) | rft | TRL |")
    P("|---|---|---|")
    P(f"| sampling (rft rollout / TRL transformers.generate) | {ph(rs, 'timing/sampling'):.3f} | {ph(ts, 'gen'):.3f} |")
    P(f"| grading | {ph(rs, 'timing/grading'):.3f} | {ph(ts, 'rew'):.3f} |")
    P(f"| rest: advantages, forward, backward, optimizer | {ph(rs, 'timing/training'):.3f} | {ph(ts, 'rest'):.3f} |")
    P("")
    P(f"Whole training run (incl. start-up, rft's start/end evals): rft {rr['wall_total']:.1f} s wall, "
      f"{rr['user_total']:.1f} s user CPU; TRL trainer.train() {tr['wall_total']:.1f} s wall, "
      f"{tr['user_total']:.1f} s user CPU.")
    P("")
    steps = sorted({int(k.split("-")[1]) for k in pe if "step-" in k})
    P("| step | rft: rft eval | rft: Python eval | TRL: rft eval | TRL: Python eval | rft correct | TRL correct |")
    P("|---|---|---|---|---|---|---|")
    def pick(prefix, st):
        k = next((k for k in pe if k.rstrip("/").endswith(f"{prefix}/step-{st:06d}")), None)
        return pe.get(k) if k else None
    for st in steps:
        rp, tp = pick("rft_hf", st), pick("trl", st)
        rre, tre = re_.get(f"rft/{st}"), re_.get(f"trl/{st}")
        f = lambda d, key="reward_mean": "-" if d is None else f"{d[key]:.3f}"
        g = lambda d: "-" if d is None else f"{d['graders']['correct']['mean'] if isinstance(d['graders']['correct'], dict) else d['graders']['correct']:.3f}"
        P(f"| {st} | {f(rre)} | {f(rp)} | {f(tre)} | {f(tp)} | {g(rre)} | {g(tre)} |")
    P("")
    P("Train reward per step (mean over the step's completions; the same prompts in both):")
    P("")
    P("| step | " + " | ".join(str(x["step"]) for x in rr["steps"]) + " |")
    P("|---|" + "---|" * len(rr["steps"]))
    P("| rft | " + " | ".join(f"{x['reward']:.3f}" for x in rr["steps"]) + " |")
    P("| TRL | " + " | ".join(f"{x['reward']:.3f}" for x in tr["steps"]) + " |")
    P("| rft length | " + " | ".join(f"{x['mean_length']:.1f}" for x in rr["steps"]) + " |")
    P("| TRL length | " + " | ".join(f"{x['mean_length']:.1f}" for x in tr["steps"]) + " |")
    print("\n".join(out))
    summ = {"rft": {"wall": rw, "user": ru, "user_sys": rus}, "trl": {"wall": tw, "user": tu, "user_sys": tus},
            "ratio": {"wall": tw / rw, "user": tu / ru, "user_sys": tus / rus}}
    json.dump(summ, open(os.path.join(o, "summary.json"), "w"), indent=1)


def cmd_summary(a):
    """One table over several bench directories (seeds): per-step seconds and
    the greedy valid reward (rft eval) of both sides at each saved step."""
    rows = []
    for o in a.dirs:
        sm = json.load(open(os.path.join(o, "summary.json")))
        ev = {}
        for l in open(os.path.join(o, "eval_rft.jsonl")):
            if l.strip():
                d = json.loads(l)
                ev[d["tag"]] = d["reward_mean"]
        pe = json.load(open(os.path.join(o, "eval_python.json")))
        agree = all(abs(ev.get(("rft/" if "/rft_hf/" in k else "trl/") + str(int(k.rsplit("-", 1)[1]))) - v["reward_mean"]) < 1e-9
                    for k, v in pe.items())
        rows.append((o, sm, ev, agree))
    P = print
    P("| run | rft s/step wall | TRL s/step wall | ratio | rft user CPU | TRL user CPU | ratio | rft user+sys | TRL user+sys | ratio |")
    P("|---|---|---|---|---|---|---|---|---|---|")
    for o, sm, ev, agree in rows:
        r, t, q = sm["rft"], sm["trl"], sm["ratio"]
        P(f"| {os.path.basename(o.rstrip('/'))} | {r['wall']:.3f} | {t['wall']:.3f} | {q['wall']:.2f}x | {r['user']:.3f} | "
          f"{t['user']:.3f} | {q['user']:.2f}x | {r['user_sys']:.3f} | {t['user_sys']:.3f} | {q['user_sys']:.2f}x |")
    P("")
    steps = sorted({int(k.split("/")[1]) for _, _, ev, _ in rows for k in ev})
    P("| valid reward (greedy, rft eval) at step | " + " | ".join(str(x) for x in steps) + " |")
    P("|---|" + "---|" * len(steps))
    for side in ("rft", "trl"):
        for o, _, ev, _ in rows:
            P(f"| {side.upper() if side == 'trl' else side} {os.path.basename(o.rstrip('/'))} | " +
              " | ".join(f"{ev.get(f'{side}/{x}', float('nan')):.3f}" for x in steps) + " |")
        m = [sum(ev.get(f"{side}/{x}", float("nan")) for _, _, ev, _ in rows) / len(rows) for x in steps]
        P(f"| {side.upper() if side == 'trl' else side} mean | " + " | ".join(f"{v:.3f}" for v in m) + " |")
    P("")
    P("Python evaluator = rft eval on every model of every run: " + ("yes" if all(x[3] for x in rows) else "NO"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="sub", required=True)
    t = sp.add_parser("train")
    t.add_argument("--hf", required=True, help="Hugging Face directory (rft convert POLICY.h5 DIR)")
    t.add_argument("--config", required=True, help="the rft YAML config whose hyperparameters are mapped")
    t.add_argument("--set", action="append", default=[], help="section.key=value, as rft --set")
    t.add_argument("--train", required=True)
    t.add_argument("--order", help="rft's samples.jsonl: use the prompts of each step in rft's order")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=0)
    t.add_argument("--out", required=True)
    t.add_argument("--json", required=True)
    e = sp.add_parser("eval")
    e.add_argument("--config", required=True)
    e.add_argument("--set", action="append", default=[])
    e.add_argument("--valid", required=True)
    e.add_argument("--rows", type=int, default=200)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--keep-completions", action="store_true")
    e.add_argument("--json")
    e.add_argument("models", nargs="+")
    p = sp.add_parser("parity")
    p.add_argument("--hf", required=True)
    p.add_argument("--policy", required=True)
    p.add_argument("--rft", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    r = sp.add_parser("rftrun")
    r.add_argument("--out-dir", required=True, help="the run's train.out_dir")
    r.add_argument("--json", required=True)
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    q = sp.add_parser("report")
    q.add_argument("--out", required=True, help="the bench directory")
    m = sp.add_parser("summary")
    m.add_argument("dirs", nargs="+", help="bench directories (one per seed)")
    a = ap.parse_args()
    if a.sub == "rftrun" and a.cmd and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    {"train": cmd_train, "eval": cmd_eval, "parity": cmd_parity, "rftrun": cmd_rftrun, "report": cmd_report, "summary": cmd_summary}[a.sub](a)


if __name__ == "__main__":
    main()
