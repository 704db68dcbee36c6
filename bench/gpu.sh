#!/usr/bin/env bash
# Everything for a lent GPU machine, which needs no network: run `make gpu-wheels` beforehand
# where there is one (it fills .whl/ with the wheels the node's Python lacks), then on the node
#   bash bench/gpu.sh [PYTHON]     # the node's Python 3.12 with torch (default: python3)
# 1. make gpu-check (< 8 minutes): bench/gpu_check.py, the CUDA paths against the CPU with a
#    PASS/FAIL line each, and ResNet-50 224 px / ResNet-18 32 px images/s and peak memory
#    (bench/gpu.py); all in gpu_check.json.
# 2. bench/data.py --cuda (< 2 minutes): nvJPEG decoding (data.pipeline=device_decode) views/s,
#    and ResNet-50 on a JPEG folder with each data.pipeline. Its photographs come from
#    scikit-learn: skipped where the node lacks it.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
SITE=/tmp/simclr-gpu-site
make gpu-check GPU_PYTHON="$PYTHON" GPU_SITE="$SITE"
status=$?
export PYTHONPATH="$PWD/src:$SITE"
if "$PYTHON" -c "import sklearn" 2>/dev/null; then
    timeout 120 "$PYTHON" bench/data.py --cuda --images 512 || echo "bench/data.py --cuda failed"
else
    echo "bench/data.py --cuda skipped: no scikit-learn here (its sample photographs)"
fi
exit $status
