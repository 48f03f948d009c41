#!/usr/bin/env bash
# Build the control plane's dependencies layer (docs/control-plane-deploy.md): the project's
# wheel and its `aws` extra, for Lambda's python3.12 on arm64, under build/deps-layer/python,
# zipped as build/deps-layer.zip. Downloads from PyPI (run it where that is allowed; packaging
# serverless.yml itself never downloads anything).
#   scripts/build-deps-layer.sh            # then publish it:
#   aws lambda publish-layer-version --layer-name gateway-control-deps \
#     --zip-file fileb://build/deps-layer.zip --compatible-runtimes python3.12 \
#     --compatible-architectures arm64
# and pass the version's ARN as `--param="depsLayerArn=arn:aws:lambda:...:layer:...:N"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
build="$root/build"
rm -rf "$build/wheels" "$build/deps-layer" "$build/deps-layer.zip"
# The project's own wheel carries the `gateway` entry points the handlers load plugins through
# (the function's package holds the same code, first on PYTHONPATH).
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$build/wheels" "$root"
wheel="$(ls "$build"/wheels/gateway-*.whl)"
"$python" -m pip install --quiet --target "$build/deps-layer/python" \
  --platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
  --only-binary=:all: "${wheel}[aws]"
(cd "$build/deps-layer" && zip -qr9 ../deps-layer.zip python)
echo "built $build/deps-layer.zip ($(du -h "$build/deps-layer.zip" | cut -f1))"
