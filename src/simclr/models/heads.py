"""Projection head g(h) = z, on which the contrastive loss is computed (SimCLR, section 2.1).

SimCLR v1 uses two layers (Linear -> ReLU -> Linear), SimCLR v2 three, with BatchNorm after
every hidden linear layer. The official code (google-research/simclr, ``ProjectionHead``) also
ends with a BatchNorm: its last linear layer has no bias and is followed by a BatchNorm with a
learned scale and no learned shift (``center=False``). Fine-tuning and linear evaluation use h,
not z.
"""

from __future__ import annotations

from torch import Tensor, nn

from simclr.errors import ConfigError


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
