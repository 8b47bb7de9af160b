#!/usr/bin/env bash
# What a lent GPU machine runs (docs/gpu.md, "Measured on an H100"): its own python3 (not .venv), this checkout
# on PYTHONPATH, and the folder .devrun/ that was prepared and carried beside it (nothing there is fetched).
#   PY=.venv/bin/python ERA_CACHE_DIR=<a default-profile cache> scripts/device_pass.sh prepare
#                                      # here, on CPU: fills .devrun/ (list it in .git/info/exclude; carry
#                                      # .devrun/gc in one call, .devrun/dp in another: each is about 50 MB)
#   scripts/device_pass.sh gpu-check   # era_core.tools.gpu_check: encoding from .devrun/gc/minilm-l6-fp16, the
#                                      # training check from .devrun/gc/smoke_vectors.npz
#   scripts/device_pass.sh default     # era_core.tools.cuda_pass run on .devrun/dp/*.npz (default profile, CUDA vs CPU)
# Results go to $OUT (the device tool's folder) or results/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
PY=${PY:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${1:-}" = prepare ]; then
  # minilm-l6's package folder with its float weights stored as fp16 (45 MB instead of 91 MB: under the device's
  # 64 MiB limit); the encoder loads them as fp32 or fp16, CPU and CUDA alike, so both time the same weights.
  "$PY" - <<'PYEOF'
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file
from era_core.encoders import REGISTRY, resolve_weights
src, dst = resolve_weights(REGISTRY["minilm-l6"]), Path(".devrun/gc/minilm-l6-fp16")
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md", ".gitattributes", "data_config.json"))
sd = load_file(src / "model.safetensors")
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, dst / "model.safetensors",
          metadata={"format": "pt"})
PYEOF
  mkdir -p .devrun/gc/cache/data .devrun/dp
  cp -a "$ERA_CACHE_DIR/data/offline-smoke-v1" .devrun/gc/cache/data/
  "$PY" -m era_core.tools.gpu_check --save-vectors .devrun/gc/smoke_vectors.npz
  "$PY" -m era_core.tools.cuda_pass export .devrun/dp/default_native_0.4.npz \
    --methods era,label_only,alignment_only,small_adapter,fused,embedding_adapter ${SELECTION:+--selection "$SELECTION"}
  du -sh .devrun/gc .devrun/dp
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PY" -c 'import torch,transformers,sentence_transformers;print(torch.__version__, transformers.__version__, sentence_transformers.__version__)'
case "${1:-}" in
  gpu-check)
    ERA_CACHE_DIR=$PWD/.devrun/gc/cache "$PY" -m era_core.tools.gpu_check --weights .devrun/gc/minilm-l6-fp16 \
      --vectors .devrun/gc/smoke_vectors.npz --out "$OUT/gpu_check.json" "${@:2}" ;;
  default)
    ERA_CACHE_DIR=$PWD/.devrun/dp/cache "$PY" -m era_core.tools.cuda_pass run .devrun/dp/default_native_0.4.npz \
      --out "$OUT/gpu_default_cuda.json" "${@:2}" ;;
  *) echo "usage: scripts/device_pass.sh prepare|gpu-check|default [extra options]" >&2; exit 64 ;;
esac
