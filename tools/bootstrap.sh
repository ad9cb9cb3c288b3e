#!/usr/bin/env bash
# Installs the Debian packages candor needs to build, test and run its
# reference checks. Idempotent: installs only what is missing.
#   tools/bootstrap.sh            build + test dependencies
#   tools/bootstrap.sh --minimal  only what building the library and CLI needs
set -euo pipefail

build_pkgs=(cmake make gcc pkg-config libopenblas-dev libgsl-dev libjpeg62-turbo-dev
            libpng-dev libprotobuf-c-dev protobuf-c-compiler libcjson-dev)
test_pkgs=(libcmocka-dev python3-numpy python3-torch python3-torchvision python3-onnx
           python3-sklearn dataset-fashion-mnist clang libclang-rt-14-dev valgrind
           chromium nodejs npm libopenmpi-dev openmpi-bin)

pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--minimal" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside Debian on some images: accept any working node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
clean=(); for p in "${missing[@]}"; do [ -n "$p" ] && clean+=("$p"); done
if [ ${#clean[@]} -gt 0 ]; then
  echo "bootstrap: installing ${clean[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${clean[@]}" >&2
else
  echo "bootstrap: all packages present" >&2
fi
