#!/usr/bin/env bash
# GPU benchmark for a lent GPU machine (see bench/gpu.py); finishes in under 10 minutes.
#   bash bench/gpu.sh            # ResNet-50 224 px and ResNet-18 32 px, bf16 + channels-last
#                                # and fp32, augmentation on the GPU or in CPU workers; first,
#                                # the folder pipelines (bench/data.py --cuda): nvJPEG decoding
#                                # (data.pipeline=device_decode) and ResNet-50 on JPEG files
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 120 .venv/bin/python bench/data.py --cuda --images 512 || echo "bench/data.py --cuda failed"
timeout 440 .venv/bin/python bench/gpu.py --steps 15 --warmup 4 "$@"
