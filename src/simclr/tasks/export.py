"""``python -m simclr.export <checkpoint.ckpt> <out_dir> [--format F] [--head]``: write a
checkpoint's encoder in one of the formats of :mod:`simclr.models.exports` (``torchvision``, the
default: a plain state dict ``encoder.pt`` with its description ``encoder.json``, as
:mod:`simclr.models.encoder_files`; ``timm``; ``torchscript``; ``onnx``), load it back and check
its features against the encoder's. With ``--head``, a pre-training checkpoint's projection head
too (``head.pt``, ``head.json``; :func:`simclr.models.exports.export_head`), for
``from_head_layer``."""

from __future__ import annotations

import argparse
import sys

from simclr.errors import SimCLRError
from simclr.models.exports import CHECK_IMAGES, FORMATS, export, export_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simclr.export",
        description="Write a checkpoint's encoder for use elsewhere, and check that the written "
        "copy computes the encoder's features.",
    )
    parser.add_argument("checkpoint", help="a pre-training (or fine-tuning) checkpoint, .ckpt")
    parser.add_argument("out_dir", help="folder for the exported files")
    parser.add_argument(
        "--format",
        choices=FORMATS.names(),
        default="torchvision",
        help="torchvision (default): encoder.pt + encoder.json, what finetune.py reads; timm: "
        "model.safetensors + config.json for timm.create_model('local-dir:OUT_DIR', "
        "pretrained=True); torchscript: encoder.torchscript.pt; onnx: encoder.onnx",
    )
    parser.add_argument(
        "--head",
        action="store_true",
        help="also the projection head (head.pt, head.json), for finetune.py from_head_layer",
    )
    args = parser.parse_args(argv)
    try:
        written = export(args.checkpoint, args.out_dir, args.format)
        head_paths = export_head(args.checkpoint, args.out_dir) if args.head else None
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written.files:
        print(f"{written.format} export: {path}")
    print(
        f"checked: loaded back, its features of {CHECK_IMAGES} images match the encoder's "
        f"(largest difference {written.max_difference:.2g}; allowed {written.atol:g} + "
        f"{written.rtol:g} x |feature|)"
    )
    if head_paths:
        print(f"projection head: {head_paths[0]} ({head_paths[1].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
