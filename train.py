"""SimCLR pre-training: ``python train.py [overrides]``; see README.md, configs/pretrain.yaml."""

import hydra
from omegaconf import DictConfig

from simclr.tasks.common import run_for_user
from simclr.tasks.pretrain import run


@hydra.main(version_base="1.3", config_path="configs", config_name="pretrain")
def main(cfg: DictConfig) -> float | None:
    return run_for_user(run, cfg)


if __name__ == "__main__":
    main()
