#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv/ and install sfi into it.
#   bash scripts/install.sh          # sfi with the built-in engines (flow, crossfade)
#   bash scripts/install.sh semfi    # + the SemFi engine (torch, diffsynth)
#   bash scripts/install.sh farm     # + Ray, for --executor ray (docs/farm.md)
#   bash scripts/install.sh test     # + SemFi + Ray + everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=""
case "${1:-}" in
  "") ;;
  semfi) extras="[semfi]" ;;
  farm) extras="[farm]" ;;
  test) extras="[semfi,farm,test]" ;;
  *) echo "usage: bash scripts/install.sh [semfi|farm|test]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
pip install -q -e ".${extras}"
.venv/bin/python -c "import cv2, scenedetect" || { echo "install check failed: cv2/scenedetect do not import" >&2; exit 1; }
