"""Parameter and FLOP counts of built networks, in the convention of the published tables.

NAS-Bench-Suite-Zero (NASLib) measured the ``flops``/``params`` columns that ``nb201.csv``
and ``zc_proxies_*.csv`` carry with tensorwatch's torchstat counter, per image and per leaf
module call:

- ``Conv2d``: ``k_h * k_w * C_in * C_out / groups`` per output position, plus ``C_out`` per
  position with a bias; ``Linear``: ``in * out`` per row (no bias term);
- ``BatchNorm2d``: 2 per element (1 without affine); ReLU-family activations: 1 per element;
- ``AvgPool2d``/``MaxPool2d``: ``k_h * k_w`` per output element; adaptive pooling:
  ``(window_h + 1) * (window_w + 1)`` per output element and channel (torchstat's formula);
- everything else (additions, identities, other activations, functional calls) is free.

Counting that way makes ``count_flops`` equal the tables exactly; ``FlopCounterMode`` (2 per
MAC, no BN/ReLU/pooling) would not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_RELUS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)
_POOLS = (nn.AvgPool2d, nn.MaxPool2d)
_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def count_params(module: nn.Module) -> int:
    """Number of parameters (BN affine weights included, as the benchmarks count them)."""
    return sum(p.numel() for p in module.parameters())


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _adaptive_pool_flops(x: torch.Tensor, out: torch.Tensor) -> int:
    h, w = x.shape[-2:]
    oh, ow = out.shape[-2:]
    total = 0
    for i in range(oh):
        rows = math.ceil((i + 1) * h / oh) - math.floor(i * h / oh) + 1
        for j in range(ow):
            total += rows * (math.ceil((j + 1) * w / ow) - math.floor(j * w / ow) + 1)
    return total * x.shape[-3]


def _layer_flops(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """FLOPs of one call of a leaf ``layer`` for a batch of one."""
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        per_position = kh * kw * layer.in_channels * (layer.out_channels // layer.groups)
        if layer.bias is not None:
            per_position += layer.out_channels
        return per_position * out.shape[-2] * out.shape[-1]
    if isinstance(layer, nn.Linear):
        return x[0].numel() * layer.out_features
    if isinstance(layer, nn.BatchNorm2d):
        return x[0].numel() * (2 if layer.affine else 1)
    if isinstance(layer, _RELUS):
        return x[0].numel()
    if isinstance(layer, _POOLS):
        kh, kw = _pair(layer.kernel_size)
        return kh * kw * out[0].numel()
    if isinstance(layer, _ADAPTIVE_POOLS):
        return _adaptive_pool_flops(x[:1], out[:1])
    return 0


@torch.no_grad()
def count_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Per-image FLOPs of ``module`` on one input of ``input_shape`` (no batch dimension, e.g.
    ``[C, H, W]``), from one forward pass in eval mode; the module's train/eval flags and BN
    statistics are left as they were."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_flops(layer, inputs[0], output)

    modes = {m: m.training for m in module.modules()}
    handles = [m.register_forward_hook(hook) for m in module.modules() if next(m.children(), None) is None]
    try:
        module.eval()
        reference = next(module.parameters(), None)
        kwargs = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
        module(torch.zeros((1, *input_shape), **kwargs))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return total
