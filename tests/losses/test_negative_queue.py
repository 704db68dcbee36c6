"""SimCLR v2's memory buffer in the loss: NT-Xent with queued keys as extra negatives against a
loop written from the formula, and the queue itself (first in, first out; only what was filled;
finite keys only; saved and loaded bit for bit)."""

import io
import itertools
import math

import pytest
import torch

from simclr.errors import ConfigError
from simclr.losses import NTXentLoss
from simclr.losses.negative_queue import NegativeQueue


def reference_ntxent_with_negatives(z, negatives, temperature):
    """Each (anchor, positive) term of NT-Xent, one at a time, in float64 with autograd:
    ``-log(exp(s(a, p)) / (sum over the batch's other views exp(s(a, o)) + sum over the
    queued keys exp(s(a, k))))``, ``s`` the cosine similarity over ``temperature``."""
    num_views, num_images, _ = z.shape
    z = z / z.norm(dim=-1, keepdim=True)
    keys = negatives / negatives.norm(dim=-1, keepdim=True)
    items = list(itertools.product(range(num_views), range(num_images)))
    terms = []
    for anchor in items:
        a = z[anchor]
        others = [z[other] for other in items if other != anchor]
        denominator = sum(torch.exp(a @ o / temperature) for o in others)
        denominator = denominator + sum(torch.exp(a @ key / temperature) for key in keys)
        for view in range(num_views):
            if view != anchor[0]:
                positive = torch.exp(a @ z[view, anchor[1]] / temperature)
                terms.append(-torch.log(positive / denominator))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("num_views, num_images, num_keys", [(2, 4, 5), (3, 3, 1), (2, 1, 7)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_loss_with_queued_keys_equals_the_formula_loss_and_gradient(
    num_views, num_images, num_keys, temperature
):
    generator = torch.Generator().manual_seed(num_views * 10 + num_keys)
    z = torch.randn(num_views, num_images, 6, dtype=torch.float64, generator=generator)
    keys = torch.randn(num_keys, 6, dtype=torch.float64, generator=generator)
    z_ours = z.clone().requires_grad_()
    loss, _ = NTXentLoss(temperature)(z_ours, negatives=keys)
    loss.backward()
    z_ref = z.clone().requires_grad_()
    expected = reference_ntxent_with_negatives(z_ref, keys, temperature)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    torch.testing.assert_close(z_ours.grad, z_ref.grad, rtol=1e-9, atol=1e-12)


def test_identical_embeddings_and_keys_give_log_of_all_candidates():
    z, keys = torch.ones(2, 5, 8), torch.ones(7, 8)
    loss, _ = NTXentLoss(0.1)(z, negatives=keys)
    assert loss.item() == pytest.approx(math.log(2 * 5 - 1 + 7), rel=1e-6)


def test_an_empty_queue_leaves_the_loss_as_without_one():
    z = torch.randn(2, 6, 8)
    criterion = NTXentLoss(0.2)
    assert criterion(z, negatives=torch.empty(0, 8)).loss == criterion(z).loss


def test_a_nearest_queued_key_counts_as_a_miss():
    z = torch.eye(4).repeat(2, 1, 1)  # both views of image n: the n-th basis vector
    # ... but image 0's second view slightly off, and a key exactly on its first view: that
    # anchor's nearest candidate is the key (the other anchor of image 0 ties, and argmax
    # takes the in-batch candidate, which comes first).
    z[1, 0] = torch.tensor([1.0, 0.1, 0.0, 0.0])
    _, accuracy = NTXentLoss(0.5)(z, negatives=torch.eye(4)[:1])
    assert accuracy.item() == pytest.approx(7 / 8)


def keys_of(step: int, count: int = 3, dim: int = 2) -> torch.Tensor:
    """``count`` keys (as 1 view of ``count`` images) whose first coordinate names them."""
    first = torch.arange(step * count, (step + 1) * count, dtype=torch.float32)
    return torch.stack([first, torch.ones(count)], dim=1).view(1, count, dim)


def test_queue_is_first_in_first_out_and_only_filled_rows_count():
    queue = NegativeQueue(size=5, dim=2)
    assert queue.negatives().shape == (0, 2)
    queue.enqueue(keys_of(0))  # keys 0 1 2
    assert queue.negatives()[:, 0].tolist() == [0, 1, 2]
    queue.enqueue(keys_of(1))  # keys 3 4, then 5 overwrites the oldest (0)
    assert queue.negatives()[:, 0].tolist() == [5, 1, 2, 3, 4]
    assert (queue.pointer.item(), queue.filled.item()) == (1, 5)
    queue.enqueue(torch.arange(14.0).view(1, 7, 2))  # more than it holds: the last 5 stay
    assert sorted(queue.negatives()[:, 0].tolist()) == [4, 6, 8, 10, 12]


def test_keys_that_are_not_all_finite_are_dropped():
    queue = NegativeQueue(size=4, dim=2)
    queue.enqueue(keys_of(0, count=2))
    broken = keys_of(1, count=2)
    broken[0, 1, 0] = float("nan")
    queue.enqueue(broken)
    assert queue.negatives()[:, 0].tolist() == [0, 1]
    assert queue.pointer.item() == 2


def test_queue_saved_and_loaded_is_bit_identical():
    queue = NegativeQueue(size=7, dim=3)
    for _ in range(3):
        queue.enqueue(torch.randn(2, 2, 3))
    buffer = io.BytesIO()
    torch.save(queue.state_dict(), buffer)
    buffer.seek(0)
    restored = NegativeQueue(size=7, dim=3)
    restored.load_state_dict(torch.load(buffer))
    for name in ("keys", "pointer", "filled"):
        assert torch.equal(getattr(restored, name), getattr(queue, name)), name
    # ... and continues as the original does.
    more = torch.randn(2, 2, 3)
    queue.enqueue(more)
    restored.enqueue(more)
    assert torch.equal(restored.negatives(), queue.negatives())


@pytest.mark.parametrize("size", [-1, 2.5])
def test_queue_size_is_checked(size):
    with pytest.raises(ConfigError, match=r"model\.memory\.size="):
        NegativeQueue(size=size, dim=2)
