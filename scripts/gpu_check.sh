#!/usr/bin/env bash
# GPU self-check: CUDA vs CPU encoding throughput and agreement, adapter training and top-k retrieval.
# Usage: scripts/gpu_check.sh [--out results/gpu_check.json] [other era_core.tools.gpu_check options]
# Exit code 2 (with a message) on a machine without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" -m era_core.tools.gpu_check "$@"
