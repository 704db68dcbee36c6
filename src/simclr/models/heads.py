"""Projection head g(h) = z, on which the contrastive loss is computed (SimCLR, section 2.1).

SimCLR v1 uses two layers (Linear -> ReLU -> Linear), SimCLR v2 three, with BatchNorm after
every hidden linear layer. The official code (google-research/simclr, ``ProjectionHead``) also
ends with a BatchNorm: its last linear layer has no bias and is followed by a BatchNorm with a
learned scale and no learned shift (``center=False``). Fine-tuning and linear evaluation use h,
not z.

Fine-tuning may start from a layer of this head instead (SimCLR v2, section 2; the official
``--ft_proj_selector``): "from the middle layer of the projection head". ``from_head_layer = k``
keeps the first k layers of the pre-training head (each linear, BatchNorm if the head has it,
ReLU), with their pre-trained weights, between the encoder's h and the new classifier
(:func:`head_layers`). k = 0 is h itself (SimCLR v1); k equal to the head's number of layers
is its output z (the official code allows it too). The head's weights and its architecture
come with the pre-trained encoder (:class:`simclr.models.pretrained.PretrainedEncoder`'s
``head``): from a pre-training checkpoint, or from an export written with
``python -m simclr.export <ckpt> <out_dir> --head``.
"""

from __future__ import annotations

from torch import Tensor, nn

from simclr.errors import ConfigError
from simclr.rules import Rule, integer_at_least, state

FROM_HEAD_LAYER = state(
    Rule(
        "from_head_layer",
        integer_at_least(0),
        "an integer >= 0 (0: the classifier on h; k: on the k-th layer of the pre-trained head)",
    )
)


class ScaleOnlyBatchNorm(nn.BatchNorm1d):
    """BatchNorm over ``(B, F)`` with a learned per-feature scale and no learned shift."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.register_parameter("bias", None)


class ProjectionHead(nn.Module):
    """MLP ``(B, input_dim) -> (B, output_dim)``.

    ``num_layers`` linear layers; the hidden ones have ``hidden_dim`` units (the input width when
    ``None``, as in the paper), optional BatchNorm, and ReLU. With ``output_batch_norm`` (the
    official code) the last layer is linear without bias followed by
    :class:`ScaleOnlyBatchNorm`; without, it is a plain linear layer with bias.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int | None = None,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        output_batch_norm: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"model.head.num_layers must be >= 1, got {num_layers}")
        hidden_dim = hidden_dim or input_dim
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, output_dim, bias=not output_batch_norm))
        if output_batch_norm:
            layers.append(ScaleOnlyBatchNorm(output_dim))
        self.net = nn.Sequential(*layers)
        self.output_dim = output_dim

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def head_layers(config: dict, input_dim: int, count: int) -> tuple[nn.Sequential, int]:
    """The first ``count`` layers of a projection head of ``config`` on features of
    ``input_dim``, freshly built: ``(layers, output_dim)``. Module indices are the head's
    (``net.<i>`` becomes ``<i>``), so its weights load by name. ``count = 0``: no layers.
    (:data:`FROM_HEAD_LAYER`, the option's rule, is checked with the config.)"""
    head = ProjectionHead(input_dim, **config)
    linear = [i for i, module in enumerate(head.net) if isinstance(module, nn.Linear)]
    if not 0 <= count <= len(linear):
        raise ConfigError(
            f"from_head_layer={count}: the pre-trained projection head has {len(linear)} "
            f"layer(s) (model.head.num_layers); choose 0 to {len(linear)}"
        )
    if count == 0:
        return nn.Sequential(), input_dim
    # A hidden layer ends after its ReLU (the next linear layer's index); the last, at the end.
    end = linear[count] if count < len(linear) else len(head.net)
    layers = head.net[:end]
    return layers, layers[linear[count - 1]].out_features
