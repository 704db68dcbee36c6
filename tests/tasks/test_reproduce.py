"""The paper-reproduction presets carry the published values, and ``bench/reproduce.sh`` runs.

1. For every pre-training preset (``configs/experiment/``) and every evaluation preset
   (``configs/evaluation/``, finetune.py's), the table below holds the values its source
   publishes; the config Hydra composes from the preset must carry exactly those, and the
   preset's file must name the published figure.
2. ``bench/reproduce.sh PRESET --smoke`` (pre-training, evaluation, results file) passes for
   every preset, on fake data shaped like the real set: two chains at a time, one thread each,
   about 3 s of CPU per preset (their processes forked from one that has imported torch and
   Lightning), all of them in the default suite.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import CONFIG_DIR, ROOT, assert_accuracies_counted, compose_config
from preloaded import python_command

# One make test worker takes this whole file: its module fixture
# (the smoke chains) is built once.
pytestmark = pytest.mark.xdist_group("test_reproduce")

# Shared by every SimCLR recipe here: LARS with momentum 0.9, 10 warm-up epochs then cosine
# decay to zero, a head projecting to 128 dimensions, the official loss (loss_a + loss_b), no
# memory buffer (SimCLR v1 and the official code have none).
COMMON_PRETRAIN = dict(
    optimizer="lars",
    momentum=0.9,
    warmup_epochs=10,
    min_lr_ratio=0.0,
    head_output_dim=128,
    sum_over_views=True,
    memory_size=0,
)
# The official README's CIFAR-10 command (google-research/simclr at 383d414).
README_CIFAR = dict(
    COMMON_PRETRAIN,
    batch=512,
    epochs=1000,
    lr=1.0,
    lr_scaling="linear",
    weight_decay=1e-4,
    temperature=0.5,
    color_strength=0.5,
    blur_prob=0.0,
    backbone="resnet18",
    width=1,
    small_stem=True,
    head_layers=3,  # run.py's default num_proj_layers
    image_size=32,
    brightness="multiplicative",  # the code at 383d414 (SimCLR v2's random_brightness)
)
# The paper's default setting (section 2.3) at 1000 epochs (section 6).
PAPER_IMAGENET_1000 = dict(
    COMMON_PRETRAIN,
    data="imagenet",
    batch=4096,
    epochs=1000,
    lr=0.3,
    lr_scaling="linear",
    weight_decay=1e-6,
    temperature=0.1,
    color_strength=1.0,
    blur_prob=0.5,
    small_stem=False,
    head_layers=2,
    image_size=224,
    sync_batchnorm=True,
    # SimCLR v1's code (first release be133b3, data_util.py): tf.image.random_brightness.
    brightness="additive",
    evaluation="linear_imagenet",
)
# SimCLR v2 (arXiv:2006.10029, section 3.1): batch 4096, global BN, 800 epochs, 5% warm-up to
# 0.1 x sqrt(B), cosine decay, weight decay 1e-4, 3-layer head, a 64K memory buffer with
# moving-average decay 0.999; temperature, head output, colour and blur: tf2/run.py defaults.
PAPER_V2_IMAGENET = dict(
    COMMON_PRETRAIN,
    data="imagenet",
    batch=4096,
    epochs=800,
    lr=0.1,
    lr_scaling="sqrt",
    weight_decay=1e-4,
    warmup_epochs=40,
    temperature=0.1,
    color_strength=1.0,
    blur_prob=0.5,
    small_stem=False,
    head_layers=3,
    image_size=224,
    sync_batchnorm=True,
    memory_size=65536,
    memory_momentum=0.999,
    memory_source="momentum",
    brightness="multiplicative",  # the code at 383d414 (SimCLR v2's random_brightness)
    evaluation="linear_imagenet",
)

# Each pre-training preset: the values of its source, the figure its file must name (None:
# a preset without a published figure), and its evaluation preset.
PRETRAIN = {
    "cifar10_resnet18": dict(
        README_CIFAR, data="cifar10", figure="91%", evaluation="linear_cifar10"
    ),
    "cifar100_resnet18": dict(
        README_CIFAR, data="cifar100", figure=None, evaluation="linear_cifar100"
    ),
    # The paper's appendix B.9: ResNet-50 with the small stem, batch 1024, 94.0%.
    "cifar10_resnet50": dict(
        COMMON_PRETRAIN,
        data="cifar10",
        batch=1024,
        epochs=1000,
        lr=1.0,
        lr_scaling="linear",
        weight_decay=1e-6,
        temperature=0.5,
        color_strength=0.5,
        blur_prob=0.0,
        backbone="resnet50_w1",
        width=1,
        small_stem=True,
        head_layers=2,
        image_size=32,
        brightness="additive",  # SimCLR v1's code, as the ImageNet 1000-epoch presets
        figure="94.0%",
        evaluation="linear_cifar10",
    ),
    # The official README's ImageNet command: sqrt scaling, 0.075 x sqrt(4096) = 4.8.
    "imagenet_resnet50": dict(
        COMMON_PRETRAIN,
        data="imagenet",
        batch=4096,
        epochs=100,
        lr=0.075,
        lr_scaling="sqrt",
        weight_decay=1e-4,
        temperature=0.1,
        color_strength=1.0,
        blur_prob=0.5,
        backbone="resnet50_w1",
        width=1,
        small_stem=False,
        head_layers=3,
        image_size=224,
        sync_batchnorm=True,
        brightness="multiplicative",
        figure="64.5%",
        evaluation="linear_imagenet",
    ),
    # Figures: the official README's SimCLR v2 checkpoint table (r50_1x_sk0, r50_2x_sk0).
    "imagenet_resnet50_simclrv2": dict(
        PAPER_V2_IMAGENET, backbone="resnet50_w1", width=1, figure="71.7%"
    ),
    "imagenet_resnet50_w2_simclrv2": dict(
        PAPER_V2_IMAGENET, backbone="resnet50_w2", width=2, figure="75.6%"
    ),
    "imagenet_resnet50_w1_1000ep": dict(
        PAPER_IMAGENET_1000, backbone="resnet50_w1", width=1, figure="69.3%"
    ),
    "imagenet_resnet50_w2_1000ep": dict(
        PAPER_IMAGENET_1000, backbone="resnet50_w2", width=2, figure="74.2%"
    ),
    "imagenet_resnet50_w4_1000ep": dict(
        PAPER_IMAGENET_1000, backbone="resnet50_w4", width=4, figure="76.5%"
    ),
    # MoCo v3's ViT-S recipe (Chen, Xie, He 2021; facebookresearch/moco-v3 CONFIG.md) with
    # SimCLR's loss and augmentation; the figure is MoCo v3's own (73.2%, 300 epochs).
    "imagenet_vit_small": dict(
        data="imagenet",
        batch=4096,
        epochs=300,
        optimizer="adamw",
        betas=[0.9, 0.999],
        lr=1.5e-4,
        lr_scaling="linear",
        weight_decay=0.1,
        warmup_epochs=40,
        min_lr_ratio=0.0,
        temperature=0.2,
        sum_over_views=True,
        head_layers=3,
        head_hidden_dim=4096,
        head_output_dim=256,
        color_strength=1.0,
        blur_prob=0.5,
        brightness="multiplicative",
        backbone="timm",
        timm_model="vit_small_patch16_224",
        model_args={"num_heads": 12},  # MoCo v3's vits.py: 12 heads (timm's ViT-S has 6)
        pretrained=False,
        image_size=224,
        sync_batchnorm=True,
        figure="73.2%",
        evaluation="linear_imagenet",
    ),
    # A community preset: the README's CIFAR optimisation, the paper's 96 px augmentation.
    "stl10_resnet18": dict(
        README_CIFAR,
        data="stl10",
        epochs=500,
        color_strength=1.0,
        blur_prob=0.5,
        small_stem=False,
        image_size=96,
        figure=None,
        evaluation="linear_stl10",
    ),
}

# The official linear evaluation (README; the paper's appendix B.6): Nesterov momentum SGD at
# 0.1 x B/256, no warm-up, cosine decay, the encoder frozen in inference mode, a plain linear
# classifier on h starting at zero (--zero_init_logits_layer=True), crops and flips only,
# every training image (no validation split held out) and the last epoch tested
# (--mode=train_then_eval). classifier_group only matters with LARS: the default.
OFFICIAL_LINEAR = dict(
    mode="linear",
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    lr=0.1,
    lr_scaling="linear",
    warmup_epochs=0,
    min_lr_ratio=0.0,
    head_batch_norm=False,
    gradient_clip_val=None,
    label_fraction=1.0,
    label_subset=None,
    from_head_layer=0,
    zero_init_classifier=True,
    classifier_group="weights",
    select_on_val=False,
    crop_scale=[0.08, 1.0],
    flip_prob=0.5,
)
LINEAR_CIFAR = dict(OFFICIAL_LINEAR, batch=512, epochs=100, weight_decay=0.0, figure="91%")
# The README's semi-supervised 1% command: LARS 0.005 x sqrt(B), batch 1024, 60 epochs,
# no weight decay, global BatchNorm; the official 1% list (imagenet2012_subset/1pct), from
# the first layer of a 3-layer head (--num_proj_layers=3 --ft_proj_selector=1), a
# zero-initialised classifier outside LARS's adaptation (the official LARS excludes
# head_supervised), every listed image and the last epoch tested (--mode=train_then_eval).
# pairs_with: the pre-training preset whose head this starts from (not a config value).
README_1PCT = dict(
    mode="full",
    optimizer="lars",
    momentum=0.9,
    lr=0.005,
    lr_scaling="sqrt",
    weight_decay=0.0,
    batch=1024,
    epochs=60,
    warmup_epochs=0,
    min_lr_ratio=0.0,
    head_batch_norm=False,
    gradient_clip_val=None,
    sync_batchnorm=True,
    label_fraction=1.0,
    label_subset="imagenet_1pct",
    from_head_layer=1,
    zero_init_classifier=True,
    classifier_group="unadapted",
    select_on_val=False,
    crop_scale=[0.08, 1.0],
    flip_prob=0.5,
    data="imagenet",
    figure="48.3",
    pairs_with="imagenet_resnet50_simclrv2",
)

# SimCLR v1's semi-supervised fine-tuning (the paper's appendix B.5): Nesterov momentum 0.9 at
# 0.05 x B/256, batch 4096, no warm-up, no weight decay, crops and flips only, 60 epochs for 1%;
# from h (v1 keeps no head layer). Cosine decay, global BatchNorm and the classifier's default
# initialisation are the first code release's defaults (be133b3); the official list, every
# listed image and the last epoch tested, as the other official protocols here.
V1_1PCT = dict(
    mode="full",
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    lr=0.05,
    lr_scaling="linear",
    weight_decay=0.0,
    batch=4096,
    epochs=60,
    warmup_epochs=0,
    min_lr_ratio=0.0,
    head_batch_norm=False,
    gradient_clip_val=None,
    sync_batchnorm=True,
    label_fraction=1.0,
    label_subset="imagenet_1pct",
    from_head_layer=0,
    zero_init_classifier=False,
    classifier_group="weights",
    select_on_val=False,
    crop_scale=[0.08, 1.0],
    flip_prob=0.5,
    data="imagenet",
    figure="48.3",
    pairs_with="imagenet_resnet50_w1_1000ep",
)
# SimCLR v2's rate for its larger ResNets (width > 1 and/or SK): 0.002 x sqrt(B) (the v2
# paper's section 3.1), the README's command otherwise, after SimCLR v2's pre-training of a
# larger ResNet; the figure is table 1's largest model's.
LARGE_RATE = dict(lr=0.002, lr_scaling="sqrt", pairs_with="imagenet_resnet50_w2_simclrv2")

EVALUATION = {
    "linear_cifar10": dict(LINEAR_CIFAR, data="cifar10"),
    "linear_cifar100": dict(LINEAR_CIFAR, data="cifar100", figure=None),
    "linear_stl10": dict(LINEAR_CIFAR, data="stl10", figure=None),
    "linear_imagenet": dict(
        OFFICIAL_LINEAR,
        data="imagenet",
        batch=4096,
        epochs=90,
        weight_decay=1e-6,
        sync_batchnorm=False,
        figure="69.3",
    ),
    "finetune_imagenet_1pct": README_1PCT,
    # The paper's 30 epochs for 10% (appendix B.5).
    "finetune_imagenet_10pct": dict(
        README_1PCT, label_subset="imagenet_10pct", epochs=30, figure="65.6"
    ),
    "finetune_imagenet_1pct_v1": V1_1PCT,
    # The paper's 30 epochs for 10% (appendix B.5).
    "finetune_imagenet_10pct_v1": dict(
        V1_1PCT, label_subset="imagenet_10pct", epochs=30, figure="65.6"
    ),
    "finetune_imagenet_1pct_large": dict(README_1PCT, **LARGE_RATE, figure="74.9"),
    "finetune_imagenet_10pct_large": dict(
        README_1PCT, **LARGE_RATE, label_subset="imagenet_10pct", epochs=30, figure="80.1"
    ),
}

# Keys of a table row that are not config values.
NOT_CONFIG = ("figure", "evaluation", "pairs_with")
# Classes of each real data set: the shape of the smoke runs' fake data.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "imagenet": 1000}
# Presets of configs/experiment/ that reproduce nothing published.
NOT_REPRODUCTIONS = {"digits_quick"}
# Evaluation presets that no pre-training preset chains by default (the semi-supervised ones):
# each runs after the pre-training preset it pairs with (bench/reproduce.sh --evaluation).
OTHER_EVALUATIONS = sorted(set(EVALUATION) - {row["evaluation"] for row in PRETRAIN.values()})


def options(group: str) -> set[str]:
    return {path.stem for path in (CONFIG_DIR / group).glob("*.yaml")}


def test_every_preset_has_its_table_of_published_values():
    assert options("experiment") - NOT_REPRODUCTIONS == PRETRAIN.keys()
    assert options("evaluation") == EVALUATION.keys()
    assert {row["evaluation"] for row in PRETRAIN.values()} <= EVALUATION.keys()
    assert all(EVALUATION[name].get("pairs_with") in PRETRAIN for name in OTHER_EVALUATIONS)


def pretrain_values(cfg) -> dict:
    """The published quantities, as the composed pre-training config ``cfg`` sets them."""
    small_stem = cfg.backbone.get("small_stem")
    return dict(
        data=cfg.data.name,
        image_size=cfg.data.image_size,
        batch=cfg.data.batch_size,
        epochs=cfg.trainer.max_epochs,
        optimizer=cfg.optimizer.name,
        momentum=cfg.optimizer.get("momentum"),
        betas=list(cfg.optimizer.betas) if "betas" in cfg.optimizer else None,
        lr=cfg.optimizer.lr,
        lr_scaling=cfg.optimizer.lr_scaling,
        weight_decay=cfg.optimizer.weight_decay,
        warmup_epochs=cfg.scheduler.warmup_epochs,
        min_lr_ratio=cfg.scheduler.min_lr_ratio,
        temperature=cfg.model.temperature,
        sum_over_views=cfg.model.sum_over_views,
        head_layers=cfg.model.head.num_layers,
        head_hidden_dim=cfg.model.head.hidden_dim,
        head_output_dim=cfg.model.head.output_dim,
        color_strength=cfg.data.augment.color_strength,
        blur_prob=cfg.data.augment.blur_prob,
        brightness=cfg.data.augment.brightness,
        backbone=cfg.backbone.name,
        width=cfg.backbone.get("width"),
        timm_model=cfg.backbone.get("model"),
        model_args=dict(cfg.backbone.get("model_args") or {}),
        pretrained=cfg.backbone.get("pretrained"),
        # null: the small stem for images of 32 px or less (backbones.use_small_stem).
        small_stem=cfg.data.image_size <= 32 if small_stem is None else small_stem,
        sync_batchnorm=cfg.trainer.get("sync_batchnorm", False),
        memory_size=cfg.model.memory.size,
        memory_momentum=cfg.model.memory.momentum,
        memory_source=cfg.model.memory.source,
    )


@pytest.mark.parametrize("preset", sorted(PRETRAIN))
def test_pretraining_preset_carries_the_published_values(preset, tmp_path):
    cfg = compose_config([f"experiment={preset}"], tmp_path)
    published = {k: v for k, v in PRETRAIN[preset].items() if k not in NOT_CONFIG}
    published.setdefault("sync_batchnorm", False)
    composed = pretrain_values(cfg)
    assert {k: composed[k] for k in published} == published
    # Pre-training never reads the test split; the official runs read every training image.
    assert "train" in cfg.data.pretrain_split.split("+")
    assert "test" not in cfg.data.pretrain_split.split("+")
    text = (CONFIG_DIR / "experiment" / f"{preset}.yaml").read_text()
    figure = PRETRAIN[preset]["figure"]
    if figure is None:
        assert "figure" in text.lower()  # says that it has none, and why
    else:
        assert figure in text, f"{preset}.yaml does not name its figure {figure}"


def evaluation_values(cfg) -> dict:
    """The published quantities, as the composed fine-tuning config ``cfg`` sets them."""
    return dict(
        data=cfg.data.name,
        mode=cfg.mode,
        batch=cfg.data.batch_size,
        epochs=cfg.trainer.max_epochs,
        optimizer=cfg.optimizer.name,
        momentum=cfg.optimizer.momentum,
        nesterov=cfg.optimizer.get("nesterov"),
        lr=cfg.optimizer.lr,
        lr_scaling=cfg.optimizer.lr_scaling,
        weight_decay=cfg.optimizer.weight_decay,
        warmup_epochs=cfg.scheduler.warmup_epochs,
        min_lr_ratio=cfg.scheduler.min_lr_ratio,
        head_batch_norm=cfg.head_batch_norm,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        sync_batchnorm=cfg.trainer.get("sync_batchnorm", False),
        label_fraction=cfg.label_fraction,
        label_subset=cfg.label_subset,
        from_head_layer=cfg.from_head_layer,
        zero_init_classifier=cfg.zero_init_classifier,
        classifier_group=cfg.classifier_group,
        select_on_val=cfg.select_on_val,
        crop_scale=list(cfg.augment.crop_scale),
        flip_prob=cfg.augment.flip_prob,
    )


@pytest.mark.parametrize("evaluation", sorted(EVALUATION))
def test_evaluation_preset_carries_the_published_values(evaluation, tmp_path):
    cfg = compose_config(
        [f"evaluation={evaluation}", "pretrained_ckpt=null"], tmp_path, config_name="finetune"
    )
    published = {k: v for k, v in EVALUATION[evaluation].items() if k not in NOT_CONFIG}
    composed = evaluation_values(cfg)
    assert {k: composed[k] for k in published} == published
    figure = EVALUATION[evaluation]["figure"]
    text = (CONFIG_DIR / "evaluation" / f"{evaluation}.yaml").read_text()
    assert figure is None or figure in text
    # A protocol run after another pre-training than the one chaining it by default pairs
    # with a preset on the same data, which its file names; fine-tuning from head layer k
    # needs that preset's head to have the layers (SimCLR v2: layer 1 of a 3-layer head).
    pairs_with = EVALUATION[evaluation].get("pairs_with")
    if composed["from_head_layer"]:
        assert pairs_with and PRETRAIN[pairs_with]["head_layers"] == 3 > composed["from_head_layer"]
    if pairs_with:
        assert PRETRAIN[pairs_with]["data"] == composed["data"]
        assert pairs_with in text


def test_reproduce_script_knows_every_preset_and_refuses_others(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "reproduce.sh"), "no_such_preset"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown preset: no_such_preset" in result.stderr
    listed = result.stderr.split("presets:")[1].split()
    assert set(listed) == PRETRAIN.keys()
    other = subprocess.run(
        ["bash", str(ROOT / "bench" / "reproduce.sh"), "imagenet_resnet50", "--evaluation", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other.returncode == 2 and "unknown evaluation: x" in other.stderr


# --- bench/reproduce.sh PRESET --smoke, for every preset ---------------------------------


def smoke(preset: str, folder: Path, evaluation: str | None = None) -> subprocess.CompletedProcess:
    """``bench/reproduce.sh preset --smoke`` in ``folder`` (with ``--evaluation`` where given)."""
    folder.mkdir(parents=True)
    chosen = ["--evaluation", evaluation] if evaluation else []
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHON": python_command(),
        "RESULTS_DIR": str(folder / "results"),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "reproduce.sh"), preset, "--smoke", *chosen],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# Each chain's Python processes are forked from one that has imported torch and Lightning
# (tests/preloaded.py), which would otherwise be 11 of the chain's 14 s of CPU; all nine run
# in the default suite (issue 13: every preset's chain in CI).


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory) -> dict[str, tuple[Path, Future]]:
    """The smoke chain of every preset this session tests, two at a time (one thread each);
    each test waits for its own."""
    selected = sorted(
        item.callspec.params["preset"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_reproduce_smoke_runs_the_chain"
    )
    root = tmp_path_factory.mktemp("reproduce")
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            preset: (root / preset, pool.submit(smoke, preset, root / preset))
            for preset in selected
        }


@pytest.mark.parametrize(
    "preset",
    sorted(PRETRAIN),
)
def test_reproduce_smoke_runs_the_chain(preset, smoke_runs):
    folder, running = smoke_runs[preset]
    result = running.result()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    entries = json.loads((folder / "results" / f"{preset}.json").read_text())
    assert len(entries) == 1
    entry = entries[0]
    assert entry["preset"] == preset and entry["smoke"] is True
    assert entry["evaluation"] == PRETRAIN[preset]["evaluation"]
    for metrics in (entry["pretrain"], entry["evaluation_metrics"]):
        assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert_accuracies_counted(entry["evaluation_metrics"])

    # The preset's recipe reached the run; only the scale (data, width, steps) is the smoke's.
    run = folder / entry["run"]
    pretrain = yaml.safe_load((run / "pretrain" / ".hydra" / "config.yaml").read_text())
    published = PRETRAIN[preset]
    assert pretrain["data"]["name"] == "fake"
    assert pretrain["data"]["image_size"] == published["image_size"]
    assert pretrain["model"]["temperature"] == published["temperature"]
    assert pretrain["optimizer"]["lr"] == published["lr"]
    assert pretrain["optimizer"]["lr_scaling"] == published["lr_scaling"]
    assert pretrain["model"]["head"]["num_layers"] == published["head_layers"]
    assert pretrain["model"]["memory"]["size"] == published.get("memory_size", 0)
    assert pretrain["data"]["augment"]["brightness"] == published["brightness"]
    if published["backbone"] == "timm":  # the smoke keeps the timm path (a one-block ViT)
        assert pretrain["backbone"]["name"] == "timm"
    evaluation = yaml.safe_load((run / "evaluation" / ".hydra" / "config.yaml").read_text())
    protocol = EVALUATION[entry["evaluation"]]
    assert evaluation["mode"] == protocol["mode"]
    for key in ("zero_init_classifier", "select_on_val", "from_head_layer", "classifier_group"):
        assert evaluation[key] == protocol[key], key
    if not protocol["select_on_val"]:  # no validation: the last epoch is tested
        assert "val/acc_best" not in entry["evaluation_metrics"]
        assert "select_on_val=false: testing the weights of the last epoch" in output
    assert evaluation["data"]["options"]["num_classes"] == NUM_CLASSES[published["data"]]
    assert f"loaded from {entry['run']}/pretrain/checkpoints/last.ckpt" in output


@pytest.fixture(scope="module")
def evaluation_smoke_runs(request, tmp_path_factory) -> dict[str, tuple[Path, Future]]:
    """The smoke chain of every other evaluation preset this session tests, after the
    pre-training preset it pairs with, two at a time."""
    selected = sorted(
        item.callspec.params["evaluation"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_reproduce_smoke_runs_other_evaluations"
    )
    root = tmp_path_factory.mktemp("reproduce_evaluations")
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            name: (
                root / name,
                pool.submit(smoke, EVALUATION[name]["pairs_with"], root / name, name),
            )
            for name in selected
        }


# About 14 s of CPU each, like the chains above; slow, as they add only the protocol's
# fine-tuning to a chain the default suite runs.
@pytest.mark.slow
@pytest.mark.parametrize("evaluation", OTHER_EVALUATIONS)
def test_reproduce_smoke_runs_other_evaluations(evaluation, evaluation_smoke_runs):
    folder, running = evaluation_smoke_runs[evaluation]
    result = running.result()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    preset, protocol = EVALUATION[evaluation]["pairs_with"], EVALUATION[evaluation]
    (entry,) = json.loads((folder / "results" / f"{preset}.json").read_text())
    assert entry["evaluation"] == evaluation and entry["smoke"] is True
    assert_accuracies_counted(entry["evaluation_metrics"])
    run = folder / entry["run"]
    composed = yaml.safe_load((run / "evaluation" / ".hydra" / "config.yaml").read_text())
    assert composed["optimizer"]["name"] == protocol["optimizer"]
    assert composed["optimizer"]["lr"] == protocol["lr"]
    for key in ("mode", "zero_init_classifier", "select_on_val", "from_head_layer"):
        assert composed[key] == protocol[key], key
    assert f"loaded from {entry['run']}/pretrain/checkpoints/last.ckpt" in output
