"""The diffusion state of an architecture graph, and how predictors read a noisy one.

Score diffusion works on a signed state ``{"x": [B, N, V], "adj": [B, N, N]}`` (``adj`` only
where the topology varies), clean values in {-1, 1} and padding rows all -1. Noise-aware
predictors and guidance must read exactly what the sampler holds at time ``t``; these
functions are the one place that maps between a clean batch, a noised state and the
``(x, adj, mask)`` a graph encoder takes, used by training and by guidance alike.
"""

from __future__ import annotations

import torch

from nag.diffusion.sde import SDE

State = dict[str, torch.Tensor]


def to_signed(onehot: torch.Tensor) -> torch.Tensor:
    """{0, 1} -> {-1, 1}: a symmetric target for Gaussian diffusion; an all -1 row is padding."""
    return onehot * 2.0 - 1.0


def clean_state(batch: dict[str, torch.Tensor], fixed_topology: bool) -> tuple[State, State]:
    """Signed clean graph and masks of the diffused entries (``adj``: upper triangle only)."""
    state = {"x": to_signed(batch["x"])}
    masks = {"x": torch.ones_like(batch["x"], dtype=torch.bool)}
    if not fixed_topology:
        state["adj"] = to_signed(batch["adj"])
        masks["adj"] = torch.ones_like(batch["adj"], dtype=torch.bool).triu(1)
    return state, masks


def perturb_state(
    state: State, masks: State, sde: SDE, t: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[State, State]:
    """A draw of ``x_t ~ p_t(. | x_0)`` for every part, and the unit noise used."""
    noise = {k: torch.randn(v.shape, device=v.device, generator=generator) * masks[k] for k, v in state.items()}
    noisy = {k: sde.perturb(v, t, noise[k]) * masks[k] for k, v in state.items()}
    return noisy, noise


def encoder_inputs(state: State, fixed_adj: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, adj, mask)`` for a graph encoder from a (noisy) signed state.

    The map back to the {0, 1} scale is linear, so the encoder's gradient reaches every
    entry of ``x_t`` (guidance needs it); every node position is kept because padding is
    itself a generated quantity (an all -1 row), not something known in advance.
    """
    x = (state["x"] + 1.0) / 2.0
    b, n = x.shape[:2]
    adj = fixed_adj.expand(b, -1, -1) if "adj" not in state else ((state["adj"] + 1.0) / 2.0).triu(1)
    return x, adj, torch.ones(b, n, dtype=torch.bool, device=x.device)


def sample_times(
    batch_size: int, sde: SDE, eps: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform diffusion times in ``[eps, T)``."""
    return torch.rand(batch_size, device=device, generator=generator) * (sde.T - eps) + eps
