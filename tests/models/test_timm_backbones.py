"""timm's models as backbones: built headless, their feature dimension read from the model, the
image size given to the models whose input size is fixed, bad names refused before any work."""

import pytest
import torch

from conftest import compose_config
from simclr.config import validate_config
from simclr.errors import ConfigError
from simclr.models.backbones import build_backbone, resolve_stem, same_architecture


@pytest.mark.parametrize(
    "model,image_size,feature_dim",
    [
        ("vit_tiny_patch16_224", 32, 192),  # the class token after the final norm
        ("convnext_atto", 32, 320),
        ("resnet18d", 32, 512),
        # A pre-logits layer: 1024 features after 288 channels (head_hidden_size).
        ("mobilenetv3_small_050", 32, 1024),
    ],
)
def test_a_timm_model_returns_its_pooled_features(model, image_size, feature_dim):
    encoder, dim = build_backbone("timm", image_size=image_size, model=model)
    with torch.no_grad():
        features = encoder.eval()(torch.randn(2, 3, image_size, image_size))
    assert dim == feature_dim
    assert features.shape == (2, feature_dim)
    assert encoder.num_classes == 0  # no classifier


def test_a_vit_is_built_for_the_image_size_and_a_convnext_takes_any():
    vit, _ = build_backbone("timm", image_size=64, model="vit_tiny_patch16_224")
    assert vit.patch_embed.img_size == (64, 64)
    assert vit.pos_embed.shape == (1, 1 + 16, 192)  # class token + (64 / 16)^2 patches
    convnext, _ = build_backbone("timm", image_size=64, model="convnext_atto")
    with torch.no_grad():
        assert convnext.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 320)


def test_model_args_reach_timm_and_unknown_ones_are_refused():
    vit, _ = build_backbone(
        "timm", image_size=32, model="vit_tiny_patch16_224", model_args={"depth": 2}
    )
    assert len(vit.blocks) == 2
    with pytest.raises(ConfigError, match=r"backbone\.model_args"):
        build_backbone("timm", image_size=32, model="convnext_atto", model_args={"no_such": 1})


def test_an_unknown_model_is_a_config_error_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone\.model='vit_nope': must be a timm model"):
        build_backbone("timm", image_size=32, model="vit_nope")
    cfg = compose_config(["backbone=timm", "backbone.model=vit_nope"], tmp_path)
    with pytest.raises(ConfigError, match=r"backbone\.model='vit_nope'"):
        validate_config(cfg)


def test_loaded_weights_make_timm_pretrained_moot_and_no_stem_is_added():
    asked = {"name": "timm", "model": "convnext_atto", "pretrained": True, "model_args": {}}
    stored = resolve_stem(asked, image_size=32)
    # Fine-tuning from a checkpoint must not download timm's weights only to replace them.
    assert stored["pretrained"] is False and "small_stem" not in stored
    assert same_architecture(stored, asked)
    assert resolve_stem({"name": "resnet18"}, 32)["small_stem"] is True
