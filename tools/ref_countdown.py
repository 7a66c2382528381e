"""tools/ref_countdown.py: reference scores for graders/examples/countdown.c.

The scoring is TinyZero's countdown reward (verl/utils/reward_score/countdown.py:
extract the answer with re, validate the numbers with \\d+, check the allowed
characters, eval, compare within 1e-5), applied to the whole completion
(TinyZero first cuts the prompt at "Assistant:" and keeps the last line; rft
graders see only the completion, so every line is searched). Writes JSON Lines
cases for the grader test harness:
  {"item": {"nums": [...], "target": t}, "output_text": "...", "expect": score}

    python3 tools/ref_countdown.py > tests/fixtures/countdown_cases.jsonl
"""
import json
import random
import re

FORMAT_SCORE, SCORE = 0.1, 1.0


def extract_solution(text):
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text))
    return matches[-1].group(1).strip() if matches else None


def validate_equation(eq, nums):
    try:
        used = [int(n) for n in re.findall(r"\d+", eq)]
        return sorted(used) == sorted(nums)
    except Exception:
        return False


def evaluate_equation(eq):
    try:
        if not re.match(r"^[\d+\-*/().\s]+$", eq):
            raise ValueError("bad characters")
        return eval(eq, {"__builtins__": None}, {})
    except Exception:
        return None


def compute_score(text, nums, target):
    eq = extract_solution(text)
    if eq is None:
        return 0.0
    if not validate_equation(eq, nums):
        return FORMAT_SCORE
    try:
        r = evaluate_equation(eq)
        if r is None:
            return FORMAT_SCORE
        return SCORE if abs(r - target) < 1e-5 else FORMAT_SCORE
    except Exception:
        return FORMAT_SCORE


def random_expr(rng, nums):
    """a random expression using every number once"""
    parts = [str(n) for n in nums]
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        op = rng.choice("+-*/")
        a, b = parts[i], parts[i + 1]
        expr = f"{a} {op} {b}"
        if rng.random() < 0.7:
            expr = f"({expr})"
        parts[i:i + 2] = [expr]
    return parts[0]


def main():
    rng = random.Random(1234)
    cases = []
    while len(cases) < 240:
        k = rng.choice([3, 4, 4, 5])
        nums = [rng.randint(1, 99) for _ in range(k)]
        expr = random_expr(rng, nums)
        val = evaluate_equation(expr)
        if val is None or abs(val - round(val)) > 1e-9 or val <= 0:
            continue  # TinyZero's targets are positive integers
        target = int(round(val))
        kind = len(cases) % 12
        if kind == 0:
            text = f"Let me think.\n<answer> {expr} </answer>"
        elif kind == 1:
            text = f"<think>try</think>\n<answer>{expr}</answer>"
            target += rng.choice([1, -1, 2])  # wrong value
        elif kind == 2:
            text = f"<answer>{expr} + {nums[0]}</answer>"  # a number twice
        elif kind == 3:
            drop = str(nums[-1])
            text = f"<answer>{expr.replace(drop, '0', 1)}</answer>"  # a number replaced
        elif kind == 4:
            text = f"no tags here: {expr}"
        elif kind == 5:
            text = f"<answer>{expr} = {target}</answer>"  # '=' is not allowed
        elif kind == 6:
            text = f"<answer>wrong</answer> then <answer>{expr}</answer>"  # the last tag counts
        elif kind == 7:
            text = f"<answer>{expr}</answer>\n<answer>1 + 2</answer>"
        elif kind == 8:
            text = f"<answer>\n{expr}</answer>"  # tag split over lines: no match
        elif kind == 9:
            text = f"<answer>{expr} / (1 - 1)</answer>"  # division by zero (and extra numbers)
            nums = nums + [1, 1]
        elif kind == 10:
            text = f"<answer>-(-({expr}))</answer>"  # unary minus
        else:
            text = f"<answer>  {expr}\t</answer> trailing text"
        cases.append({"item": {"nums": nums, "target": target}, "output_text": text,
                      "expect": compute_score(text, nums, target)})
    for c in cases:
        print(json.dumps(c))


if __name__ == "__main__":
    main()
