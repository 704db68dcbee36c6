"""Fine-tuning from a layer of the pre-trained projection head (SimCLR v2, section 2; the
official ``--ft_proj_selector``).

SimCLR v2 fine-tunes "from the middle layer of the projection head": ``from_head_layer = k``
keeps the first k layers of the pre-training head (each linear, BatchNorm if the head has it,
ReLU), with their pre-trained weights, between the encoder's h and the new classifier. k = 0
is h itself (SimCLR v1); k equal to the head's number of layers is its output z (the official
code allows it too).

The head's weights and its architecture come with the pre-trained encoder
(:class:`simclr.models.pretrained.PretrainedEncoder`'s ``head``): from a pre-training
checkpoint, or from an export written with ``python -m simclr.export <ckpt> <out_dir> --head``.
"""

from __future__ import annotations

from torch import nn

from simclr.errors import ConfigError
from simclr.models.heads import ProjectionHead
from simclr.rules import Rule, integer_at_least, state

FROM_HEAD_LAYER = state(
    Rule(
        "from_head_layer",
        integer_at_least(0),
        "an integer >= 0 (0: the classifier on h; k: on the k-th layer of the pre-trained head)",
    )
)


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
