#!/bin/sh
# tools/quickstart.sh: the README's first command. Installs the Debian
# packages, builds rft into build/, and runs the main job on the bundled
# default.
set -eu
cd "$(dirname "$0")/.."
./tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# main job: until `rft train configs/quickstart.yaml` exists, one training
# step benchmark of a ~10M-parameter model on 2K tokens
./build/bench/bench_model --shape 10m --seqs 4 --seqlen 512 --steps 2
