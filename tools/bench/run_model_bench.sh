#!/bin/sh
# tools/bench/run_model_bench.sh: forward+backward benchmark of rft next to
# PyTorch CPU on the same shapes and threads, in one run.
#   tools/bench/run_model_bench.sh [BUILD_DIR] [THREADS] [fp32|bf16]
# bf16: rft's model.dtype bf16 next to torch.autocast(bf16) on the CPU.
# Needs: a built tree (bench_model) and python3 with torch.
set -eu
# Both sides use rft's default OpenMP setting (a short spin, trainer/main.c),
# which PyTorch's libgomp reads too.
unset OMP_WAIT_POLICY
export GOMP_SPINCOUNT=10000
B=${1:-build}
TH=${2:-$(nproc)}
DT=${3:-fp32}
cd "$(dirname "$0")/../.."
for shape in 10m smollm2; do
    r=$("$B/bench/bench_model" --shape $shape --seqs 4 --seqlen 512 --steps 3 --threads "$TH" --dtype "$DT")
    p=$(python3 tools/bench/bench_model_torch.py --shape $shape --seqs 4 --seqlen 512 --steps 3 --threads "$TH" --dtype "$DT")
    echo "$r"
    echo "$p"
    python3 - "$r" "$p" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{r['shape']:8s} {r['dtype']} rft {r['tokens_per_s']:8.0f} tok/s {r['gflops']:6.1f} GFLOP/s rss {r['peak_rss_mb']:.0f} MB | "
      f"pytorch {p['tokens_per_s']:8.0f} tok/s {p['gflops']:6.1f} GFLOP/s rss {p['peak_rss_mb']:.0f} MB | "
      f"ratio rft/pytorch {r['tokens_per_s'] / p['tokens_per_s']:.2f}")
PY
done
