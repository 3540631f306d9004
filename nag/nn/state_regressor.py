"""A noise-aware regressor of a discrete diffusion state, for DiGress's regressor guidance."""

from __future__ import annotations

import math

import torch
from torch import nn

#: Sine and cosine frequencies of the diffusion time fed to the regressor.
TIME_FREQUENCIES = 8


class StateRegressor(nn.Module):
    """Predicts targets ``[B, C]`` from a noisy state given as one-hot floats.

    The input is one-hot (not class ids) so that sampling can take the gradient of the
    prediction with respect to every class of every position: DiGress's guidance tilts
    ``p(z_s | z_t)`` by ``exp(<grad_{z_t} log p(y | z_t), z_s>)``. An MLP over the whole
    flattened state sees every pair of positions at once, which is what the targets of small
    architecture graphs depend on (layer op x the layer it reads), and a gradient costs one
    small backward pass per sampling step.

    Args:
        sizes: one-hot entries of each diffused kind (``positions x classes``), in order.
        outputs: targets predicted.
        hidden: width of the two hidden layers.
    """

    def __init__(self, sizes: list[int], outputs: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(sum(sizes) + 2 * TIME_FREQUENCIES, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, outputs),
        )
        self.register_buffer(
            "frequencies", math.pi * torch.arange(1, TIME_FREQUENCIES + 1, dtype=torch.float), persistent=False
        )

    def forward(self, onehots: list[torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        """``onehots``: each kind's ``[B, ..., K]`` (the sizes of ``__init__``); ``t [B]`` in ``[0, 1]``."""
        angles = t.float()[:, None] * self.frequencies
        flat = [o.flatten(1) for o in onehots]
        return self.mlp(torch.cat([*flat, angles.sin(), angles.cos()], 1))
