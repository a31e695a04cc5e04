#!/usr/bin/env bash
# Acceptance: `sfi fill` (flow engine) on real footage with hard cuts, output checked by probing.
# Usage: bash .ci/acceptance_fill.sh ../shared/data     (called by .ci/run when ../shared exists)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python .ci/acceptance_fill.py "${1:-../shared/data}"
