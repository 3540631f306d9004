import gzip

import pytest
import torch

from nag.errors import ConfigError, DataFileError
from nag.zc import image_batch


def test_mnist_batch_is_seeded_cifar_shaped_and_standardised(shared_data):
    path = shared_data / "images" / "mnist_5k.csv.gz"
    x, y = image_batch(path, batch_size=64, seed=0)
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10)) and len(set(y.tolist())) > 5
    assert torch.equal(x[:, 0], x[:, 2])
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3
    x2, y2 = image_batch(path, batch_size=64, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(image_batch(path, batch_size=64, seed=1)[1], y)


def test_digits_layout_has_its_label_last(shared_data):
    x, y = image_batch(shared_data / "images" / "digits.csv.gz", batch_size=10, seed=0, size=16, channels=1)
    assert x.shape == (10, 1, 16, 16) and set(y.tolist()) <= set(range(10))


def test_bad_files_and_batch_sizes_are_named(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        image_batch(tmp_path / "missing.csv.gz")
    odd = tmp_path / "odd.csv.gz"
    with gzip.open(odd, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataFileError, match="3 columns"):
        image_batch(odd)
    square = tmp_path / "tiny.csv.gz"
    with gzip.open(square, "wt") as f:
        f.write("\n".join(",".join(["3"] * 64 + [str(i)]) for i in range(4)) + "\n")
    with pytest.raises(ConfigError, match="batch_size=5"):
        image_batch(square, batch_size=5)
