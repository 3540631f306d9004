"""A task as a set of labelled images: encodes a sample of each class into one task vector.

A task (dataset) a meta-predictor has never seen can still be shown: a few images per
class describe what the networks will have to separate, before any architecture is
measured on it (MetaD2A/DiffusionNAG read the task the same way).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn.aggr import SetTransformerAggregation

from nag.errors import NagError


class DatasetEncoder(nn.Module):
    """Maps images ``[B, M, n, C, H, W]`` (``M`` class slots of ``n`` images each) with a
    ``class_mask [B, M]`` to a task vector ``[B, hidden]``.

    A small CNN embeds every image; a set transformer pools the ``n`` images of each class
    into a class vector and a second one pools the classes into the task vector, so the
    result does not depend on the order of the images nor of the classes (labels are
    arbitrary names). Masked class slots (tasks with fewer than ``M`` classes) are never
    embedded; the number of classes enters as ``log(count)``, since attention pooling is a
    weighted mean and cannot count. ``train_cnn=False`` keeps the CNN at its seeded random
    initialisation (no pretrained weights exist offline): fixed random features, cheaper.
    """

    def __init__(
        self, in_channels: int, hidden: int, channels: int = 16, train_cnn: bool = True, heads: int = 4
    ) -> None:
        super().__init__()
        wide = 2 * channels
        self.cnn = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, wide, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(wide, wide, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(wide, hidden),
        )
        self.cnn.requires_grad_(train_cnn)
        self.train_cnn = train_cnn
        self.image_pool = SetTransformerAggregation(hidden, heads=heads, layer_norm=True)
        self.class_item = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.class_pool = SetTransformerAggregation(hidden, heads=heads, layer_norm=True)
        self.out = nn.Linear(hidden + 1, hidden)

    def forward(self, images: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
        """``images [B, M, n, C, H, W]``, ``class_mask [B, M]`` bool -> ``[B, hidden]``."""
        b, m, n = images.shape[:3]
        class_mask = class_mask.bool()
        count = class_mask.sum(1)
        if bool((count == 0).any()):
            raise NagError("DatasetEncoder: every task needs at least one unmasked class of images")
        valid = images[class_mask]  # [V, n, C, H, W], only the classes that exist
        with torch.set_grad_enabled(self.train_cnn and torch.is_grad_enabled()):
            feats = self.cnn(valid.flatten(0, 1))
        v = valid.shape[0]
        per_image = torch.arange(v, device=images.device).repeat_interleave(n)
        classes = self.class_item(self.image_pool(feats, per_image, dim_size=v, max_num_elements=n))
        task_of_class = torch.arange(b, device=images.device).unsqueeze(1).expand(b, m)[class_mask]
        pooled = self.class_pool(classes, task_of_class, dim_size=b, max_num_elements=m)
        return self.out(torch.cat([pooled, count.to(pooled.dtype).log().unsqueeze(1)], dim=1))
