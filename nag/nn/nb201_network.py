"""The NAS-Bench-201 network: a cell repeated in a fixed ResNet-like macro skeleton.

Mirrors the official NAS-Bench-201 ``TinyNetwork``/``InferCell`` (Dong & Yang, 2020) so that
parameter and FLOP counts equal the benchmark's: stem conv 3x3 + BN, three stages of ``N``
cells with ``C``, ``2C``, ``4C`` channels joined by residual reduction blocks, BN-ReLU, global
average pooling and a linear classifier. Cells only run at stride 1 with equal input and
output channels, so each edge op is the official op for that case.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Cell edges (source node, target node) in the order of the architecture string.
CELL_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BN: the benchmark's ``nor_conv_*`` op."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: multiplies by zero instead of dropping the edge, as the official code
    does, so the graph (and every gradient path through it) is the benchmark's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def cell_op(name: str, channels: int) -> nn.Module:
    """One stride-1, ``channels -> channels`` edge op by its NAS-Bench-201 name."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class NB201Cell(nn.Module):
    """A 4-node cell: node ``i`` is the sum of the ops on the edges entering it."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        if len(ops) != len(CELL_EDGES):
            raise ValueError(f"expected {len(CELL_EDGES)} edge ops, got {len(ops)}")
        self.edges = nn.ModuleList(cell_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in range(1, 4):
            nodes.append(sum(op(nodes[src]) for op, (src, d) in zip(self.edges, CELL_EDGES) if d == dst))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's ``ResNetBasicblock`` at stride 2: two ReLU-Conv-BN 3x3 convs plus an
    AvgPool(2) -> Conv1x1 shortcut; halves the resolution and changes the width."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro skeleton around one cell; ``forward`` returns logits."""

    def __init__(
        self, ops: Sequence[str], num_classes: int = 10, in_channels: int = 3, C: int = 16, N: int = 5
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                layers.append(ResidualReduction(width // 2, width))
            layers.extend(NB201Cell(ops, width) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.global_pooling(self.lastact(self.cells(self.stem(x))))
        return self.classifier(features.flatten(1))
