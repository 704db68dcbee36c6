import pytest
import torch

from simclr.heads import ProjectionHead


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_layers_and_output_size(num_layers, batch_norm):
    head = ProjectionHead(
        64, hidden_dim=32, output_dim=16, num_layers=num_layers, batch_norm=batch_norm
    )
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == num_layers
    assert len(norms) == (num_layers - 1 if batch_norm else 0)
    assert head(torch.randn(4, 64)).shape == (4, 16)


def test_hidden_width_defaults_to_the_input_width():
    head = ProjectionHead(48, num_layers=2)
    assert head.net[0].out_features == 48
    assert head.output_dim == 128


def test_rejects_zero_layers():
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(8, num_layers=0)
