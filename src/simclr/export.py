"""``python -m simclr.export <checkpoint.ckpt> <out_dir> [--format ...]``: the user's command for
:mod:`simclr.tasks.export`, kept at this short name (docs/exporting.md, "Export")."""

import sys

from simclr.tasks.export import main

if __name__ == "__main__":
    sys.exit(main())
