"""Any model of the timm library (pytorch-image-models) as a backbone: ``backbone=timm
backbone.model=<timm name>`` (``vit_small_patch16_224``, ``convnext_tiny``, ``resnet50d`` ...).

The model is built by ``timm.create_model`` without its classifier (``num_classes=0``), so its
forward pass returns the pooled representation h ``(B, feature_dim)`` (a ViT's class token
after the final norm, a ConvNeXt's pooled and normed features), and ``feature_dim`` is read from
the model (``head_hidden_size``, else ``num_features``). Models whose input size is fixed by
their architecture (``pretrained_cfg.fixed_input_size``: ViTs, Swin, LeViT, whose position
embeddings or windows depend on it) are built for ``data.image_size`` (``img_size``); the others
take any size. Their parameter names are timm's own, so an encoder's ``state_dict`` loads into
``timm.create_model(model, num_classes=0)``.

No weights are downloaded unless ``backbone.pretrained=true`` (timm's published weights, from
the Hugging Face Hub: a network is needed); pre-training then starts from them.

Which parameters get no weight decay (position embeddings, class tokens ...) is the optimiser's
rule, :func:`simclr.optim.optimizers.no_decay_names`, which reads timm's ``no_weight_decay()``.
"""

from __future__ import annotations

from torch import nn

from simclr.errors import ConfigError
from simclr.models.backbones import BACKBONES
from simclr.rules import Rule


def is_timm_model(name) -> bool:
    """Whether ``name`` (optionally with a pretrained tag, ``vit_small_patch16_224.augreg_in1k``)
    is a model timm can build."""
    import timm

    return isinstance(name, str) and timm.is_model(name.split(".", 1)[0])


TIMM_MODEL = Rule(
    "backbone.model",
    is_timm_model,
    "a timm model name (list them: python -c \"import timm; print(timm.list_models('vit*'))\")",
)


def create_kwargs(model: str, image_size: int, model_args: dict | None = None) -> dict:
    """``timm.create_model``'s keyword arguments besides ``pretrained``: no classifier, the image
    size for models whose input size is fixed, and ``model_args`` (which win)."""
    import timm

    kwargs: dict = {"num_classes": 0}
    config = timm.models.get_pretrained_cfg(model.split(".", 1)[0])
    if config is not None and config.fixed_input_size:
        kwargs["img_size"] = image_size
    kwargs.update(model_args or {})
    return kwargs


def feature_dim_of(model: nn.Module) -> int:
    """The size of what a headless timm model returns: ``head_hidden_size`` where the model has
    a pre-logits layer (MobileNetV3's 1280 after 576 channels), else ``num_features``."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


@BACKBONES.register("timm", rules=[TIMM_MODEL])
def timm_backbone(
    image_size: int, model: str, pretrained: bool = False, model_args: dict | None = None
) -> tuple[nn.Module, int]:
    """timm's ``model`` without its classifier, for images of ``image_size`` px.

    ``model_args``: further keyword arguments of ``timm.create_model`` (``drop_path_rate``,
    ``num_heads`` ...). ``pretrained``: start from timm's published weights (downloaded).
    """
    import timm

    TIMM_MODEL.check(model)
    kwargs = create_kwargs(model, image_size, model_args)
    try:
        encoder = timm.create_model(model, pretrained=pretrained, **kwargs)
    except TypeError as error:  # a model_args key the architecture does not take
        raise ConfigError(f"backbone.model_args: timm's {model} refuses them: {error}") from None
    return encoder, feature_dim_of(encoder)
