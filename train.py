"""SimCLR pre-training: ``python train.py [overrides]``; see README.md, configs/pretrain.yaml."""

import sys

import hydra
from omegaconf import DictConfig

from simclr.errors import SimCLRError
from simclr.training import run


@hydra.main(version_base="1.3", config_path="configs", config_name="pretrain")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    # A Hydra sweeper optimises the value returned here.
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
