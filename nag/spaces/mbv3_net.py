"""The once-for-all MobileNetV3 subnet (Cai et al. 2020) in plain torch, no ``ofa`` package.

It is the network ``OFAMobileNetV3.get_active_subnet()`` returns for OFA's ``ks``/``e``/``d``
lists, layer for layer (the tests check parameter counts, MACs and outputs against ``ofa``):
a 3x3 stride-2 conv with h-swish, a 3x3 depthwise block of expand ratio 1, five stages of
inverted-residual (MBConv) layers, a 1x1 final expand layer, global average pooling, a 1x1
feature-mix conv without BN and a linear classifier. Stage ``s`` has OFA MobileNetV3-Large's
width, stride, activation (ReLU in the first two stages, h-swish after) and squeeze-excite
(stages 2, 4 and 5); the first layer of a stage strides, the others add their input.

Widths are MobileNetV3-Large's scaled by ``width_mult`` and rounded to multiples of 8 as OFA
rounds them. The default 1.2 is the supernet the HELP latency table measured
(``ofa_mbv3_d234_e346_k357_w1.2``); OFA also ships 1.0. Every leaf is a ``torch.nn`` layer, so
``nag export`` can write the network as standalone source.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: OFA's ImageNet input; the network takes any side (global pooling), and the latency table's
#: resolutions ``r`` run from 128 to 224.
INPUT_SHAPE: tuple[int, int, int] = (3, 224, 224)

#: MobileNetV3-Large's widths at ``width_mult`` 1: first conv, first block, the five stages,
#: final expand layer, feature-mix layer.
BASE_WIDTHS: tuple[int, ...] = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STAGE_STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
STAGE_HSWISH: tuple[bool, ...] = (False, False, True, True, True)
STAGE_SE: tuple[bool, ...] = (False, True, False, True, True)


def make_divisible(value: float, divisor: int = 8) -> int:
    """OFA's (and TF-slim's) channel rounding: nearest multiple of ``divisor``, never below
    ``divisor`` nor more than 10% below ``value``; widths must round as OFA's do to match it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _activation(hswish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hswish else nn.ReLU(inplace=True)


class SqueezeExcite(nn.Module):
    """OFA's SE: pooled channels through a 1x1 reduction to a quarter (ReLU) and back (h-sigmoid)
    scale the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = make_divisible(channels // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (left out at ratio 1), ``kernel`` depthwise conv, optional
    SE, 1x1 linear projection; the input is added when stride and width allow it."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, mid: int, hswish: bool, se: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if mid != c_in:
            layers += [nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), _activation(hswish)]
        layers += [
            nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            _activation(hswish),
        ]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x if self.residual else self.body(x)


class MBV3Network(nn.Module):
    """The OFA MobileNetV3 subnet of ``stages``: per stage, the ``(kernel, expand)`` pair of each
    active layer (:data:`nag.spaces.mbv3.MBV3Arch`)."""

    def __init__(
        self,
        stages: Sequence[Sequence[tuple[int, int]]],
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stem, first, *stage_widths, final_expand, feature_mix = (make_divisible(w * width_mult) for w in BASE_WIDTHS)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.Hardswish(inplace=True),
        )
        blocks = [MBConv(stem, first, 3, 1, stem, hswish=False, se=False)]
        width = first
        for layers, c_out, stride, hswish, se in zip(stages, stage_widths, STAGE_STRIDES, STAGE_HSWISH, STAGE_SE):
            for i, (kernel, expand) in enumerate(layers):
                mid = make_divisible(round(width * expand))
                blocks.append(MBConv(width, c_out, kernel, stride if i == 0 else 1, mid, hswish, se))
                width = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv2d(width, final_expand, 1, bias=False),
            nn.BatchNorm2d(final_expand),
            nn.Hardswish(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(final_expand, feature_mix, 1, bias=False),
            nn.Hardswish(inplace=True),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(feature_mix, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
