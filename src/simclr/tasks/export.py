"""``python -m simclr.export <checkpoint.ckpt> <out_dir>``: write a checkpoint's encoder as a
plain state dict (``encoder.pt``) and its description (``encoder.json``); the format is
:mod:`simclr.models.encoder_files`."""

from __future__ import annotations

import argparse
import sys

from simclr.errors import SimCLRError
from simclr.models.encoder_files import export_encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simclr.export",
        description="Write a checkpoint's encoder as a plain state dict plus its description.",
    )
    parser.add_argument("checkpoint", help="a pre-training (or fine-tuning) checkpoint, .ckpt")
    parser.add_argument("out_dir", help="folder for encoder.pt and encoder.json")
    args = parser.parse_args(argv)
    try:
        weights_path, description_path = export_encoder(args.checkpoint, args.out_dir)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"encoder weights: {weights_path}\narchitecture:    {description_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
