"""Small real image batches for zero-cost proxies and quick training, from the offline sets.

Two CSV layouts are read (``../shared/data/images``), both with the label in the last column:
MNIST, 28x28 uint8 pixels + label (``mnist_5k.csv.gz``; its first column is the always-blank
top-left pixel, not the label), and UCI digits, 8x8 values in 0..16 + label (``digits.csv.gz``).
Images are scaled to [0, 1], standardised with the set's own mean/std (as CIFAR pipelines do with theirs), resized
bilinearly and the grey channel replicated, so CIFAR-shaped networks (3x32x32) can run on them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nag.errors import ConfigError, DataFileError

#: columns -> (pixel side, maximum pixel value); the label is the last column
_LAYOUTS = {785: (28, 255.0), 65: (8, 16.0)}


@functools.lru_cache(maxsize=4)
def load_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the file as ``float32 [N, side, side]`` in [0, 1] and ``int64`` labels."""
    file = Path(path)
    if not file.is_file():
        raise DataFileError(f"image file {file} not found; point it at ../shared/data/images/mnist_5k.csv.gz")
    try:
        table = np.loadtxt(file, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise DataFileError(f"{file}: not a numeric CSV ({e}); re-copy it from ../shared/data/images") from None
    if table.shape[1] not in _LAYOUTS:
        raise DataFileError(
            f"{file}: {table.shape[1]} columns; expected 785 (28x28 + label, MNIST) or 65 (8x8 + label, UCI digits)"
        )
    side, top = _LAYOUTS[table.shape[1]]
    return (table[:, :-1] / top).reshape(-1, side, side), table[:, -1].astype(np.int64)


def image_batch(
    path: str | Path, batch_size: int = 64, seed: int = 0, size: int = 32, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch ``(images [B, channels, size, size] float32, labels [B] int64)``.

    The same ``(path, batch_size, seed, size, channels)`` always gives the same tensors.
    """
    pixels, labels = load_images(str(path))
    if not 0 < batch_size <= len(labels):
        raise ConfigError(f"batch_size={batch_size}: must be between 1 and the {len(labels)} images in {path}")
    index = np.random.default_rng(seed).choice(len(labels), size=batch_size, replace=False)
    mean, std = float(pixels.mean()), float(pixels.std())
    x = torch.from_numpy((pixels[index] - mean) / std).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, channels, -1, -1).contiguous(), torch.from_numpy(labels[index])
