#!/bin/sh
# tools/quickstart.sh: the README's first command. Installs the Debian
# packages, builds rft into build/, and runs the main job: the bundled
# quickstart, GRPO on a small arithmetic task (configs/quickstart.yaml).
set -eu
cd "$(dirname "$0")/.."
./tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# main job: RL fine-tuning of the bundled warm-start policy (a few minutes on
# 2 CPU cores); outputs in out/quickstart/
./build/rft train configs/quickstart.yaml
