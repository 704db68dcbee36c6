"""The Python API for notebooks and scripts: ``simclr.pretrain(...)`` and
``simclr.finetune(...)``, the same runs as ``train.py`` and ``finetune.py``, and
``simclr.embed(...)``, the features that ``python -m simclr.embed`` writes.

Each call composes ``configs/`` with Hydra from its keyword arguments and overrides, exactly
as the command line does (a misspelled key raises Hydra's ``ConfigCompositionException``
naming it), and runs the task through Hydra's own job runner, the one ``@hydra.main`` uses:
the run gets its folder (``logs/<task>/runs/<time>/`` below the working directory, or
``hydra.run.dir=...``), its ``.hydra/`` config files and its log file, as on the command line.

    import simclr

    pre = simclr.pretrain(data="digits", backbone="resnet18_slim", trainer="cpu",
                          overrides=["trainer.max_epochs=5"])
    lin = simclr.finetune(pre.checkpoint, mode="linear", overrides=["trainer.max_epochs=5"])
    lin.metrics["test/acc"], lin.run_dir
    encoder, feature_dim = pre.encoder().build()  # the pre-trained encoder, weights loaded
    vectors = simclr.embed(pre.checkpoint, "digits.parquet", data="digits")  # features h

``simclr.embed`` composes only the ``data`` group and runs no job (no run folder).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from simclr.errors import ConfigError

if TYPE_CHECKING:
    from simclr.models.pretrained import PretrainedEncoder
    from simclr.tasks.embed import Embeddings

CONFIG_DIR_VARIABLE = "SIMCLR_CONFIG_DIR"
CONFIG_NAMES = ("pretrain.yaml", "finetune.yaml")
# Override values Hydra reads as they are; anything else is quoted.
_PLAIN_VALUE = re.compile(r"[\w./:+@-]+")


@dataclass(frozen=True)
class RunResult:
    """What a run returns: its final metrics (also in ``<run_dir>/metrics.json``), its
    folder, and the composed config it ran (also in ``<run_dir>/.hydra/config.yaml``)."""

    metrics: dict[str, float]
    run_dir: Path
    config: DictConfig

    @property
    def checkpoint(self) -> Path:
        """The run's ``checkpoints/last.ckpt``: what ``finetune`` reads and ``ckpt_path``
        resumes (a :class:`ConfigError` if the run wrote none, e.g. ``fast_dev_run``)."""
        path = self.run_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ConfigError(f"{self.run_dir} holds no checkpoints/last.ckpt")
        return path

    def encoder(self) -> PretrainedEncoder:
        """The encoder of the run's :attr:`checkpoint` (its architecture, image size, weights,
        and a pre-training run's projection head); ``.build()`` gives the module."""
        from simclr.models.pretrained import PretrainedEncoder

        return PretrainedEncoder.read(self.checkpoint)


def find_config_dir(config_dir: str | os.PathLike | None = None) -> Path:
    """The ``configs/`` folder: ``config_dir`` if given, else ``$SIMCLR_CONFIG_DIR``, else the
    one beside ``src/`` of this package's checkout (a clone, or an editable install), else
    ``./configs``. A :class:`ConfigError` lists the places tried if none holds the configs
    (a wheel installed from an index carries no ``configs/``)."""
    if config_dir is not None:
        candidates = [Path(config_dir)]
    else:
        candidates = [
            *(
                [Path(os.environ[CONFIG_DIR_VARIABLE])]
                if os.environ.get(CONFIG_DIR_VARIABLE)
                else []
            ),
            Path(__file__).resolve().parents[2] / "configs",
            Path.cwd() / "configs",
        ]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in CONFIG_NAMES):
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no configs folder with {' and '.join(CONFIG_NAMES)} found (tried: {tried}); work in "
        f"a checkout of the repository (pip install -e .), or pass config_dir=<its configs/> "
        f"or set {CONFIG_DIR_VARIABLE}"
    )


def override(key: str, value) -> str:
    """``key=value`` in Hydra's override syntax: booleans as true/false, None as null, lists
    as ``[a,b]``, and strings (paths) quoted where Hydra would split or misread them."""
    return f"{key}={_value(value)}"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if _PLAIN_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _hydra_context(config_dir: str | os.PathLike | None, job_name: str):
    """Hydra initialised on the ``configs/`` folder (:func:`find_config_dir`), for a block."""
    if GlobalHydra.instance().is_initialized():
        raise ConfigError(
            "Hydra is already initialised in this process (inside a @hydra.main app, or an "
            "initialize() block): call simclr.pretrain / finetune / embed outside it"
        )
    directory = find_config_dir(config_dir)
    return initialize_config_dir(str(directory), version_base="1.3", job_name=job_name)


