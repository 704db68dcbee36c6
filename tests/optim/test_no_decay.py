"""The one rule for what gets no weight decay and no LARS adaptation, checked by parameter name
on timm's ViT and ConvNeXt inside a module (as the pre-training module holds its encoder)."""

import pytest
from torch import nn

from simclr.models.backbones import build_backbone
from simclr.optim import build_optimizer, parameter_groups
from simclr.optim.optimizers import no_decay_names


def with_head(model: str, **model_args) -> nn.Module:
    """``encoder`` (the timm model) and a linear ``head``, named as SimCLRModule names them."""
    encoder, dim = build_backbone("timm", image_size=32, model=model, model_args=model_args)
    module = nn.Module()
    module.encoder, module.head = encoder, nn.Linear(dim, 8)
    return module


def grouped_names(module: nn.Module) -> tuple[set[str], set[str]]:
    """(decayed names, excluded names) as :func:`parameter_groups` groups them."""
    name_of = {id(p): n for n, p in module.named_parameters()}
    decayed, excluded = parameter_groups(module, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and not decayed.get("lars_exclude", False)
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True
    return {name_of[id(p)] for p in decayed["params"]}, {name_of[id(p)] for p in excluded["params"]}


def test_vit_tiny_groups_by_name():
    module = with_head("vit_tiny_patch16_224")
    decayed, excluded = grouped_names(module)
    # Only the weight matrices (and the patch projection's kernel) are decayed and adapted.
    matrices = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    assert decayed == {
        "encoder.patch_embed.proj.weight",
        *(f"encoder.blocks.{b}.{m}.weight" for b in range(12) for m in matrices),
        "head.weight",
    }
    # Position embedding and class token (3-D, named by the ViT's no_weight_decay()), every
    # LayerNorm and every bias.
    assert {"encoder.pos_embed", "encoder.cls_token"} <= excluded
    assert {"encoder.norm.weight", "encoder.norm.bias", "encoder.blocks.0.norm1.weight"} <= excluded
    assert {"encoder.blocks.11.attn.qkv.bias", "encoder.patch_embed.proj.bias", "head.bias"} <= (
        excluded
    )
    assert decayed | excluded == {n for n, _ in module.named_parameters()}
    assert not decayed & excluded


def test_vit_register_tokens_are_excluded_too():
    module = with_head("vit_tiny_patch16_224", reg_tokens=4, depth=1)
    assert module.encoder.reg_token.ndim == 3
    assert {"encoder.reg_token", "encoder.pos_embed", "encoder.cls_token"} <= no_decay_names(module)


def test_convnext_atto_groups_by_name():
    module = with_head("convnext_atto")
    decayed, excluded = grouped_names(module)
    stages = (2, 2, 6, 2)  # convnext_atto's blocks per stage
    assert decayed == {
        "encoder.stem.0.weight",
        *(f"encoder.stages.{s}.downsample.1.weight" for s in (1, 2, 3)),
        *(
            f"encoder.stages.{s}.blocks.{b}.{layer}.weight"
            for s, n in enumerate(stages)
            for b in range(n)
            for layer in ("conv_dw", "mlp.fc1", "mlp.fc2")
        ),
        "head.weight",
    }
    # LayerScale factors (gamma), LayerNorms and biases.
    assert {
        "encoder.stages.0.blocks.0.gamma",
        "encoder.stages.0.blocks.0.norm.weight",
        "encoder.stem.1.bias",
        "encoder.head.norm.weight",
    } <= excluded


@pytest.mark.parametrize("name", ["lars", "adamw"])
def test_the_optimisers_take_the_groups(name):
    module = with_head("vit_tiny_patch16_224", depth=1)
    optimizer = build_optimizer(module, name, lr=0.1, batch_size=256, weight_decay=0.05)
    excluded = optimizer.param_groups[1]
    assert excluded["weight_decay"] == 0.0
    assert any(p is module.encoder.pos_embed for p in excluded["params"])
    # LARS skips its adaptation there; torch's optimisers are not given the LARS-only key.
    assert excluded.get("lars_exclude") is (True if name == "lars" else None)
