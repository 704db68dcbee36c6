import pytest
import torch

from simclr.models.heads import ProjectionHead, ScaleOnlyBatchNorm


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("output_batch_norm", [True, False])
def test_layers_and_output_size(num_layers, batch_norm, output_batch_norm):
    head = ProjectionHead(
        64,
        hidden_dim=32,
        output_dim=16,
        num_layers=num_layers,
        batch_norm=batch_norm,
        output_batch_norm=output_batch_norm,
    )
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == num_layers
    assert len(norms) == (num_layers - 1 if batch_norm else 0) + output_batch_norm
    assert head(torch.randn(4, 64)).shape == (4, 16)


def test_official_output_layer_has_no_bias_and_no_learned_shift():
    head = ProjectionHead(8, output_dim=4, num_layers=2)
    last_linear, output_norm = head.net[-2], head.net[-1]
    assert last_linear.bias is None
    assert isinstance(output_norm, ScaleOnlyBatchNorm) and output_norm.bias is None
    assert output_norm.weight.shape == (4,)
    names = {name for name, _ in head.named_parameters()}
    assert not any(name.startswith(f"net.{len(head.net) - 1}.bias") for name in names)
    # Every output feature is standardised over the batch, then scaled.
    with torch.no_grad():
        output_norm.weight.fill_(2.0)
    z = head.train()(torch.randn(64, 8))
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.full((4,), 2.0), atol=1e-3, rtol=0)


def test_the_output_norm_converts_to_synchronised_batchnorm():
    head = torch.nn.SyncBatchNorm.convert_sync_batchnorm(ProjectionHead(8, output_dim=4))
    assert isinstance(head.net[-1], torch.nn.SyncBatchNorm) and head.net[-1].bias is None


def test_hidden_width_defaults_to_the_input_width():
    head = ProjectionHead(48, num_layers=2)
    assert head.net[0].out_features == 48
    assert head.output_dim == 128


def test_rejects_zero_layers():
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(8, num_layers=0)
