"""What a user runs, each task a ``run``: :mod:`~simclr.tasks.pretrain` (``train.py``),
:mod:`~simclr.tasks.finetune` (``finetune.py``) and :mod:`~simclr.tasks.export`
(``python -m simclr.export``), over :mod:`~simclr.tasks.common`."""
