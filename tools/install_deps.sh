#!/bin/sh
# Installs every Debian package rft's build and tests need. Idempotent; run as root
# (or with sudo available). Python is not needed to build or test rft.
set -eu
PKGS="build-essential cmake pkg-config libopenblas-dev libhdf5-dev libyaml-dev \
libpcre2-dev libjansson-dev wordnet-base libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install_deps: all packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
