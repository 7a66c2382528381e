#!/bin/sh
# tools/bench/run_trl_bench.sh: side-by-side GRPO benchmark, rft against TRL's
# GRPOTrainer (PyTorch CPU, fp32), on the same policy (the rft checkpoint
# exported with `rft convert`), the same data, graders, reward weights and
# hyperparameters (read from one rft config), the same prompts in each step,
# and the same thread count. Reports seconds per step (wall, user and system
# CPU) and the greedy valid reward every EVERY steps, each model evaluated by
# both `rft eval` and a Python transformers-generate evaluator with
# re-implemented graders. Not a test: numbers go to docs/bench_trl.md.
#
# Usage: tools/bench/run_trl_bench.sh [BUILD_DIR]      (default build/)
# Environment (defaults): CONFIG=configs/quickstart.yaml
#   POLICY=data/quickstart/policy.h5 TRAIN=data/quickstart/train.jsonl
#   VALID=data/quickstart/valid.jsonl STEPS=40 EVERY=10 THREADS=1 SEED=0
#   ROWS=(all valid rows: the greedy valid evaluation) OUT=out/trl_bench/seed$SEED
# Several seeds, one table:
#   for s in 0 1 2; do SEED=$s tools/bench/run_trl_bench.sh build; done
#   python3 tools/bench/trl_grpo.py summary out/trl_bench/seed0 out/trl_bench/seed1 out/trl_bench/seed2
# Needs: pip install trl datasets pandas (TRL 1.16 was used), torch CPU.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
RFT=$BUILD/rft
[ -x "$RFT" ] || { echo "run_trl_bench.sh: $RFT not found (build first: cmake -S . -B $BUILD && cmake --build $BUILD)" >&2; exit 2; }
CONFIG=${CONFIG:-configs/quickstart.yaml}
POLICY=${POLICY:-data/quickstart/policy.h5}
TRAIN=${TRAIN:-data/quickstart/train.jsonl}
VALID=${VALID:-data/quickstart/valid.jsonl}
STEPS=${STEPS:-40}
EVERY=${EVERY:-10}
THREADS=${THREADS:-1}
SEED=${SEED:-0}
OUT=${OUT:-out/trl_bench/seed$SEED}
PY="python3 tools/bench/trl_grpo.py"
# same thread count on both sides; OpenMP/MKL pools of torch follow it too
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

rm -rf "$OUT"
mkdir -p "$OUT"
# both sides read one snapshot of the inputs (the originals may change meanwhile)
SRC="$CONFIG $POLICY $TRAIN $VALID"
mkdir -p "$OUT/inputs"
cp "$CONFIG" "$OUT/inputs/config.yaml" && CONFIG=$OUT/inputs/config.yaml
cp "$POLICY" "$OUT/inputs/policy.h5" && POLICY=$OUT/inputs/policy.h5
cp "$TRAIN" "$OUT/inputs/train.jsonl" && TRAIN=$OUT/inputs/train.jsonl
cp "$VALID" "$OUT/inputs/valid.jsonl" && VALID=$OUT/inputs/valid.jsonl
BG=$(python3 -c "import sys; sys.path.insert(0, 'tools/bench'); import trl_grpo as t; c = t.load_rft_config('$CONFIG'); print(c['batch_size'] * c['group_size'])")
ROWS=${ROWS:-$(grep -c . "$VALID")}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "rft commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(grep -c ^processor /proc/cpuinfo) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "python: $(python3 -c 'import sys, torch, transformers, trl; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__)')"
  echo "inputs (copied to $OUT/inputs): $SRC"
  echo "steps: $STEPS threads: $THREADS seed: $SEED eval rows: $ROWS"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# 1. the same policy for TRL: the rft checkpoint as a Hugging Face directory
"$RFT" convert "$POLICY" "$OUT/hf"
$PY parity --hf "$OUT/hf" --policy "$POLICY" --rft "$RFT" --valid "$VALID" --n 8 --threads "$THREADS" 2>/dev/null

# 2. rft: STEPS steps, checkpoints every EVERY steps, every completion's row
#    logged so that TRL can see the same prompts in the same steps
SETS="--set threads=$THREADS --set model.path=$POLICY --set data.train=$TRAIN --set data.valid=$VALID"
SETS="$SETS --set train.max_steps=$STEPS --set train.seed=$SEED --set train.eval_interval=0"
SETS="$SETS --set train.checkpoint_interval=$EVERY --set train.keep_checkpoints=1000 --set train.log_samples=$BG"
echo "rft train ($STEPS steps) ..."
# shellcheck disable=SC2086
$PY rftrun --out-dir "$OUT/rft" --json "$OUT/rft_run.json" -- "$RFT" train "$CONFIG" $SETS --set "train.out_dir=$OUT/rft"

# 3. TRL: the same steps
echo "TRL GRPOTrainer ($STEPS steps) ..."
$PY train --hf "$OUT/hf" --config "$CONFIG" --train "$TRAIN" --order "$OUT/rft/samples.jsonl" --steps "$STEPS" \
    --threads "$THREADS" --seed "$SEED" --save-every "$EVERY" --out "$OUT/trl" --json "$OUT/trl_run.json" \
    > "$OUT/trl_train.log" 2>&1 || { tail -n 20 "$OUT/trl_train.log" >&2; exit 1; }

# 4. evaluate every saved policy with both evaluators (greedy, the first ROWS valid rows)
mkdir -p "$OUT/rft_hf"
cp -r "$OUT/hf" "$OUT/rft_hf/step-000000"
for f in "$OUT"/rft/checkpoints/step-*.h5; do
  s=$(basename "$f" .h5)
  "$RFT" convert "$f" "$OUT/rft_hf/$s" > /dev/null
done
echo "evaluating ..."
$PY eval --config "$CONFIG" --valid "$VALID" --rows "$ROWS" --threads "$THREADS" --json "$OUT/eval_python.json" \
    "$OUT"/rft_hf/step-* "$OUT"/trl/step-* 2> "$OUT/eval_python.log"
: > "$OUT/eval_rft.jsonl"
for side in rft trl; do
  for d in "$OUT/${side}_hf"/step-* "$OUT/$side"/step-*; do
    [ -e "$d" ] || continue
    s=$(basename "$d" | sed 's/step-0*//; s/^$/0/')
    "$RFT" eval "$CONFIG" --model "$d" --data "$VALID" --n "$ROWS" --json --set "threads=$THREADS" \
        --set train.eval_samples=0 2>/dev/null |
      python3 -c "import json, sys; d = json.load(sys.stdin); d['tag'] = '$side/$s'; print(json.dumps(d))" >> "$OUT/eval_rft.jsonl"
  done
done

# 5. the table
$PY report --out "$OUT" | tee "$OUT/report.md"
