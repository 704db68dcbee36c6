"""Lightning callbacks of pre-training: the representation monitors, the pictures (views,
feature maps), the safeguards (the non-finite guard, the atomic checkpoint writer), and the
pre-emption handler (a signal stops the run after a step with ``last.ckpt``), the training
health without labels and the progress lines for runs without a terminal."""

from simclr.callbacks.epochs import epoch_due
from simclr.callbacks.health import TrainingHealth
from simclr.callbacks.last_checkpoint import LastCheckpoint
from simclr.callbacks.monitors import OnlineLinearProbe, WeightedKNN
from simclr.callbacks.pictures import Pictures, TensorBoardPictures
from simclr.callbacks.preemption import PREEMPTED_EXIT_STATUS, Preempted, PreemptionHandler
from simclr.callbacks.progress_log import ProgressLog
from simclr.callbacks.safeguards import AtomicCheckpointIO, NonFiniteError, NonFiniteGuard

__all__ = [
    "PREEMPTED_EXIT_STATUS",
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "NonFiniteError",
    "NonFiniteGuard",
    "OnlineLinearProbe",
    "Pictures",
    "Preempted",
    "PreemptionHandler",
    "ProgressLog",
    "TensorBoardPictures",
    "TrainingHealth",
    "WeightedKNN",
    "epoch_due",
]
