"""Properties of NT-Xent that hold for every input, checked on inputs hypothesis chooses."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simclr.losses import NTXentLoss

FAST = settings(max_examples=50, deadline=None)
FLOAT32_MAX = float(np.finfo(np.float32).max)

temperatures = st.floats(0.05, 1.0)
moderate = st.floats(-10, 10, width=32)


@st.composite
def projections(draw, elements=moderate) -> torch.Tensor:
    """``(V, N, D)`` projections: 2 or 3 views of 1 to 5 images, 1 to 6 dimensions."""
    shape = (draw(st.integers(2, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    return torch.from_numpy(draw(arrays(np.float32, shape, elements=elements)))


def nt_xent(z: torch.Tensor, temperature: float) -> float:
    return float(NTXentLoss(temperature)(z).loss)


@FAST
@given(z=projections(), temperature=temperatures, data=st.data())
def test_invariant_to_a_consistent_permutation_of_the_images(z, temperature, data):
    # The same reordering of the N images in every view changes no (anchor, positive) pair.
    order = data.draw(st.permutations(range(z.shape[1])))
    permuted = z[:, torch.tensor(order, dtype=torch.long)]
    assert nt_xent(permuted, temperature) == pytest.approx(
        nt_xent(z, temperature), rel=1e-5, abs=1e-5
    )


@FAST
@given(z=projections(), temperature=temperatures, scale=st.floats(1e-3, 1e3))
def test_invariant_to_scaling_the_embeddings(z, temperature, scale):
    # Cosine similarity ignores length; rows too short for F.normalize's eps (but not zero)
    # would be an artefact of that eps, not of the loss.
    norms = torch.linalg.vector_norm(z, dim=-1)
    assume(bool(((norms == 0) | (norms > 1e-3)).all()))
    assert nt_xent(z * scale, temperature) == pytest.approx(
        nt_xent(z, temperature), rel=1e-4, abs=1e-5
    )


@FAST
@given(z=projections(), temperature=temperatures)
def test_non_negative(z, temperature):
    # Each term is logsumexp over candidates that include the positive, minus the positive.
    assert nt_xent(z, temperature) >= -1e-6


@FAST
@given(
    z=projections(elements=st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32)),
    temperature=st.floats(0.01, 1.0),
    zero_row=st.integers(0, 100),
)
def test_finite_loss_and_gradient_for_extreme_inputs(z, temperature, zero_row):
    z = z.clone()
    flat = z.view(-1, z.shape[-1])
    flat[zero_row % flat.shape[0]] = 0  # a zero vector among them
    z.requires_grad_(True)
    out = NTXentLoss(temperature)(z)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.accuracy)
    assert torch.isfinite(z.grad).all()


def test_huge_values_and_zero_vectors_by_hand():
    # The corners hypothesis may not pick: every value at float32's limit, and all zeros.
    for value in (FLOAT32_MAX, -FLOAT32_MAX, 1e30, 0.0):
        z = torch.full((2, 3, 4), value)
        z[1, 2] = 0
        assert torch.isfinite(NTXentLoss(0.05)(z).loss)
