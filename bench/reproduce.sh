#!/usr/bin/env bash
# Reproduce a published SimCLR figure: pre-train with a preset of configs/experiment/, evaluate
# the encoder with the matching protocol of configs/evaluation/, and append both runs' figures
# to results/<PRESET>.json (docs/reproducing.md).
#
#   bash bench/reproduce.sh PRESET [--smoke] [--evaluation NAME] [OVERRIDE ...]
#
#   bash bench/reproduce.sh cifar10_resnet18                        # the real run (GPU)
#   bash bench/reproduce.sh imagenet_resnet50 data.root=/datasets/imagenet trainer.devices=8
#   bash bench/reproduce.sh cifar10_resnet18 --smoke                # the same chain, toy scale
#   bash bench/reproduce.sh imagenet_resnet50_w1_1000ep --evaluation finetune_imagenet_1pct_v1
#
# --evaluation NAME: another protocol of configs/evaluation/ than the preset's own (below), e.g.
# a semi-supervised one after the pre-training it pairs with (the preset file names it).
# OVERRIDEs go to both train.py and finetune.py (e.g. data.root, trainer.devices). --smoke runs
# the same two commands on data=fake shaped like the real set (its image size and number of
# classes), with a tiny ResNet-18 (width 0.25; a one-block ViT-Tiny for the ViT preset),
# batches of 8 and two steps, on the CPU: it proves the chain (configs compose, checkpoint
# hand-over, results file), not the figures.
# Runs go to logs/reproduce/<PRESET>/<time>/{pretrain,evaluation}/ under the current folder,
# the figures to ${RESULTS_DIR:-results}/<PRESET>.json (a list: one entry per run).
set -euo pipefail

usage() {
    echo "usage: bash bench/reproduce.sh PRESET [--smoke] [--evaluation NAME] [OVERRIDE ...]" >&2
    echo "presets: ${!EVALUATION[*]}" >&2
    exit 2
}

# Each pre-training preset: its evaluation protocol, and the real data set's image size and
# number of classes (the shape of --smoke's fake data).
declare -A EVALUATION=(
    [cifar10_resnet18]=linear_cifar10
    [cifar100_resnet18]=linear_cifar100
    [cifar10_resnet50]=linear_cifar10
    [stl10_resnet18]=linear_stl10
    [imagenet_resnet50]=linear_imagenet
    [imagenet_resnet50_simclrv2]=linear_imagenet
    [imagenet_resnet50_w2_simclrv2]=linear_imagenet
    [imagenet_resnet50_w1_1000ep]=linear_imagenet
    [imagenet_resnet50_w2_1000ep]=linear_imagenet
    [imagenet_resnet50_w4_1000ep]=linear_imagenet
    [imagenet_vit_small]=linear_imagenet
)
declare -A SHAPE=(
    [cifar10_resnet18]="32 10"
    [cifar100_resnet18]="32 100"
    [cifar10_resnet50]="32 10"
    [stl10_resnet18]="96 10"
    [imagenet_resnet50]="224 1000"
    [imagenet_resnet50_simclrv2]="224 1000"
    [imagenet_resnet50_w2_simclrv2]="224 1000"
    [imagenet_resnet50_w1_1000ep]="224 1000"
    [imagenet_resnet50_w2_1000ep]="224 1000"
    [imagenet_resnet50_w4_1000ep]="224 1000"
    [imagenet_vit_small]="224 1000"
)
# --smoke's tiny encoder: a slim ResNet-18, or, for a timm preset, a timm model of the preset's
# family cut to one block (the timm path: its parameter groups, checkpoint and evaluation).
SMOKE_RESNET="backbone=resnet18_slim backbone.width=0.25"
declare -A SMOKE_BACKBONE=(
    [imagenet_vit_small]="backbone.model=vit_tiny_patch16_224 +backbone.model_args.depth=1"
)

