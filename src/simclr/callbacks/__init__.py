"""Lightning callbacks of pre-training: the representation monitors, the TensorBoard
pictures, and the safeguards (the non-finite guard, the atomic checkpoint writer)."""

from simclr.callbacks.epochs import epoch_due
from simclr.callbacks.monitors import OnlineLinearProbe, WeightedKNN
from simclr.callbacks.pictures import TensorBoardPictures
from simclr.callbacks.safeguards import AtomicCheckpointIO, NonFiniteError, NonFiniteGuard

__all__ = [
    "AtomicCheckpointIO",
    "NonFiniteError",
    "NonFiniteGuard",
    "OnlineLinearProbe",
    "TensorBoardPictures",
    "WeightedKNN",
    "epoch_due",
]
