#!/bin/sh
# tools/bench/run_decode_bench.sh: rollout decode of rft next to transformers'
# generate() (PyTorch CPU, same shape, threads, prompts and lengths), one run;
# both under OMP_WAIT_POLICY=passive (threads that spin while a loaded machine
# has descheduled their partner would inflate the CPU-time numbers).
#   tools/bench/run_decode_bench.sh [BUILD_DIR] [THREADS] [SHAPE] [BATCHES]
set -eu
B=${1:-build}
TH=${2:-$(nproc)}
SHAPE=${3:-smollm2}
BATCHES=${4:-1,16,64}
cd "$(dirname "$0")/../.."
r=$(OMP_WAIT_POLICY=passive "$B/bench/bench_decode" --shape "$SHAPE" --batch "$BATCHES" --threads "$TH")
p=$(OMP_WAIT_POLICY=passive python3 tools/bench/bench_decode_hf.py --shape "$SHAPE" --batch "$BATCHES" --threads "$TH")
echo "$r"
echo "$p"
python3 - "$r" "$p" <<'PY'
import json, sys
rs = [json.loads(l) for l in sys.argv[1].splitlines()]
ps = {d["batch"]: d for d in (json.loads(l) for l in sys.argv[2].splitlines())}
for r in rs:
    p = ps[r["batch"]]
    print(f"batch {r['batch']:3d}: rft {r['tokens_per_s']:8.1f} tok/s (decode {r['decode_tokens_per_s']:8.1f}) | "
          f"transformers {p['tokens_per_s']:8.1f} tok/s (decode {p['decode_tokens_per_s']:8.1f}) | "
          f"ratio {r['tokens_per_s'] / p['tokens_per_s']:.2f}"
          + (f" | weights {r['weight_gbs']:.1f} GB/s of {r['copy_gbs']:.1f} GB/s copy" if r['batch'] == 1 else ""))
    # CPU time of decode (all threads): comparable when other jobs load the machine
    print(f"           decode CPU ms/token: rft {r['decode_cpu_ms_per_token']:.3f} | transformers "
          f"{p['decode_cpu_ms_per_token']:.3f} | ratio {p['decode_cpu_ms_per_token'] / r['decode_cpu_ms_per_token']:.2f}")
PY
