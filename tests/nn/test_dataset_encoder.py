"""DatasetEncoder: a task vector from per-class image sets, blind to image and class order."""

from __future__ import annotations

import pytest
import torch

from nag.errors import NagError
from nag.nn.dataset_encoder import DatasetEncoder

B, M, N, HIDDEN = 3, 5, 4, 16

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def encoder() -> DatasetEncoder:
    torch.manual_seed(0)
    return DatasetEncoder(in_channels=1, hidden=HIDDEN, channels=4).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(B, M, N, 1, 8, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1]], dtype=torch.bool)
    return images, mask


def test_task_vectors_have_the_hidden_size_and_differ_between_tasks(encoder, batch) -> None:
    out = encoder(*batch)
    assert out.shape == (B, HIDDEN) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_invariant_to_the_order_of_images_within_each_class(encoder, batch) -> None:
    images, mask = batch
    perm = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(i)) for i in range(B * M)])
    shuffled = images.flatten(0, 1)[torch.arange(B * M).unsqueeze(1), perm].view_as(images)
    assert not torch.equal(shuffled, images)
    torch.testing.assert_close(encoder(shuffled, mask), encoder(images, mask), atol=1e-5, rtol=1e-4)


def test_invariant_to_the_order_of_classes(encoder, batch) -> None:
    images, mask = batch
    perm = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(encoder(images[:, perm], mask[:, perm]), encoder(images, mask), atol=1e-5, rtol=1e-4)


def test_masked_classes_are_ignored_and_padding_is_free(encoder, batch) -> None:
    images, mask = batch
    noise = images.clone()
    noise[~mask] = 100.0  # whatever sits in a masked slot
    torch.testing.assert_close(encoder(noise, mask), encoder(images, mask))
    # task 1 has classes 0-2 only: fewer padding slots give the same vector
    torch.testing.assert_close(
        encoder(images[1:2, :3], mask[1:2, :3]), encoder(images, mask)[1:2], atol=1e-5, rtol=1e-4
    )


def test_the_number_of_classes_is_read(encoder, batch) -> None:
    """The same image set copied into more class slots is another task (more classes)."""
    images, _ = batch
    one = images[:1, :1].expand(1, M, N, 1, 8, 8)
    few, many = torch.zeros(1, M, dtype=torch.bool), torch.ones(1, M, dtype=torch.bool)
    few[0, :2] = True
    assert not torch.allclose(encoder(one, few), encoder(one, many), atol=1e-4)


def test_frozen_cnn_gets_no_gradient_but_the_pooling_does(batch) -> None:
    torch.manual_seed(0)
    frozen = DatasetEncoder(1, HIDDEN, channels=4, train_cnn=False)
    frozen(*batch).sum().backward()
    assert all(p.grad is None for p in frozen.cnn.parameters())
    assert all(p.grad is not None for p in frozen.out.parameters())
    torch.manual_seed(0)
    trained = DatasetEncoder(1, HIDDEN, channels=4)
    trained(*batch).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained.cnn.parameters())


def test_a_task_without_classes_is_refused(encoder, batch) -> None:
    images, mask = batch
    with pytest.raises(NagError, match="at least one unmasked class"):
        encoder(images, torch.zeros_like(mask))
