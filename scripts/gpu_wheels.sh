#!/usr/bin/env bash
# Collect the wheels benchmarks/gpu_check.py needs on a bare GPU machine (torch, Triton, onnx, onnxruntime,
# numpy, Pillow, safetensors and transformers there; no registry), here where pip can reach one:
#   bash scripts/gpu_wheels.sh DIR            # then carry DIR there and run:
#   python benchmarks/gpu_check.py --wheels DIR
# diffsynth and what it imports at start-up (most pure Python; pandas, cryptography and cffi as manylinux
# x86_64 wheels), and onnxscript for exporting a block to TensorRT. PY_VERSION picks the target Python (3.12).
# These versions are the ones gpu_check.py was checked with on a machine that had only the packages above.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: bash scripts/gpu_wheels.sh DIR}
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=(
  diffsynth==2.1.12 einops==0.8.2 ftfy==6.3.1 wcwidth==0.9.4 imageio==2.38.2 accelerate==1.15.0
  modelscope==1.40.2 modelscope_hub==0.5.1 requests==2.34.2 urllib3==2.8.0 certifi==2026.10.19.post1 idna==3.20
  charset_normalizer==3.5.3 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
  pandas==2.3.2 python_dateutil==4.0.0 pytz==2026.6 tzdata==2026.6 six==1.17.0
  onnxscript==0.7.2 onnx_ir==1.1.0
)
mkdir -p "$dest"
"$python" -m pip --disable-pip-version-check download -q --dest "$dest" --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  "${WHEELS[@]}"
echo "wheels for Python $PY_VERSION in $dest ($(du -sh "$dest" | cut -f1)); run: python benchmarks/gpu_check.py --wheels $dest"
