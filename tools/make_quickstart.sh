#!/bin/sh
# tools/make_quickstart.sh: remakes everything the bundled quickstart ships in
# data/quickstart/, deterministically:
#   1. the task and the tokenizer (tools/make_quickstart.py: train/valid/sft
#      JSONL, a small byte-level BPE with ChatML special tokens);
#   2. a fresh Llama-family policy (rft init: ~0.8M parameters);
#   3. the warm start: SFT from scratch (configs/quickstart_sft.yaml) on a
#      12-epoch cosine schedule, taken at step 792 (of 1056) while it is
#      still only partly right (greedy correct-rate ~35% on valid, sampled
#      at temperature 1 ~20%): RL has something to learn. A fifth of the
#      demonstrations work the sum out first ("3+8=11,11-7=4 <answer>4</answer>");
#   4. data/quickstart/policy.h5: that model and its tokenizer only (no
#      optimizer or trainer state; `rft convert` to .h5).
# Usage: tools/make_quickstart.sh [BUILD_DIR]   (default build/)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
RFT=$BUILD/rft
[ -x "$RFT" ] || { echo "make_quickstart.sh: $RFT not found (build first: cmake -S . -B $BUILD && cmake --build $BUILD)" >&2; exit 2; }
# the task: single-digit operands, 2 to 4 terms ("3+7-2+5" -> <answer>13</answer>)
python3 tools/make_quickstart.py --max-num 9 --terms 2,3,3,4 --n-train 1200 --n-sft 2800 --worked 0.2 --untagged 0
SFT_EPOCHS=12   # 2800 rows / batch_size 32 = 88 steps an epoch: 1056 steps
SFT_STEPS=792
mkdir -p out
"$RFT" init out/quickstart_init.h5 --tokenizer data/quickstart/tokenizer.json \
    --tokenizer-config data/quickstart/tokenizer_config.json \
    --d-model 128 --n-layer 4 --n-head 4 --n-kv-head 2 --d-ff 384 --max-seq 128 --seed 1
rm -rf out/quickstart_sft
# threads 1: the run is bitwise reproducible, and faster than 2 for this size
"$RFT" train configs/quickstart_sft.yaml --set threads=1 --set train.seed=0 \
    --set train.n_epochs=$SFT_EPOCHS --set train.checkpoint_interval=$SFT_STEPS \
    --set sampling.max_new_tokens=40 --set train.out_dir=out/quickstart_sft
# model + tokenizer only (the step checkpoint also holds the optimizer state)
"$RFT" convert out/quickstart_sft/checkpoints/step-$(printf %06d $SFT_STEPS).h5 data/quickstart/policy.h5
"$RFT" inspect data/quickstart/policy.h5 | head -n 5
ls -l data/quickstart/policy.h5
