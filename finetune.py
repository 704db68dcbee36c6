"""Fine-tuning / linear evaluation: ``python finetune.py pretrained_ckpt=<ckpt> [overrides]``;
see README.md ("Evaluating an encoder") and configs/finetune.yaml."""

import hydra
from omegaconf import DictConfig

from simclr.tasks.common import run_for_user
from simclr.tasks.finetune import run


@hydra.main(version_base="1.3", config_path="configs", config_name="finetune")
def main(cfg: DictConfig) -> float | None:
    return run_for_user(run, cfg)


if __name__ == "__main__":
    main()
