"""``python -m simclr.export <checkpoint.ckpt> <out_dir> [--head]``: write a checkpoint's encoder
as a plain state dict (``encoder.pt``) and its description (``encoder.json``); the format is
:mod:`simclr.models.encoder_files`. With ``--head``, a pre-training checkpoint's projection head
too (``head.pt``, ``head.json``; :mod:`simclr.models.head_layers`), for ``from_head_layer``."""

from __future__ import annotations

import argparse
import sys

from simclr.errors import SimCLRError
from simclr.models.encoder_files import export_encoder
from simclr.models.head_layers import export_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simclr.export",
        description="Write a checkpoint's encoder as a plain state dict plus its description.",
    )
    parser.add_argument("checkpoint", help="a pre-training (or fine-tuning) checkpoint, .ckpt")
    parser.add_argument("out_dir", help="folder for encoder.pt and encoder.json")
    parser.add_argument(
        "--head",
        action="store_true",
        help="also the projection head (head.pt, head.json), for finetune.py from_head_layer",
    )
    args = parser.parse_args(argv)
    try:
        weights_path, description_path = export_encoder(args.checkpoint, args.out_dir)
        head_paths = export_head(args.checkpoint, args.out_dir) if args.head else None
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"encoder weights: {weights_path}\narchitecture:    {description_path}")
    if head_paths:
        print(f"projection head: {head_paths[0]} ({head_paths[1].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
