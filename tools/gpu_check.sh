#!/bin/bash
# tools/gpu_check.sh: the one prepared GPU check for a lent H100/H200 (about
# 5 minutes, at most 8): the GPU tests (each op and the whole model against
# the CPU backend), the GPU benchmark next to PyTorch on the same shapes, a
# compute-sanitizer memcheck pass, a racecheck pass over the attention
# checks and Nsight Compute's throughput / occupancy sections of the
# attention kernels (each while time remains), and one short table at the
# end, followed
# by the per-op profile of two bf16 SmolLM2 training steps (bench_gpu
# --profile, kernels/profile.c: where the time of a step goes; the fp32 one
# is in bench_rft.jsonl).
#
#   tools/gpu_check.sh prepare   on the development machine (no GPU needed):
#                                configure + build build-gpu (Release, sm_90,
#                                RFT_CUDA=ON) and pack gpu_carry/ = the test
#                                and bench binaries + the shared libraries
#                                they need that a bare CUDA image lacks
#                                (OpenBLAS, gfortran...), xz-compressed.
#   tools/gpu_check.sh resources  (no GPU needed) ptxas register / shared
#                                memory / spill report of every kernel for
#                                sm_90 into docs/cuda_resources.txt.
#   tools/gpu_check.sh [run]     on the GPU machine: uses gpu_carry/ when it
#                                is there and its binaries load; otherwise
#                                builds from source (needs the Debian build
#                                deps of tools/install_deps.sh, tried first).
#
# With the device tool of this workplace:
#   tools/gpu_check.sh prepare
#   run(command="tools/gpu_check.sh", carry=["gpu_carry"], timeout_s=540)
# Results (logs, JSON lines, the table) land in $OUT (or ./gpu_check_out).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}

# shared libraries any CUDA machine has (or must not be replaced)
is_system_lib() {
    case "$1" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnvidia*|libnccl.so*) return 0 ;;
    linux-vdso*) return 0 ;;
    esac
    return 1
}

