"""The networks: backbones (one registry), the projection head, the pre-training and the
fine-tuning LightningModules, and the pre-trained encoder (read from a checkpoint or an export)."""

# Importing these registers SimCLR v2's ResNet-101/152 and timm's models (backbone=timm).
from simclr.models import resnet_v2, timm_backbones
from simclr.models.backbones import BACKBONES, build_backbone
from simclr.models.finetune import MODES, FineTuneModule
from simclr.models.heads import ProjectionHead
from simclr.models.pretrain import SimCLRModule
from simclr.models.pretrained import PretrainedEncoder

__all__ = [
    "BACKBONES",
    "MODES",
    "FineTuneModule",
    "PretrainedEncoder",
    "ProjectionHead",
    "SimCLRModule",
    "build_backbone",
    "resnet_v2",
    "timm_backbones",
]
