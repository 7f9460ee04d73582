#!/usr/bin/env bash
# The GPU path, measured (issue 11 §3). One short run (under 5 minutes on one GPU) printing, for the
# full-size recipes, with random data and random init (nothing downloads):
#   - TransUNet R50-ViT-B/16 training steps/s at batch 24 x 224², AMP off and on, peak GPU memory;
#   - slide-map megapixels/s (weakseg.maps.predict_slide_map over a synthetic 8192² slide);
#   - embedding tiles/s with a ResNet-50 (weakseg.features.FeatureExtractor), fp32 and AMP;
#   - 1-GPU vs 2-process DDP throughput when two GPUs exist.
#
# usage: benchmarks/gpu_check.sh [--dry] [--no-ddp] [--json FILE]
#   --dry (or GPU_CHECK_DRY=1): the same code paths on the CPU with tiny sizes, in seconds
#   PYTHON=path/to/python picks the interpreter (default .venv/bin/python, else python3);
#   GPU_CHECK_TIMEOUT=seconds caps the run (default 290).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
args=()
if [ "${GPU_CHECK_DRY:-0}" = "1" ]; then args+=(--dry); fi
exec timeout "${GPU_CHECK_TIMEOUT:-290}" "$PY" benchmarks/gpu_check.py ${args[@]+"${args[@]}"} "$@"
