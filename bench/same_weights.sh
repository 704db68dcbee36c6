#!/usr/bin/env bash
# Behaviour-preserving refactors prove themselves with bit-identical weights: two epochs of
# experiment=digits_quick (seed 0), then a linear and a full fine-tune (2 epochs, 10% of the
# labels) and a full one from the first layer of the projection head. Prints the sha256 of
# each sorted state dict (pre-training's, and each fine-tuning's last weights) and the test
# accuracies; run it on the code before and after a change and compare the lines.
#   bash bench/same_weights.sh OUT_DIR [extra train.py overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "$1"); shift; mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src"
$PY train.py experiment=digits_quick seed=0 trainer.max_epochs=2 callbacks.progress_bar=null \
  paths.output_dir="$OUT/pre" hydra.run.dir="$OUT/pre" "$@" > "$OUT/pre.log" 2>&1
CKPT="$OUT/pre/checkpoints/last.ckpt"
weights() {  # NAME CHECKPOINT: the sha256 of its sorted state dict
  $PY - "$@" <<'PY'
import hashlib, sys, torch
state = torch.load(sys.argv[2], map_location="cpu", weights_only=False)["state_dict"]
digest = hashlib.sha256()
for key in sorted(state):
    digest.update(key.encode())
    digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
print(sys.argv[1], "weights", digest.hexdigest(), len(state))
PY
}
weights pretrain "$CKPT"
for RUN in "linear mode=linear" "full mode=full" "head1 mode=full from_head_layer=1"; do
  read -r NAME OPTIONS <<< "$RUN"
  # shellcheck disable=SC2086  # OPTIONS are several overrides
  $PY finetune.py pretrained_ckpt="$CKPT" $OPTIONS trainer.max_epochs=2 seed=0 \
    label_fraction=0.1 callbacks.progress_bar=null paths.output_dir="$OUT/ft_$NAME" \
    hydra.run.dir="$OUT/ft_$NAME" > "$OUT/ft_$NAME.log" 2>&1
  weights "$NAME" "$OUT/ft_$NAME/checkpoints/last.ckpt"
  echo "$NAME $(grep -h -o '"test/acc": [0-9.e-]*' "$OUT/ft_$NAME/metrics.json")"
done
