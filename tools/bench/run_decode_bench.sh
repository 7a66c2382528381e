#!/bin/sh
# tools/bench/run_decode_bench.sh: rollout decode of rft next to transformers'
# generate() (PyTorch CPU, same shape, threads, prompts and lengths, KV cache
# on), fp32 and bf16 each, in one run. Both sides use the same OpenMP
# settings: rft's default short spin (GOMP_SPINCOUNT=10000, trainer/main.c),
# which PyTorch's libgomp reads too.
#   tools/bench/run_decode_bench.sh [BUILD_DIR] [THREADS] [SHAPE] [BATCHES] [NEW]
set -eu
B=${1:-build}
TH=${2:-$(nproc)}
SHAPE=${3:-smollm2}
BATCHES=${4:-1,16,64}
NEW=${5:-128}
cd "$(dirname "$0")/../.."
unset OMP_WAIT_POLICY
export GOMP_SPINCOUNT=10000
r32=$("$B/bench/bench_decode" --shape "$SHAPE" --batch "$BATCHES" --threads "$TH" --new "$NEW" --dtype fp32)
r16=$("$B/bench/bench_decode" --shape "$SHAPE" --batch "$BATCHES" --threads "$TH" --new "$NEW" --dtype bf16)
p32=$(python3 tools/bench/bench_decode_hf.py --shape "$SHAPE" --batch "$BATCHES" --threads "$TH" --new "$NEW" --dtype fp32)
p16=$(python3 tools/bench/bench_decode_hf.py --shape "$SHAPE" --batch "$BATCHES" --threads "$TH" --new "$NEW" --dtype bf16)
printf '%s\n%s\n%s\n%s\n' "$r32" "$r16" "$p32" "$p16"
python3 - "$r32" "$r16" "$p32" "$p16" <<'PY'
import json, sys
runs = [{d["batch"]: d for d in (json.loads(l) for l in a.splitlines())} for a in sys.argv[1:]]
r32, r16, p32, p16 = runs
print(f"{'batch':>5} | {'rft fp32':>9} {'rft bf16':>9} | {'hf fp32':>8} {'hf bf16':>8} | "
      f"{'fp32/fp32':>9} {'bf16/fp32':>9} {'bf16/bf16':>9} | tokens/s (prefill + decode)")
for b in r32:
    t = lambda d: d[b]["tokens_per_s"]
    print(f"{b:5d} | {t(r32):9.1f} {t(r16):9.1f} | {t(p32):8.1f} {t(p16):8.1f} | "
          f"{t(r32) / t(p32):9.2f} {t(r16) / t(p32):9.2f} {t(r16) / t(p16):9.2f} |")
for name, r in (("fp32", r32), ("bf16", r16)):
    if 1 in r:
        d = r[1]
        print(f"batch 1 {name}: {d['weight_gbs']:.1f} GB/s of weights read (copy test {d['copy_gbs']:.1f} GB/s read+write)")
PY
