#!/usr/bin/env bash
# Behaviour-preserving refactors prove themselves with bit-identical weights: two epochs of
# experiment=digits_quick (seed 0), then a linear and a full fine-tune (2 epochs, 10% of the
# labels). Prints the sha256 of the sorted pre-training state dict and the test accuracies;
# run it on the code before and after a change and compare the lines.
#   bash bench/same_weights.sh OUT_DIR [extra train.py overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "$1"); shift; mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src"
$PY train.py experiment=digits_quick seed=0 trainer.max_epochs=2 callbacks.progress_bar=null \
  paths.output_dir="$OUT/pre" hydra.run.dir="$OUT/pre" "$@" > "$OUT/pre.log" 2>&1
CKPT="$OUT/pre/checkpoints/last.ckpt"
$PY - "$CKPT" <<'PY'
import hashlib, sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)["state_dict"]
digest = hashlib.sha256()
for key in sorted(state):
    digest.update(key.encode())
    digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
print("weights", digest.hexdigest(), len(state))
PY
for MODE in linear full; do
  $PY finetune.py pretrained_ckpt="$CKPT" mode=$MODE trainer.max_epochs=2 seed=0 \
    label_fraction=0.1 callbacks.progress_bar=null paths.output_dir="$OUT/ft_$MODE" \
    hydra.run.dir="$OUT/ft_$MODE" > "$OUT/ft_$MODE.log" 2>&1
  echo "$MODE $(grep -h -o '"test/acc": [0-9.e-]*' "$OUT/ft_$MODE/metrics.json")"
done
