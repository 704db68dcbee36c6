"""The feature maps of the pictures callback: PCA and UMAP projections, the picture with its
legend of class names, the choice by config, and the umap extra."""

import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import FAST_OVERRIDES, compose_config
from simclr.callbacks import pictures
from simclr.callbacks.feature_maps import (
    _legend_lines,
    draw_feature_map,
    palette,
    pca_2d,
    umap_2d,
)
from simclr.callbacks.pictures import Pictures
from simclr.config import validate_config
from simclr.errors import ConfigError


def clusters(num_classes=3, per_class=20, dim=16, seed=0):
    """Well separated classes: each a tight cloud around its own axis."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = 10 * torch.eye(num_classes, dim)[labels]
    return features + 0.3 * torch.randn(len(labels), dim, generator=generator), labels


def colour_found(region: torch.Tensor, colour: torch.Tensor) -> bool:
    return bool(((region - colour[:, None, None]).abs().sum(0) < 0.01).any())


def test_map_draws_each_class_in_its_colour_with_a_legend_swatch():
    features, labels = clusters()
    image = draw_feature_map(pca_2d(features), labels, ["cat", "dog", "ship"], size=128)
    assert image.shape[:2] == (3, 128) and image.shape[2] > 128  # the legend on the right
    square, legend = image[:, :, :128], image[:, :, 128:]
    for colour in palette(3):
        assert colour_found(square, colour) and colour_found(legend, colour)
    assert (square == 1).all(0).float().mean() > 0.8  # mostly white background


def test_default_map_is_larger_than_256_pixels():
    features, labels = clusters()
    image = draw_feature_map(pca_2d(features), labels, ["a", "b", "c"])
    assert image.shape[1] == 512 and image.shape[2] > 512


def test_legend_names_every_class_or_counts_those_that_do_not_fit():
    names = [f"class {i}" for i in range(100)]
    assert _legend_lines(names[:3], rows=10) == [(0, "class 0"), (1, "class 1"), (2, "class 2")]
    lines = _legend_lines(names, rows=5)
    assert lines[:4] == [(i, f"class {i}") for i in range(4)]
    assert lines[4] == (None, "+ 96 more classes")


def test_umap_keeps_separated_classes_apart_and_is_seeded():
    features, labels = clusters()
    coords = umap_2d(features)
    assert coords.shape == (60, 2) and torch.isfinite(coords).all()
    centres = torch.stack([coords[labels == c].mean(0) for c in range(3)])
    spread = max(float(coords[labels == c].std(0).norm()) for c in range(3))
    assert torch.pdist(centres).min() > 2 * spread
    assert torch.equal(umap_2d(features), coords)  # the same map for the same features


def fake_trainer(batch, class_names):
    """A trainer ending its last epoch, with a TensorBoard-like writer."""
    writer = SimpleNamespace(tags=[])
    writer.add_image = lambda tag, image, step: writer.tags.append((tag, tuple(image.shape)))
    trainer = SimpleNamespace(
        current_epoch=0,
        max_epochs=1,
        should_stop=False,
        is_global_zero=True,
        loggers=[SimpleNamespace(experiment=writer)],
        datamodule=SimpleNamespace(
            labelled_dataloader=lambda split: [batch], class_names=class_names
        ),
        strategy=SimpleNamespace(batch_to_device=lambda b: b),
        global_step=4,
    )
    return trainer, writer


def test_callback_logs_each_chosen_map_with_the_class_names(monkeypatch):
    drawn = []

    def recording_draw(points, labels, class_names, size, title):
        drawn.append((title, list(class_names), size, len(points)))
        return draw_feature_map(points, labels, class_names, size, title)

    monkeypatch.setattr(pictures, "draw_feature_map", recording_draw)
    batch = clusters(per_class=15)
    names = ["zero", "one", "two"]
    trainer, writer = fake_trainer(batch, names)
    callback = Pictures(maps=["pca", "umap"], size=96, max_points=30)
    callback.on_train_epoch_end(trainer, SimpleNamespace(encoder=torch.nn.Identity()))
    assert [tag for tag, _ in writer.tags] == ["val/feature_map_pca", "val/feature_map_umap"]
    assert all(shape[1] == 96 and shape[2] > 96 for _, shape in writer.tags)
    # 45 images, at most 30 mapped; every map gets the data set's class names.
    assert drawn == [("val pca", names, 96, 30), ("val umap", names, 96, 30)]


def test_maps_are_chosen_by_name_and_a_wrong_one_is_refused(tmp_path):
    assert Pictures().maps == ["pca"] and Pictures(maps="umap").maps == ["umap"]
    with pytest.raises(ConfigError, match=r"maps='tsne': must be one of: pca, umap"):
        Pictures(maps=["pca", "tsne"])
    cfg = compose_config([*FAST_OVERRIDES, "callbacks.pictures.maps=[pca,tsne]"], tmp_path)
    with pytest.raises(ConfigError, match=r"maps='tsne': must be one of: pca, umap"):
        validate_config(cfg)
    cfg = compose_config([*FAST_OVERRIDES, "callbacks.pictures.size=32"], tmp_path)
    with pytest.raises(ConfigError, match=r"callbacks.pictures.size=32: must be an integer >= 64"):
        validate_config(cfg)


def test_umap_without_its_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(ConfigError, match=r"pip install 'simclr\[umap\]'"):
        Pictures(maps=["pca", "umap"])
    cfg = compose_config([*FAST_OVERRIDES, "callbacks.pictures.maps=[pca,umap]"], tmp_path)
    with pytest.raises(ConfigError, match=r"callbacks.pictures.maps=umap: needs the umap"):
        validate_config(cfg)
    validate_config(compose_config(FAST_OVERRIDES, tmp_path))  # PCA alone needs nothing


@pytest.mark.slow  # a whole run (UMAP's one-off compilation is paid by the tests above)
def test_a_run_logs_the_pca_and_umap_maps_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from simclr.tasks.pretrain import run

    cfg = compose_config(
        [
            *FAST_OVERRIDES,
            "trainer.max_epochs=1",
            "logger=tensorboard",
            "callbacks.pictures.maps=[pca,umap]",
            "callbacks.pictures.size=300",
        ],
        tmp_path,
    )
    run(cfg)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    images = events.Reload().Tags()["images"]
    assert {"views/pairs", "val/feature_map_pca", "val/feature_map_umap"} <= set(images)
    umap_picture = events.Images("val/feature_map_umap")[-1]
    assert umap_picture.height == 300 and umap_picture.width > 300


def test_twenty_classes_get_twenty_distinct_colours():
    colours = palette(20)
    distances = torch.cdist(colours, colours) + 10 * torch.eye(20)
    assert distances.min() > 0.2  # no two classes share a near copy of one colour
    assert palette(25).shape == (25, 3)


def test_views_are_shown_side_by_side_at_64_px_at_least():
    from simclr.callbacks.pictures import views_grid

    rows = [torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)]  # V = 2 rows of 8 views
    grid = views_grid(rows)
    # Each image: its 2 views of 64 px side by side, 2 px apart (134 x 68 with the border);
    # 4 images a row, 8 px apart: 2 rows.
    assert grid.shape == (3, 2 * (68 + 8) + 8, 4 * (134 + 8) + 8)
    first, second = grid[:, 10:74, 10:74], grid[:, 10:74, 76:140]
    # Nearest-neighbour enlargement: each source pixel a 4x4 block; each view scaled to [0, 1].
    for view, source in ((first, rows[0][0]), (second, rows[1][0])):
        expected = (source - source.min()) / (source.max() - source.min())
        blocks = expected.repeat_interleave(4, 1).repeat_interleave(4, 2)
        assert torch.allclose(view, blocks, atol=1e-6)