def compose_data(overrides: Sequence[str], config_dir: str | os.PathLike | None = None) -> dict:
    """The ``data`` node of ``configs/pretrain.yaml`` composed with ``overrides`` (``data=...``,
    ``data.root=...``), as plain values; ``paths`` start from the working directory, as a run
    started here would."""
    with _hydra_context(config_dir, "embed"):
        cfg = compose("pretrain", overrides=[override("paths.root_dir", Path.cwd()), *overrides])
    return OmegaConf.to_container(cfg.data, resolve=True)


def run_task(
    config_name: str,
    job_name: str,
    task: Callable[[DictConfig], dict],
    overrides: Sequence[str],
    config_dir: str | os.PathLike | None = None,
) -> RunResult:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` and run ``task`` on it as
    ``@hydra.main`` runs a script named ``job_name`` (its log file is ``<job_name>.log``)."""
    with _hydra_context(config_dir, job_name):
        hydra = GlobalHydra.instance().hydra
        job = hydra.run(config_name=config_name, task_function=task, overrides=list(overrides))
    run_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
    return RunResult(metrics=job.return_value, run_dir=run_dir, config=job.cfg)


def pretrain(
    *,
    overrides: Sequence[str] = (),
    config_dir: str | os.PathLike | None = None,
    **choices,
) -> RunResult:
    """Pre-train as ``python train.py`` would: ``choices`` are config groups or top-level keys
    (``data="cifar10"``, ``backbone="resnet18"``, ``experiment="cifar10_resnet18"``,
    ``logger=["tensorboard", "wandb"]``, ``seed=1``), ``overrides`` any other override as
    typed on the command line (``"model.temperature=0.2"``)."""
    from simclr.tasks.pretrain import run

    everything = [*(override(k, v) for k, v in choices.items()), *overrides]
    return run_task("pretrain", "train", run, everything, config_dir)


def finetune(
    pretrained_ckpt: str | os.PathLike | None,
    *,
    overrides: Sequence[str] = (),
    config_dir: str | os.PathLike | None = None,
    **choices,
) -> RunResult:
    """Fine-tune or linearly evaluate (``mode="linear"``) the encoder of ``pretrained_ckpt``
    (a pre-training checkpoint such as ``pretrain(...).checkpoint``, an exported encoder, or
    None for a random encoder) as ``python finetune.py`` would; ``choices`` and ``overrides``
    as for :func:`pretrain` (``evaluation="linear_cifar10"``, ``label_fraction=0.1``)."""
    from simclr.tasks.finetune import run

    everything = [
        override("pretrained_ckpt", pretrained_ckpt),
        *(override(k, v) for k, v in choices.items()),
        *overrides,
    ]
    return run_task("finetune", "finetune", run, everything, config_dir)


def embed(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    config_dir: str | os.PathLike | None = None,
    **options,
) -> Embeddings:
    """The features h of the encoder of ``checkpoint`` (a checkpoint or an export), as
    ``python -m simclr.embed`` computes them, written to ``out`` (``.parquet`` or ``.npz``)
    when given. ``options`` are those of :func:`~simclr.tasks.embed.embed_data` (``split``:
    ``train``, ``val``, ``test``, ``unlabeled`` or ``all``; ``head``: the projection head's z;
    ``batch_size``, ``device``, ``progress``, ``progress_every``); any other keyword chooses a
    config group, as for :func:`pretrain` (``data="imagefolder"``, with
    ``overrides=["data.root=/x"]``). Returns the :class:`~simclr.tasks.embed.Embeddings`:
    ``features`` ``(N, D)`` and each row's path, split, index and label."""
    from simclr.tasks.embed import check_output, embed_data, write_embeddings

    if out is not None:
        check_output(out)
    taken = set(inspect.signature(embed_data).parameters) - {"checkpoint", "data"}
    choices = {k: options.pop(k) for k in list(options) if k not in taken}
    data = compose_data([*(override(k, v) for k, v in choices.items()), *overrides], config_dir)
    embeddings = embed_data(checkpoint, data, **options)
    return embeddings if out is None else write_embeddings(embeddings, out)
