"""Image folders without classes (``data.options.labels``): loose images and images nested by
date and camera, read from tiny real files; GIFs read as their first frame, other files passed
over and counted; pre-training through ``train.py`` with the health metrics and the label
monitors off; ``finetune.py`` refusing the data."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import FAST_OVERRIDES, compose_config, run_script
from data_files import write_image_folder
from simclr.config import validate_config
from simclr.data.finetuning import FineTuneDataModule
from simclr.data.sources import Source, load_image_folder
from simclr.errors import ConfigError, DataError
from simclr.tasks.common import plain

RED, BLUE = (255, 0, 0), (0, 0, 255)


def write_gif(path: Path) -> None:
    """A two-frame animated GIF: red, then blue."""
    frames = [Image.new("RGB", (20, 14), colour) for colour in (RED, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def write_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` small JPEG and PNG images directly in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / (f"{i}.jpg" if i % 2 else f"{i}.PNG")
        Image.new("RGB", (20, 14), (10 * i % 256, 40, 200)).save(path)
        paths.append(path)
    return paths


def loose_folder(root: Path, count: int = 15) -> list[Path]:
    """``count`` loose images (one a GIF) and a text file, with no class folders."""
    paths = write_images(root, count - 1)
    write_gif(root / "animation.gif")
    (root / "notes.txt").write_text("not an image")
    return [*paths, root / "animation.gif"]


def nested_folder(root: Path) -> list[Path]:
    """Images nested by date and camera (2024-01-01/cam1/*.jpg ...), a GIF and a text file."""
    paths = []
    for d, day in enumerate(("2024-01-01", "2024-01-02")):
        for c, camera in enumerate(("cam1", "cam2")):
            paths += write_images(root / day / camera, 4, start=10 * (2 * d + c))
    write_gif(root / "2024-01-02" / "cam2" / "animation.gif")
    (root / "2024-01-01" / "readme.txt").write_text("not an image")
    return [*paths, root / "2024-01-02" / "cam2" / "animation.gif"]


def all_paths(splits) -> list[str]:
    return sorted(str(p) for split in (splits.train, splits.val, splits.test) for p in split.paths)


@pytest.mark.parametrize("labels", ["none", "auto"])
@pytest.mark.parametrize("layout", [loose_folder, nested_folder], ids=["loose", "nested"])
def test_unlabelled_folder_reads_every_image_without_labels(tmp_path, caplog, labels, layout):
    written = layout(tmp_path)
    with caplog.at_level(logging.INFO, logger="simclr.data"):
        splits = load_image_folder(Source(str(tmp_path), 32), labels=labels)
    assert not splits.has_labels and splits.num_classes == 0 and splits.class_names is None
    assert all_paths(splits) == sorted(str(p) for p in written)
    for split in (splits.train, splits.val, splits.test):
        assert len(split) > 0 and (split.labels == -1).all()
    passed_over = [r.message for r in caplog.records if "passed over" in r.message]
    assert len(passed_over) == 1 and "passed over 1 file(s)" in passed_over[0]
    assert ".txt 1" in passed_over[0]
    if labels == "auto":
        assert "reading" in caplog.text and "without labels" in caplog.text


def test_auto_reads_class_folders_as_labelled(tmp_path, caplog):
    write_image_folder(tmp_path, classes=("cat", "dog"), per_class=8)
    with caplog.at_level(logging.INFO, logger="simclr.data"):
        splits = load_image_folder(Source(str(tmp_path), 32), labels="auto")
    assert splits.has_labels and splits.class_names == ["cat", "dog"]
    assert "as 2 class folders" in caplog.text
    # The same in the train/ layout: auto looks at train/, and val/ follows its choice.
    write_image_folder(tmp_path / "split" / "train", per_class=8)
    write_image_folder(tmp_path / "split" / "val", per_class=2)
    splits = load_image_folder(Source(str(tmp_path / "split"), 32), labels="auto")
    assert splits.num_classes == 2 and len(splits.test) == 4
    nested_folder(tmp_path / "dates" / "train")
    write_images(tmp_path / "dates" / "val", 3)
    splits = load_image_folder(Source(str(tmp_path / "dates"), 32), labels="auto")
    assert splits.num_classes == 0 and len(splits.test) == 3 and (splits.test.labels == -1).all()


def test_labels_folders_on_loose_images_gives_the_layout_error(tmp_path):
    loose_folder(tmp_path)
    with pytest.raises(DataError, match="15 image files directly in it: move them into one"):
        load_image_folder(Source(str(tmp_path), 32), labels="folders")
    # labels=none with no file of the extensions: the error names them.
    with pytest.raises(DataError, match=r"no images in image folder .*\.bmp"):
        load_image_folder(Source(str(tmp_path), 32), labels="none", extensions=[".bmp"])


def test_gif_is_read_as_its_first_frame_in_rgb(tmp_path):
    loose_folder(tmp_path, count=4)
    splits = load_image_folder(
        Source(str(tmp_path), 32), labels="none", val_fraction=0.25, test_fraction=0.25
    )
    images = {
        Path(split.paths[i]).name: split[i][0]
        for split in (splits.train, splits.val, splits.test)
        for i in range(len(split))
    }
    gif = images["animation.gif"]
    assert gif.mode == "RGB" and gif.size == (20, 14) and gif.getpixel((3, 3)) == RED


def test_extensions_choose_the_files_and_the_rest_are_counted_once(tmp_path, caplog):
    loose_folder(tmp_path)  # 7 .PNG, 7 .jpg, 1 .gif, 1 .txt
    with caplog.at_level(logging.INFO, logger="simclr.data"):
        splits = load_image_folder(Source(str(tmp_path), 32), labels="none", extensions=["png"])
    assert all(path.endswith(".PNG") for path in all_paths(splits)) and len(all_paths(splits)) == 7
    lines = [r.message for r in caplog.records if "passed over" in r.message]
    assert len(lines) == 1 and "passed over 9 file(s)" in lines[0]
    assert ".jpg 7" in lines[0] and ".gif 1" in lines[0] and ".txt 1" in lines[0]


def test_the_options_are_checked_before_any_work(tmp_path):
    for option, message in [
        ("data.options.labels=classes", "data.options.labels='classes': must be folders, none"),
        ("data.options.extensions=[]", "data.options.extensions=.*non-empty list"),
    ]:
        cfg = compose_config(
            [*FAST_OVERRIDES, "data=imagefolder", f"data.root={tmp_path}", option], tmp_path
        )
        with pytest.raises(ConfigError, match=message):
            validate_config(cfg)


def finetune_data(root: Path, labels: str) -> dict:
    cfg = compose_config(
        [*FAST_OVERRIDES, "data=imagefolder", f"data.root={root}", f"data.options.labels={labels}"],
        root.parent,
    )
    return plain(cfg.data)


def test_finetuning_refuses_data_without_labels(tmp_path):
    # labels=none: refused without reading the folder (it need not exist).
    with pytest.raises(ConfigError, match=r"data\.options\.labels=none reads data\.root="):
        FineTuneDataModule(finetune_data(tmp_path / "missing", "none"), label_fraction=1.0)
    loose_folder(tmp_path / "loose")
    refused = r"labels=auto reads .*loose without them \(no class folders found\)"
    with pytest.raises(ConfigError, match=refused):
        FineTuneDataModule(finetune_data(tmp_path / "loose", "auto"), label_fraction=1.0)
    write_image_folder(tmp_path / "classes", per_class=8)
    data = FineTuneDataModule(finetune_data(tmp_path / "classes", "auto"), label_fraction=1.0)
    assert data.num_classes == 2


# --- through the scripts ----------------------------------------------------------------------

RUN = [
    "data=imagefolder",
    "data.image_size=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "logger=csv",
    "callbacks.progress_bar=null",
    "callbacks.health.num_images=8",
]


@pytest.mark.parametrize("layout", [loose_folder, nested_folder], ids=["loose", "nested"])
def test_train_py_pretrains_on_unlabelled_images_and_finetune_py_refuses(tmp_path, layout):
    root = tmp_path / "images"
    layout(root)
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", [*RUN, f"data.root={root}", f"hydra.run.dir={run_dir}"], cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    off = [line for line in output.splitlines() if "the data has no labels" in line]
    assert len(off) == 1, output[-3000:]
    for monitor in ("linear_probe", "knn", "feature maps"):
        assert monitor in off[0]
    assert output.count("passed over 1 file(s)") == 1
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert {"health/rank", "health/alignment", "health/uniformity"} <= columns
    assert not {"val/knn_acc", "val/probe_acc"} & columns
    rank = [float(row["health/rank"]) for row in rows if row["health/rank"]]
    assert rank and torch.isfinite(torch.tensor(rank)).all()
    if layout is loose_folder:  # one refusal suffices: the check does not depend on the layout
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        result = run_script(
            "finetune.py",
            [*RUN[:4], "trainer=cpu", f"data.root={root}", f"pretrained_ckpt={checkpoint}",
             f"hydra.run.dir={tmp_path / 'finetune'}"],
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        assert "error: fine-tuning needs labels, but data.options.labels=auto" in result.stderr
        assert "set data.options.labels=folders" in result.stderr
        assert "Traceback" not in result.stderr
