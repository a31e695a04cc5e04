#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv/ and install sfi into it.
#   bash scripts/install.sh          # sfi with the built-in engines (flow, crossfade)
#   bash scripts/install.sh semfi    # + the SemFi engine (torch, diffsynth)
#   bash scripts/install.sh nle      # + NLE timelines (OpenTimelineIO with its FCP XML and EDL adapters)
#   bash scripts/install.sh farm     # + Ray, for --executor ray (docs/farm.md)
#   bash scripts/install.sh test     # + SemFi + NLE timelines + Ray + everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=""
case "${1:-}" in
  "") ;;
  semfi) extras="[semfi]" ;;
  nle) extras="[nle]" ;;
  farm) extras="[farm]" ;;
  test) extras="[semfi,nle,farm,test]" ;;
  *) echo "usage: bash scripts/install.sh [semfi|nle|farm|test]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
pip install -q -e ".${extras}"
.venv/bin/python -c "import cv2, scenedetect" || { echo "install check failed: cv2/scenedetect do not import" >&2; exit 1; }
case "$extras" in
  *nle*) .venv/bin/python -c "import opentimelineio as otio; [otio.adapters.from_name(n) for n in ('fcp_xml', 'cmx_3600')]" \
    || { echo "install check failed: OpenTimelineIO or its FCP XML / CMX 3600 adapters do not load" >&2; exit 1; } ;;
esac
