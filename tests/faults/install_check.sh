#!/bin/sh
# tests/faults/install_check.sh BUILD_DIR SOURCE_DIR: installs rft into a
# temporary prefix and checks what a grader author gets: the example grader
# builds out of tree with pkg-config (header only) and with find_package(rft),
# and the installed rft finds its built-in graders in PREFIX/lib/rft/graders
# and runs both through `rft grade`.
set -eu
BUILD=$1
SRC=$2
T=$(mktemp -d /tmp/rft_install_XXXXXX)
trap 'rm -rf "$T"' EXIT
cmake --install "$BUILD" --prefix "$T/prefix" > /dev/null
test -x "$T/prefix/libexec/rft/rft-grader-worker"
PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig" pkg-config --exists rft-grader
cc -O2 -shared -fPIC $(PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig" pkg-config --cflags rft-grader) \
   "$T/prefix/share/rft/examples/countdown.c" -o "$T/countdown_pc.so" -lm
mkdir "$T/cm"
cat > "$T/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(mine C)
find_package(rft 0.1 REQUIRED)
add_library(countdown MODULE $T/prefix/share/rft/examples/countdown.c)
target_link_libraries(countdown PRIVATE rft::grader m)
set_target_properties(countdown PROPERTIES PREFIX "")
CM
cmake -S "$T/cm" -B "$T/cm/build" -DCMAKE_PREFIX_PATH="$T/prefix" > /dev/null
cmake --build "$T/cm/build" > /dev/null
cat > "$T/cfg.yaml" <<Y
graders:
  cd_pkgconfig:
    plugin: countdown_pc.so
  cd_cmake:
    plugin: cm/build/countdown.so
  exact:
    type: string_check
    operation: like
    input: "{{sample.output_text}}"
    reference: "{{item.answer}}"
Y
printf '%s\n' '{"item": {"nums": [2, 3, 4], "target": 20, "answer": "</answer>"}, "output_text": "<answer>(2 + 3) * 4</answer>"}' > "$T/s.jsonl"
# the installed binary must not need the build tree's plugins
out=$(RFT_GRADER_PATH= "$T/prefix/bin/rft" grade "$T/cfg.yaml" --samples "$T/s.jsonl" --json | head -1)
echo "$out"
test "$out" = '{"reward":3.0,"sub_rewards":{"cd_pkgconfig":1.0,"cd_cmake":1.0,"exact":1.0},"errors":{}}'
echo "install check ok"
