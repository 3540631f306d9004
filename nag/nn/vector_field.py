"""A conditional time-dependent vector field ``v(x, t | c)`` on vectors, for continuous flows."""

from __future__ import annotations

import torch
from torch import nn

from nag.nn.embeddings import TimeEmbedding


class FiLMBlock(nn.Module):
    """Pre-norm residual MLP whose normalised input is scaled/shifted by the (time, condition) code."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(code).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class ConditionalVectorField(nn.Module):
    """MLP ``(x [B, D], t [B], c [B, C]) -> v [B, D]``; time and condition enter every block
    (FiLM), so the field can change with both along the whole trajectory. ``cond_dim = 0``
    gives an unconditional field."""

    def __init__(self, dim: int, cond_dim: int = 0, hidden: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.time = TimeEmbedding(hidden)
        self.cond = (
            nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)) if cond_dim else None
        )
        self.blocks = nn.ModuleList(FiLMBlock(hidden) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        # an ODE solver passes one scalar time: embed it once, not once per row
        code = self.time(t.reshape(-1)).expand(x.shape[0], -1) if t.numel() == 1 else self.time(t)
        if self.cond is not None:
            code = code + self.cond(cond)
        code = nn.functional.silu(code)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, code)
        return self.out(h)
