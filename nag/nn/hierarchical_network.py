"""Networks of the hierarchical space: general DAG cells stacked in stages under a stem and head.

A cell is an op-on-node DAG (input, op nodes, output in topological order); every node sums
its predecessors' outputs. Only the cell's input node changes resolution or width: a
ReLU-conv1x1-BN projection (stride ``s``) when ``c_in != c_out`` or ``s != 1``, so every op
runs at stride 1 on ``c_out`` channels and its cost depends on ``c_out`` and the feature-map
size alone (what makes closed-form parameter and FLOP counts possible).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from nag.nn.nb201_network import ReLUConvBN


class DWSepConv(nn.Sequential):
    """ReLU -> depthwise k x k -> pointwise 1x1 -> BN (one separable block, no bias)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )


#: Op-node vocabulary: name -> builder of a stride-1, ``channels -> channels`` module.
CELL_OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv1x1": lambda c: ReLUConvBN(c, c, 1),
    "conv3x3": lambda c: ReLUConvBN(c, c, 3),
    "conv5x5": lambda c: ReLUConvBN(c, c, 5),
    "dwsep3x3": lambda c: DWSepConv(c, 3),
    "dwsep5x5": lambda c: DWSepConv(c, 5),
    "maxpool3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "avgpool3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "skip": lambda c: nn.Identity(),
}


class DAGCell(nn.Module):
    """One cell: ``labels`` = ``input, op..., output``; ``adjacency[i, j]`` = node i feeds node j."""

    def __init__(self, labels: Sequence[str], adjacency: np.ndarray, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.project = ReLUConvBN(c_in, c_out, 1, stride) if (c_in != c_out or stride != 1) else nn.Identity()
        self.node_ops = nn.ModuleList(CELL_OPS[op](c_out) for op in labels[1:-1])
        adjacency = np.asarray(adjacency)
        self.predecessors = [np.flatnonzero(adjacency[:, j]).tolist() for j in range(1, len(labels))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.project(x)]
        for j, preds in enumerate(self.predecessors):
            total = sum(states[i] for i in preds)
            states.append(self.node_ops[j](total) if j < len(self.node_ops) else total)
        return states[-1]


class HierarchicalNetwork(nn.Module):
    """Stem (conv3x3-BN) -> stages of repeated cells -> ReLU, global average pool, linear.

    ``stages`` holds ``(labels, adjacency, channels, stride, repeats)``; the first cell of a
    stage takes the previous width and the stage's stride, the rest keep both.
    """

    def __init__(
        self,
        stem_channels: int,
        stages: Sequence[tuple[Sequence[str], np.ndarray, int, int, int]],
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels)
        )
        cells, width = [], stem_channels
        for labels, adjacency, channels, stride, repeats in stages:
            for r in range(repeats):
                cells.append(DAGCell(labels, adjacency, width, channels, stride if r == 0 else 1))
                width = channels
        self.cells = nn.Sequential(*cells)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))
