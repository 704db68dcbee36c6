"""Fine-tuning / linear evaluation: ``python finetune.py pretrained_ckpt=<ckpt> [overrides]``;
see README.md ("Evaluating an encoder") and configs/finetune.yaml."""

import sys

import hydra
from omegaconf import DictConfig

from simclr.errors import SimCLRError
from simclr.finetune import run


@hydra.main(version_base="1.3", config_path="configs", config_name="finetune")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
