"""``last.ckpt`` at the end of every epoch, the state ``ckpt_path=`` resumes from."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of every epoch, overwriting it.

    Lightning (2.6) refreshes a ModelCheckpoint's ``save_last`` file only in epochs where that
    callback saved, so a run with checkpoints every 10 epochs (or of the best validation
    accuracy) would end with a ``last.ckpt`` behind the run. Its own class gives it its own
    state key, so it sits beside any other ModelCheckpoint, whatever their periods.
    """

    def __init__(self, dirpath: str):
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
        )
