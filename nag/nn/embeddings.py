"""Sinusoidal embeddings of diffusion time and of a node's place in topological order."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(values: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """``[...]`` -> ``[..., dim]`` sin/cos features at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float().unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Embeds continuous diffusion time ``t in (0, 1]``; scaled by 1000 so that the sinusoid
    frequencies resolve the small-``t`` steps where fine detail is denoised."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(t * 1000.0, self.dim))