[[ $# -ge 1 ]] || usage
PRESET=$1
shift
[[ -n ${EVALUATION[$PRESET]:-} ]] || { echo "unknown preset: $PRESET" >&2; usage; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMOKE=false
EVAL=${EVALUATION[$PRESET]}
while [[ ${1:-} == --smoke || ${1:-} == --evaluation ]]; do
    if [[ $1 == --smoke ]]; then
        SMOKE=true
        shift
    else
        [[ $# -ge 2 ]] || usage
        EVAL=$2
        shift 2
        [[ -f $ROOT/configs/evaluation/$EVAL.yaml ]] || {
            echo "unknown evaluation: $EVAL (configs/evaluation/)" >&2
            exit 2
        }
    fi
done

if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
RESULTS_DIR=${RESULTS_DIR:-results}
RUN=logs/reproduce/$PRESET/$(date -u +%Y-%m-%d_%H-%M-%S)

PRETRAIN_ARGS=()
EVAL_ARGS=()
if $SMOKE; then
    read -r SIZE CLASSES <<<"${SHAPE[$PRESET]}"
    FAKE=(
        data=fake "data.image_size=$SIZE" "data.options.num_classes=$CLASSES"
        data.options.num_train=16 data.options.num_val=8 data.options.num_test=8
        data.batch_size=8 data.eval_batch_size=16 data.num_workers=0
        trainer=cpu trainer.max_epochs=1 trainer.limit_train_batches=2
        logger=csv callbacks.progress_bar=null
    )
    # fake has no unlabelled split (STL-10's preset reads one); train+val as the CIFAR presets.
    # Width 0.25, not the tests' usual 0.125: at 224 px, width 0.125 (an 8-channel stem) with
    # channels-last crashed torch's CPU kernels here (segmentation fault; 0.25 does not).
    read -r -a TINY_BACKBONE <<<"${SMOKE_BACKBONE[$PRESET]:-$SMOKE_RESNET}"
    PRETRAIN_ARGS=(
        "${FAKE[@]}" data.pretrain_split=train+val "${TINY_BACKBONE[@]}" callbacks.pictures=null
    )
    # fake's images have no ImageNet file names, so a published list of labelled images
    # (label_subset, the semi-supervised presets') would find none of them: smoke runs use
    # none (every fake training image); the linear presets have no list anyway. Their
    # select_on_val=false (no validation loop, the last epoch tested) runs as it is.
    EVAL_ARGS=(
        "${FAKE[@]}" label_subset=null
        trainer.limit_val_batches=1 +trainer.limit_test_batches=1
    )
fi

echo "== pre-training: experiment=$PRESET -> $RUN/pretrain" >&2
"$PYTHON" "$ROOT/train.py" "experiment=$PRESET" "${PRETRAIN_ARGS[@]}" "$@" \
    "hydra.run.dir=$RUN/pretrain"
CKPT=$RUN/pretrain/checkpoints/last.ckpt
[[ -f $CKPT ]] || { echo "pre-training left no $CKPT" >&2; exit 1; }

echo "== evaluation: evaluation=$EVAL -> $RUN/evaluation" >&2
"$PYTHON" "$ROOT/finetune.py" "evaluation=$EVAL" "pretrained_ckpt=$CKPT" "${EVAL_ARGS[@]}" "$@" \
    "hydra.run.dir=$RUN/evaluation"

mkdir -p "$RESULTS_DIR"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
"$PYTHON" - "$RESULTS_DIR/$PRESET.json" "$PRESET" "$EVAL" "$SMOKE" "$RUN" "$COMMIT" <<'EOF'
"""Append this run's figures to results/<PRESET>.json (a JSON list, one entry per run)."""
import datetime
import json
import sys
from pathlib import Path

path, preset, evaluation, smoke, run, commit = sys.argv[1:]
results = Path(path)
entries = json.loads(results.read_text()) if results.exists() else []
entries.append(
    {
        "preset": preset,
        "evaluation": evaluation,
        "smoke": smoke == "true",
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "run": run,
        "pretrain": json.loads((Path(run) / "pretrain" / "metrics.json").read_text()),
        "evaluation_metrics": json.loads((Path(run) / "evaluation" / "metrics.json").read_text()),
    }
)
results.write_text(json.dumps(entries, indent=2) + "\n")
last = entries[-1]["evaluation_metrics"]
print(f"{preset}: test/acc {last.get('test/acc', float('nan')):.4f}; appended to {results}")
EOF
