"""``python -m simclr.embed <checkpoint or export> [data overrides] --out FILE``: write the
encoder's features h (``--head``: the projection head's z) of every image of a data set's
split(s), with each image's path and label, to Parquet or NumPy (:mod:`simclr.tasks.embed`;
docs/exporting.md, "Embeddings").

    python -m simclr.embed logs/pretrain/runs/<time>/checkpoints/last.ckpt data=digits \\
        --out digits.parquet
    python -m simclr.embed export/ data=imagefolder data.root=/photos --out photos.npz --head
"""

from __future__ import annotations

import argparse
import sys
import types

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from simclr import api
from simclr.errors import SimCLRError
from simclr.tasks.embed import PROGRESS_EVERY, SPLIT_CHOICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simclr.embed",
        description="Write the encoder's features of every image of a data set's split(s), "
        "with each image's path and label, to Parquet or NumPy.",
    )
    parser.add_argument(
        "checkpoint", help="a checkpoint (.ckpt) or an export (its folder, encoder.pt)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the data, as train.py takes them: data=imagefolder "
        "data.root=/photos, data=digits (default: configs/pretrain.yaml's data)",
    )
    parser.add_argument(
        "--out", required=True, help="the file written: .parquet (needs pyarrow) or .npz"
    )
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="all", help="default: all")
    parser.add_argument(
        "--head", action="store_true", help="the projection head's z instead of the features h"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: the data's eval_batch_size"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (default: the GPU if there is one), cpu, cuda:N"
    )
    parser.add_argument(
        "--progress-every",
        type=int,
        default=PROGRESS_EVERY,
        help="without a terminal, a progress line every this many batches",
    )
    args = parser.parse_args(argv)
    try:
        embeddings = api.embed(
            args.checkpoint,
            args.out,
            split=args.split,
            head=args.head,
            batch_size=args.batch_size,
            device=args.device,
            progress_every=args.progress_every,
            overrides=args.overrides,
        )
    except (SimCLRError, HydraException, OmegaConfBaseException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    labels = "with labels" if embeddings.labels is not None else "without labels"
    print(
        f"wrote {len(embeddings)} rows of {embeddings.features.shape[1]} features "
        f"({embeddings.kind}, {', '.join(dict.fromkeys(embeddings.splits))}; {labels}) "
        f"to {embeddings.file}"
    )
    return 0


class _CallableModule(types.ModuleType):
    """Once imported, this module is what ``simclr.embed`` names (Python sets a package's
    attribute to its imported submodule), hiding the API function of that name: calling the
    module calls the function, so ``simclr.embed(...)`` works either way."""

    def __call__(self, *args, **kwargs):
        return api.embed(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
