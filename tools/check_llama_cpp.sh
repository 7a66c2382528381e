#!/bin/sh
# tools/check_llama_cpp.sh: runs a GGUF written by `rft convert` in llama.cpp itself.
# llama.cpp's source comes from PyPI (the llama-cpp-python sdist vendors it); only
# the llama-simple example is built (CPU, ~15 min on 2 busy cores), once, in WORK.
#   usage: tools/check_llama_cpp.sh MODEL.gguf [PROMPT] [WORK_DIR]
#   e.g.   build/rft convert smollm2.h5 /tmp/s.gguf --dtype f16 && tools/check_llama_cpp.sh /tmp/s.gguf
# Prints llama.cpp's greedy continuation; exits non-zero when llama.cpp cannot load the file.
set -eu
MODEL=$1
PROMPT=${2:-The capital of France is}
WORK=${3:-${XDG_CACHE_HOME:-$HOME/.cache}/rft/llama.cpp}
VER=0.3.16
SRC=$WORK/llama_cpp_python-$VER/vendor/llama.cpp
BIN=$SRC/build/bin/llama-simple
if [ ! -x "$BIN" ]; then
    mkdir -p "$WORK"
    if [ ! -d "$SRC" ]; then
        if command -v pip >/dev/null 2>&1; then PIP=pip; else PIP="python3 -m pip"; fi
        $PIP download --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VER" >&2
        tar -xzf "$WORK/llama_cpp_python-$VER.tar.gz" -C "$WORK"
    fi
    cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
        -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$SRC/build" -j"$(nproc)" --target llama-simple >&2
fi
"$BIN" -m "$MODEL" -n 16 "$PROMPT" 2>"$WORK/last.log" || { grep -iE "error|assert" "$WORK/last.log" >&2; exit 1; }
echo