# the built-in grader plugins (rft train needs them for the quickstart check)
GRADER_TARGETS=$(for f in graders/builtin/*.c; do printf 'rftg_%s ' "$(basename "$f" .c)"; done)

if [ "$MODE" = prepare ]; then
    set -e
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DRFT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
    cmake --build build-gpu -j2 --target gpu_test_cuda_ops gpu_test_cuda_model bench_gpu rft rft-grader-worker \
        $GRADER_TARGETS
    rm -rf gpu_carry
    mkdir -p gpu_carry/pack/bin/graders gpu_carry/pack/lib
    cp build-gpu/tests/gpu/gpu_test_cuda_ops build-gpu/tests/gpu/gpu_test_cuda_model build-gpu/bench/bench_gpu \
        build-gpu/rft build-gpu/rft-grader-worker gpu_carry/pack/bin/
    cp build-gpu/graders/*.so gpu_carry/pack/bin/graders/ # rft looks in <its directory>/graders
    strip --strip-debug gpu_carry/pack/bin/* gpu_carry/pack/bin/graders/* 2>/dev/null || true
    for b in gpu_carry/pack/bin/* gpu_carry/pack/bin/graders/*; do [ -f "$b" ] && ldd "$b"; done |
        awk '$3 ~ /^\// {print $3}' | sort -u | while read -r l; do
        is_system_lib "$(basename "$l")" || cp -L "$l" gpu_carry/pack/lib/
    done
    (cd gpu_carry && tar cf - pack | xz -6 -T2 > pack.tar.xz && rm -rf pack)
    grep -qx '/gpu_carry/' .git/info/exclude 2>/dev/null || echo '/gpu_carry/' >> .git/info/exclude
    echo "gpu_check: gpu_carry/ ready ($(du -sh gpu_carry | cut -f1)); carry it to the GPU machine:"
    echo "  run(command=\"tools/gpu_check.sh\", carry=[\"gpu_carry\"], timeout_s=540)"
    exit 0
fi

if [ "$MODE" = resources ]; then
    set -e
    NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
    R=docs/cuda_resources.txt
    {
        echo "# ptxas resource usage of every CUDA kernel, sm_90, -O3 (made by: tools/gpu_check.sh resources)"
        echo "# $("$NVCC" --version | tail -1)"
        echo "# registers per thread, spill bytes, shared memory (static; attention adds dynamic smem, see"
        echo "# docs/cuda.md), stack frame. Zero spills everywhere is the target."
        for f in kernels/cuda/*.cu; do
            "$NVCC" -arch=sm_90 -O3 -std=c++17 -Xptxas -v -c "$f" -o /dev/null -I kernels 2>&1 |
                python3 -c '
import re, subprocess, sys
f = sys.argv[1]
rows, cur = [], None
for line in sys.stdin:
    m = re.search(r"Function properties for (\S+)", line)
    if m:
        cur = {"name": m.group(1)}
        rows.append(cur)
        continue
    if cur is None:
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m:
        cur["stack"], cur["st"], cur["ld"] = m.groups()
    m = re.search(r"Used (\d+) registers", line)
    if m:
        cur["regs"] = m.group(1)
        sm = re.search(r"(\d+) bytes smem", line)
        cur["smem"] = sm.group(1) if sm else "0"
names = subprocess.run(["c++filt"], input="\n".join(r["name"] for r in rows), capture_output=True,
                       text=True).stdout.split("\n")
print("\n== " + f)
print("%5s %12s %7s %8s  %s" % ("regs", "spill st/ld", "smem B", "stack B", "kernel"))
for r, n in zip(rows, names):
    if "regs" not in r:
        continue
    n = re.sub(r"\(.*", "", n)
    print("%5s %12s %7s %8s  %s" % (r["regs"], r.get("st", "?") + "/" + r.get("ld", "?"), r["smem"],
                                    r.get("stack", "?"), n))
' "$f"
        done
    } >"$R"
    echo "gpu_check: wrote $R"
    exit 0
fi

OUTDIR=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
say() { echo "gpu_check: $*" | tee -a "$LOG"; }
T0=$(date +%s)

say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1)"

# CUDA runtime / cuBLAS of the machine: the toolkit's, else PyTorch's wheels
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c "import nvidia, os; p = os.path.dirname(nvidia.__path__[0] if hasattr(nvidia, '__path__') else nvidia.__file__); print(' '.join(os.path.join(p, 'nvidia', x, 'lib') for x in ('cublas', 'cuda_runtime', 'cu13')))" 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done
export LD_LIBRARY_PATH

# ---- binaries: the carried build, or a fresh one ----
BIN=""
if [ -f gpu_carry/pack.tar.xz ]; then
    rm -rf /tmp/gpu_carry && mkdir -p /tmp/gpu_carry
    if xz -dc gpu_carry/pack.tar.xz 2>/dev/null | tar xf - -C /tmp/gpu_carry 2>/dev/null ||
        python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
            gpu_carry/pack.tar.xz /tmp/gpu_carry; then
        export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/tmp/gpu_carry/pack/lib
        if ldd /tmp/gpu_carry/pack/bin/bench_gpu | grep -q "not found"; then
            say "carried binaries do not load here: $(ldd /tmp/gpu_carry/pack/bin/bench_gpu | grep 'not found' | tr '\n' ' ')"
        else
            BIN=/tmp/gpu_carry/pack/bin
            say "using the carried build (gpu_carry/)"
        fi
    fi
fi
if [ -z "$BIN" ]; then
    say "building from source in build-gpu (sm_90)"
    if ! pkg-config --exists openblas hdf5-serial yaml-0.1 libpcre2-8 jansson 2>/dev/null; then
        say "build dependencies missing; trying tools/install_deps.sh"
        sh tools/install_deps.sh >>"$LOG" 2>&1 || say "install_deps failed (no network?)"
    fi
    if cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DRFT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >>"$LOG" 2>&1 &&
        cmake --build build-gpu -j"$(nproc)" --target gpu_test_cuda_ops gpu_test_cuda_model bench_gpu rft \
            rft-grader-worker $GRADER_TARGETS >>"$LOG" 2>&1; then
        mkdir -p /tmp/gpu_build_bin/graders
        cp build-gpu/tests/gpu/gpu_test_cuda_ops build-gpu/tests/gpu/gpu_test_cuda_model build-gpu/bench/bench_gpu \
            build-gpu/rft build-gpu/rft-grader-worker /tmp/gpu_build_bin/
        cp build-gpu/graders/*.so /tmp/gpu_build_bin/graders/
        BIN=/tmp/gpu_build_bin
    else
        say "FAILED: no carried build and the source build failed (see $LOG); run 'tools/gpu_check.sh prepare' on"
        say "the development machine and carry gpu_carry/"
        tail -20 "$LOG"
        exit 1
    fi
fi

# ---- tests ----
TESTS=""
for t in gpu_test_cuda_ops gpu_test_cuda_model; do
    RFT_TEST_SEED=$RANDOM timeout 150 "$BIN/$t" >"$OUTDIR/$t.log" 2>&1
    rc=$?
    case $rc in 0) r=PASS ;; 77) r=SKIP ;; 124) r=TIMEOUT ;; *) r="FAIL($rc)" ;; esac
    TESTS="$TESTS $t=$r"
    say "$t: $r ($(tail -1 "$OUTDIR/$t.log"))"
    [ "$r" = PASS ] || grep -E "FAIL|error|FATAL" "$OUTDIR/$t.log" | head -20 | tee -a "$LOG"
done

# ---- the data-parallel path on one GPU: rft train --gpus 1 (launcher, NCCL opened at run time, the
# gradient and statistics sums) against a plain CUDA run: the same rewards, the same losses up to
# float sums ----
if [ -x "$BIN/rft" ]; then
    d=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null)
    [ -n "$d" ] && [ -d "$d" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
    Q="--set device=cuda --set train.max_steps=4 --set train.eval_interval=0 --set train.eval_max_rows=20"
    rm -rf /tmp/gq_plain /tmp/gq_gpus1
    timeout 90 "$BIN/rft" train configs/quickstart.yaml $Q --set train.out_dir=/tmp/gq_plain >"$OUTDIR/rft_train_plain.log" 2>&1
    rc1=$?
    timeout 90 "$BIN/rft" train configs/quickstart.yaml $Q --set train.out_dir=/tmp/gq_gpus1 --gpus 1 \
        >"$OUTDIR/rft_train_gpus1.log" 2>&1
    rc2=$?
    r=$(python3 - /tmp/gq_plain/metrics.jsonl /tmp/gq_gpus1/metrics.jsonl <<'PY' 2>&1
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
ok = len(a) == len(b) == 5
for x, y in zip(a, b):
    ok &= x.get("reward") == y.get("reward") and x.get("valid_reward_mean") == y.get("valid_reward_mean")
    for k in ("loss", "grad_norm", "entropy"):
        if k in x: ok &= abs(x[k] - y[k]) <= 1e-4 * max(abs(x[k]), abs(y[k])) + 1e-7
print("PASS" if ok else "FAIL")
PY
)
    [ $rc1 = 0 ] && [ $rc2 = 0 ] || r="FAIL(exit $rc1/$rc2)"
    TESTS="$TESTS rft_train_gpus1=$r"
    say "rft train --gpus 1 vs plain (4 quickstart steps on cuda): $r"
    [ "$r" = PASS ] || tail -n 3 "$OUTDIR/rft_train_plain.log" "$OUTDIR/rft_train_gpus1.log" | tee -a "$LOG"
fi

# ---- benchmarks ----
timeout 200 "$BIN/bench_gpu" --profile >"$OUTDIR/bench_rft.jsonl" 2>"$OUTDIR/bench_rft.err"
say "bench_gpu: exit $? ($(grep -c "^{" "$OUTDIR/bench_rft.jsonl") results) $(head -c 300 "$OUTDIR/bench_rft.err")"
# the bf16 attention pair's other kernels: wmma (RFT_CUDA_ATTN=wmma), and its hd-64 variant with no
# register bound (2 blocks per SM, no spills); the default rows above are the mma.sync kernels
RFT_CUDA_ATTN=wmma timeout 60 "$BIN/bench_gpu" --attention-only | sed 's/"label": "bf16 /"label": "bf16 wmma /' \
    >>"$OUTDIR/bench_rft.jsonl" 2>>"$OUTDIR/bench_rft.err"
RFT_CUDA_ATTN=wmma RFT_CUDA_TC_MIN_BLOCKS=1 timeout 60 "$BIN/bench_gpu" --attention-only |
    sed 's/"label": "bf16 /"label": "bf16 wmma minb1 /' >>"$OUTDIR/bench_rft.jsonl" 2>>"$OUTDIR/bench_rft.err"
# the fp32 pair on the CUDA cores (RFT_CUDA_TF32=0; the full run's "tf32" rows are the tensor-core kernels)
RFT_CUDA_TF32=0 timeout 60 "$BIN/bench_gpu" --attention-fp32 >>"$OUTDIR/bench_rft.jsonl" 2>>"$OUTDIR/bench_rft.err"
PYTHONUNBUFFERED=1 timeout 200 python3 tools/bench/bench_gpu_torch.py >"$OUTDIR/bench_torch.jsonl" \
    2>"$OUTDIR/bench_torch.err"
say "bench_gpu_torch: exit $? ($(wc -l <"$OUTDIR/bench_torch.jsonl") results) $(tail -c 300 "$OUTDIR/bench_torch.err")"

# ---- memcheck of the op test (fixed seed), while time remains ----
SAN="skipped"
if command -v compute-sanitizer >/dev/null && [ $(( $(date +%s) - T0 )) -lt 330 ]; then
    RFT_TEST_SEED=1 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/gpu_test_cuda_ops" \
        >"$OUTDIR/memcheck.log" 2>&1
    rc=$?
    case $rc in 0) SAN=clean ;; 9) SAN="ERRORS (memcheck.log)" ;; 124) SAN="timeout" ;; *) SAN="exit $rc" ;; esac
    grep -m5 -E "Invalid|ERROR SUMMARY" "$OUTDIR/memcheck.log" | tee -a "$LOG"
fi
# ---- racecheck (shared-memory hazards) of the attention kernels, while time remains ----
RACE="skipped"
if command -v compute-sanitizer >/dev/null && [ $(( $(date +%s) - T0 )) -lt 380 ]; then
    RFT_TEST_ONLY=attention RFT_TEST_SEED=1 timeout 90 compute-sanitizer --tool racecheck \
        --error-exitcode 9 "$BIN/gpu_test_cuda_ops" >"$OUTDIR/racecheck.log" 2>&1
    rc=$?
    case $rc in 0) RACE=clean ;; 9) RACE="HAZARDS (racecheck.log)" ;; 124) RACE="timeout" ;; *) RACE="exit $rc" ;; esac
    grep -m5 -E "Race|hazard|ERROR SUMMARY" "$OUTDIR/racecheck.log" | tee -a "$LOG"
fi

# ---- hardware counters of the attention kernels (Nsight Compute; works on some of the lent machines'
# runtimes only), while time remains: how close each kernel runs to the SM and memory limits ----
if command -v ncu >/dev/null && [ $(( $(date +%s) - T0 )) -lt 420 ]; then
    timeout 60 ncu --clock-control none --kernel-name regex:"attn_mma|attn_tc_" --launch-count 6 \
        --section SpeedOfLight --section Occupancy --section LaunchStats "$BIN/bench_gpu" --attention-only \
        >"$OUTDIR/ncu_attention.log" 2>&1
    say "ncu (attention kernels): exit $?"
    grep -E "^  [a-z_]+.*attn_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Block Limit" \
        "$OUTDIR/ncu_attention.log" | head -60 | tee -a "$LOG"
fi

# ---- table ----
python3 - "$OUTDIR/bench_rft.jsonl" "$OUTDIR/bench_torch.jsonl" "$TESTS" "$SAN" "$RACE" <<'PY' | tee "$OUTDIR/table.txt"
import json, sys

def load(p):
    rows = []
    try:
        for line in open(p):
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    except OSError:
        pass
    return rows

rft, pt = load(sys.argv[1]), load(sys.argv[2])
print("tests:" + sys.argv[3] + "   memcheck: " + sys.argv[4] + "   racecheck (attention): " + sys.argv[5])
print(f"{'measurement':44s} {'rft (CUDA)':>14s} {'PyTorch':>14s} {'rft/PyTorch':>11s}")
def row(name, a, b, unit, fmt="{:.1f}"):
    sa = (fmt.format(a) + unit) if a is not None else "n/a"
    sb = (fmt.format(b) + unit) if b is not None else "n/a"
    ratio = f"{a / b:.2f}" if a and b else ""
    print(f"{name:44s} {sa:>14s} {sb:>14s} {ratio:>11s}")
for r in [x for x in rft if x.get("bench") == "matmul"]:
    p = next((x for x in pt if x.get("bench") == "matmul" and x.get("label") == r["label"]), {})
    row("matmul " + r["label"], r["tflops"], p.get("tflops"), " TF/s")
for r in [x for x in rft if x.get("bench") == "attention"]:
    row("attention fwd " + r["label"], r["fwd_tflops"], None, f" TF/s {r['fwd_ms']:.2f} ms")
    row("attention bwd " + r["label"], r["bwd_tflops"], None, f" TF/s {r['bwd_ms']:.2f} ms")
for dt in ("fp32", "bf16"):
    tr = next((x for x in rft if x.get("bench") == "train" and x.get("dtype", "fp32") == dt and x.get("head") != "separate"), None)
    tp = next((x for x in pt if x.get("bench") == "train" and x.get("dtype", "fp32") == dt), None)
    if not (tr or tp):
        continue
    g = lambda d, k: d.get(k) if d else None
    lab = f"train 135M {dt if dt == 'bf16' else 'fp32/tf32'} {(tr or tp)['tokens']} tok/step"
    row(lab + " tok/s", g(tr, "tokens_per_s"), g(tp, "tokens_per_s"), "", "{:.0f}")
    row("  achieved TFLOP/s (fwd+bwd)", g(tr, "tflops"), g(tp, "tflops"), "", "{:.2f}")
    row("  MFU vs measured bf16 4096^3 GEMM", g(tr, "mfu_vs_bf16_gemm"), g(tp, "mfu_vs_bf16_gemm"), "", "{:.3f}")
    fbp = tp["fwd_ms"] + tp["bwd_ms"] if tp and tp.get("fwd_ms") is not None else None
    row("  forward+backward ms", g(tr, "fwd_bwd_ms"), fbp, "", "{:.1f}")
    sep = next((x for x in rft if x.get("bench") == "train" and x.get("dtype", "fp32") == dt and x.get("head") == "separate"), None)
    if sep:
        row("  same, head's logits twice (--separate) tok/s", sep["tokens_per_s"], None, "", "{:.0f}")
    row("  AdamW (+clip) ms", g(tr, "adamw_ms"), g(tp, "adamw_ms"), "", "{:.1f}")
for r in [x for x in rft if x.get("bench") == "decode"]:
    dt = r.get("dtype", "fp32")
    p = next((x for x in pt if x.get("bench") == "decode" and x.get("batch") == r["batch"]
              and x.get("dtype", "fp32") == dt), {})
    row(f"decode {dt} batch {r['batch']} tok/s (vs HF generate {dt})", r["tokens_per_s"], p.get("tokens_per_s"),
        "", "{:.0f}")
    row(f"  weights+KV+logits GB/s", r["gb_per_s"], None, "", "{:.0f}")
if not rft:
    print("(no rft benchmark results: see bench_rft.err)")
PY
# ---- per-op profile of the bf16 training step (the lines after "profile: train bf16") ----
awk '/^profile: train bf16/ {p = 1; print; next} /^(\{|profile: )/ {p = 0} p' "$OUTDIR/bench_rft.jsonl" |
    tee "$OUTDIR/profile_bf16.txt"
say "done in $(( $(date +%s) - T0 )) s; logs in $OUTDIR"
