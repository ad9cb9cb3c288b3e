#!/usr/bin/env bash
# The main job: installs what is missing, builds candor, and runs it on the
# bundled Fashion-MNIST model and sample images. Output goes to ./out/.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
tools/bootstrap.sh --minimal
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCANDOR_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$jobs" --target candor_cli >&2
cli=build/candor
model=models/fmnist_cnn.onnx
echo "== candor info $model"
"$cli" info "$model"
echo
echo "== candor predict $model models/samples/"
"$cli" predict "$model" models/samples/ --top 3
