#!/bin/sh
# tools/bench/run_overlap_bench.sh: how much grading the trainer hides behind
# generation. Runs the quickstart GRPO job (configs/quickstart.yaml) with one
# more grader, tools/bench/grader_sleep.c (each grade sleeps MS ms: a stand-in
# for an expensive verifier; weight 0, so training is unchanged), for STEPS
# steps, with each rft binary given, and prints the mean per step of
# timing/step, timing/sampling and timing/grading (the grading left after
# sampling ends) from metrics.jsonl.
#
#   tools/bench/run_overlap_bench.sh MS STEPS BUILD [BUILD_BEFORE]
#   e.g. tools/bench/run_overlap_bench.sh 2 30 build /tmp/old/build
# BUILD_BEFORE: a build of a commit before rollout_grade.c (sequential
# sampling, then grading), for the side-by-side.
set -eu
MS=${1:?MS}; STEPS=${2:?STEPS}; shift 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN=$ROOT/$1/bench/grader_sleep.so
[ -f "$PLUGIN" ] || PLUGIN=$1/bench/grader_sleep.so
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
sed -e "s|^reward:|  sleepy:\n    plugin: $PLUGIN\n    config: {ms: $MS}\nreward:|" \
    -e "s|weights: {correct: 1.0, format: 0.1}|weights: {correct: 1.0, format: 0.1, sleepy: 0.0}|" \
    "$ROOT/configs/quickstart.yaml" >"$TMP/cfg.yaml"
grep -q "sleepy: 0.0" "$TMP/cfg.yaml" || { echo "run_overlap_bench: could not edit the quickstart config" >&2; exit 1; }
echo "grader_sleep ${MS} ms per grade, $STEPS steps of 16 prompts x 8 samples, $(nproc) cores"
printf '%-28s %10s %10s %10s %10s\n' build step_s sampling_s grading_s reward
for B in "$@"; do
    BIN=$B/rft
    [ -x "$BIN" ] || BIN=$ROOT/$B/rft
    (cd "$ROOT" && "$BIN" train "$TMP/cfg.yaml" --set train.out_dir="$TMP/out_$(echo "$B" | tr / _)" \
        --set train.max_steps="$STEPS" --set train.eval_interval=100000 >/dev/null 2>"$TMP/err") ||
        { cat "$TMP/err" >&2; exit 1; }
    python3 - "$TMP/out_$(echo "$B" | tr / _)/metrics.jsonl" "$B" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
r = [x for x in r if "timing/sampling" in x]
m = lambda k: sum(x[k] for x in r) / len(r)
print("%-28s %10.3f %10.3f %10.3f %10.3f" % (sys.argv[2][-28:], m("timing/step"), m("timing/sampling"),
                                          m("timing/grading"), m("reward")))
PY
done
