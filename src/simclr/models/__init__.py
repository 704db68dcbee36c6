"""The networks: backbones (one registry), the projection head, the pre-training and the
fine-tuning LightningModules, and encoders stored on disk."""

# Importing these registers SimCLR v2's ResNet-101/152 and timm's models (backbone=timm).
from simclr.models import resnet_v2, timm_backbones
from simclr.models.backbones import BACKBONES, build_backbone
from simclr.models.encoder_files import EncoderWeights, export_encoder, read_encoder
from simclr.models.finetune import MODES, FineTuneModule
from simclr.models.heads import ProjectionHead
from simclr.models.pretrain import SimCLRModule

__all__ = [
    "BACKBONES",
    "MODES",
    "EncoderWeights",
    "FineTuneModule",
    "ProjectionHead",
    "SimCLRModule",
    "build_backbone",
    "export_encoder",
    "read_encoder",
    "resnet_v2",
    "timm_backbones",
]
