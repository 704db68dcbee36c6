"""The online linear probe and the weighted k-NN monitor of pre-training."""

import pytest
import torch
import torch.nn.functional as F

from conftest import FAST_OVERRIDES, compose_config
from simclr.callbacks import monitors
from simclr.callbacks.feature_maps import palette, pca_2d
from simclr.callbacks.monitors import OnlineLinearProbe, WeightedKNN
from simclr.tasks.pretrain import run

FAST = [
    *FAST_OVERRIDES,
    "callbacks.model_checkpoint.every_n_epochs=1",
    "logger=csv",
]


def slow_weighted_knn(query, bank, bank_labels, num_classes, k, temperature):
    """Wu et al. (2018), one query at a time, written from the paper."""
    similarities = [float(F.cosine_similarity(query, entry, dim=0)) for entry in bank]
    order = sorted(range(len(bank)), key=lambda i: -similarities[i])[:k]
    votes = [0.0] * num_classes
    for i in order:
        votes[int(bank_labels[i])] += torch.tensor(similarities[i] / temperature).exp().item()
    return max(range(num_classes), key=lambda c: votes[c])


def test_weighted_knn_matches_a_loop_written_from_the_paper(monkeypatch):
    monkeypatch.setattr(monitors, "QUERY_CHUNK", 5)  # three chunks of queries
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 8, generator=generator)
    bank_labels = torch.randint(0, 4, (50,), generator=generator)
    queries = torch.randn(12, 8, generator=generator)
    fast = WeightedKNN(k=7, temperature=0.1).predict(queries, bank, bank_labels)
    slow = [slow_weighted_knn(q, bank, bank_labels, 4, 7, 0.1) for q in queries]
    assert fast.tolist() == slow


def test_weighted_knn_finds_separated_clusters():
    centres = torch.eye(3, 16) * 10
    labels = torch.arange(3).repeat_interleave(20)
    bank = centres[labels] + 0.1 * torch.randn(60, 16)
    queries = centres + 0.1 * torch.randn(3, 16)
    assert WeightedKNN(k=200).predict(queries, bank, labels).tolist() == [0, 1, 2]


def test_monitors_and_pictures_are_on_by_default(tmp_path):
    cfg = compose_config([*FAST, "trainer.max_epochs=1", "logger=tensorboard"], tmp_path)
    assert cfg.callbacks.knn.k == 200 and cfg.callbacks.knn.temperature == 0.1
    metrics = run(cfg)
    for name in ("val/probe_acc", "val/knn_acc", "train/probe_acc"):
        assert 0 <= metrics[name] <= 1, name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert {"views/pairs", "val/feature_map_pca"} <= set(events.Tags()["images"])
    assert "val/knn_acc" in events.Tags()["scalars"]


def test_pca_puts_the_spread_on_the_first_axis():
    features = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    coords = pca_2d(features)
    assert coords.shape == (3, 2)
    assert coords[:, 0].var() >= coords[:, 1].var() > 0
    assert palette(3).shape == (3, 3)


def monitor_states(checkpoint) -> tuple[dict, dict]:
    callbacks = torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    probe = next(v for k, v in callbacks.items() if k.startswith("OnlineLinearProbe"))
    knn = next(v for k, v in callbacks.items() if k.startswith("WeightedKNN"))
    return probe, knn


def test_probe_and_knn_state_survive_a_resume(tmp_path):
    first = tmp_path / "first"
    run(compose_config([*FAST, "trainer.max_epochs=1"], first))
    probe, knn = monitor_states(first / "checkpoints" / "last.ckpt")
    assert set(probe) == {"probe", "optimizer", "history"} and probe["optimizer"]["state"]
    assert list(knn["history"]) == [0] and list(probe["history"]) == [0]

    # Resume: the monitors start from the saved probe, its optimiser, and the histories.
    second = tmp_path / "second"
    cfg = compose_config(
        [*FAST, "trainer.max_epochs=2", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"],
        second,
    )
    restored = {}
    original_fit_start = OnlineLinearProbe.on_fit_start

    def spy(self, trainer, pl_module):
        original_fit_start(self, trainer, pl_module)
        restored["probe"] = {k: v.clone() for k, v in self.probe.state_dict().items()}
        restored["step"] = self.optimizer.state_dict()["state"][0]["step"].clone()

    OnlineLinearProbe.on_fit_start = spy
    try:
        run(cfg)
    finally:
        OnlineLinearProbe.on_fit_start = original_fit_start
    for key, value in probe["probe"].items():
        assert torch.equal(restored["probe"][key], value), key
    assert torch.equal(restored["step"], probe["optimizer"]["state"][0]["step"])
    probe2, knn2 = monitor_states(second / "checkpoints" / "last.ckpt")
    assert list(knn2["history"]) == [0, 1] and list(probe2["history"]) == [0, 1]
    assert knn2["history"][0] == knn["history"][0]
    assert probe2["optimizer"]["state"][0]["step"] > probe["optimizer"]["state"][0]["step"]


def test_monitor_state_dict_round_trip_without_training():
    knn = WeightedKNN(k=5, every_n_epochs=2)
    knn.history = {1: 0.5, 3: 0.75}
    other = WeightedKNN(k=5, every_n_epochs=2)
    other.load_state_dict(knn.state_dict())
    assert other.history == {1: 0.5, 3: 0.75}


def test_bad_monitor_settings_are_config_errors():
    from simclr.errors import ConfigError

    with pytest.raises(ConfigError, match="every_n_epochs"):
        WeightedKNN(every_n_epochs=0)
    with pytest.raises(ConfigError, match="temperature"):
        WeightedKNN(temperature=0)


def test_probe_learns_only_from_labelled_images():
    """STL-10's unlabeled split reaches training_step with label -1: the probe skips those."""
    from types import SimpleNamespace

    probe = OnlineLinearProbe(lr=0.1)
    module = SimpleNamespace(feature_dim=4, device=torch.device("cpu"), log=lambda *a, **k: None)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(num_classes=3))
    probe.setup(trainer, module, "fit")
    probe.on_fit_start(trainer, module)
    before = [p.detach().clone() for p in probe.probe.parameters()]
    unlabelled = {"features": torch.randn(6, 4), "labels": torch.full((6,), -1)}
    probe.on_train_batch_end(trainer, module, unlabelled, None, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, probe.probe.parameters(), strict=True))
    mixed = {"features": torch.randn(6, 4), "labels": torch.tensor([-1, 0, 1, 2, -1, 1])}
    probe.on_train_batch_end(trainer, module, mixed, None, 0)
    assert not torch.equal(before[-1], probe.probe[-1].bias.detach())
