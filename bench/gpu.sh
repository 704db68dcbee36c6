#!/usr/bin/env bash
# GPU benchmark for a lent GPU machine (see bench/gpu.py); finishes in under 8 minutes.
#   bash bench/gpu.sh            # ResNet-50 224 px and ResNet-18 32 px, bf16 + channels-last
#                                # and fp32, augmentation on the GPU or in CPU workers
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 470 .venv/bin/python bench/gpu.py --steps 15 --warmup 4 "$@"
