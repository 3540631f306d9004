"""A conditional continuous normalizing flow trained by flow matching (conditional OT paths),
sampled and scored through an ODE solver (torchdiffeq)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchdiffeq import odeint

#: Solvers that take a fixed step (``steps`` applies); the others are adaptive (atol/rtol).
FIXED_GRID = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")


def velocity_and_divergence(
    field: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, probe: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``v(x, t | c)`` and ``tr(dv/dx)`` per row, detached.

    Exact without ``probe``: the batch is evaluated as ``D`` stacked copies and one backward
    pass reads ``dv_i/dx_i`` from copy ``i`` (the same work as ``D`` backward passes, one
    dispatch). With a ``probe`` it is Hutchinson's unbiased ``probe^T (dv/dx) probe``.
    """
    b, d = x.shape
    if probe is not None:
        x = x.detach().requires_grad_(True)
        v = field(x, t, cond)
        return v.detach(), (torch.autograd.grad((v * probe).sum(), x)[0] * probe).sum(-1)
    copies = x.detach().repeat(d, 1).requires_grad_(True)
    v = field(copies, t, None if cond is None else cond.repeat(d, 1))
    own = v.view(d, b, d).diagonal(dim1=0, dim2=2)  # [b, d]: output i of copy i
    grad = torch.autograd.grad(own.sum(), copies)[0].view(d, b, d).diagonal(dim1=0, dim2=2)
    return v[:b].detach(), grad.sum(-1)


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x.pow(2).sum(-1) + x.shape[-1] * math.log(2 * math.pi))


class ConditionalFlowMatching(nn.Module):
    """``dx/dt = v(x, t | c)`` carries ``N(0, I)`` at ``t = 0`` to the data at ``t = 1``.

    Training regresses ``v`` on the conditional OT path ``x_t = (1 - (1 - s) t) x0 + t x1``
    with target ``x1 - (1 - s) x0`` (Lipman et al., 2023), ``s = sigma_min``: no ODE is
    solved while training. Sampling integrates the ODE forward; :meth:`log_prob` integrates
    it backward together with the instantaneous change of variables
    ``d log p_t(x_t)/dt = -tr(dv/dx)``.
    """

    def __init__(
        self,
        field: nn.Module,
        sigma_min: float = 1e-4,
        solver: str = "rk4",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        steps: int = 20,
    ) -> None:
        super().__init__()
        self.field, self.sigma_min = field, sigma_min
        self.solver, self.atol, self.rtol, self.steps = solver, atol, rtol, steps

    def loss(self, x1: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching MSE (per dimension) for a batch of data points ``x1 [B, D]``."""
        t = torch.rand(x1.shape[0], device=x1.device, dtype=x1.dtype)
        x0 = torch.randn_like(x1)
        tt = t.unsqueeze(-1)
        xt = (1 - (1 - self.sigma_min) * tt) * x0 + tt * x1
        target = x1 - (1 - self.sigma_min) * x0
        return (self.field(xt, t, cond) - target).pow(2).mean()

    def _odeint(self, fn, state, t0: float, t1: float, like: torch.Tensor):
        times = torch.tensor([t0, t1], device=like.device, dtype=like.dtype)
        options = {"step_size": 1.0 / self.steps} if self.solver in FIXED_GRID else None
        return odeint(fn, state, times, method=self.solver, atol=self.atol, rtol=self.rtol, options=options)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Push base samples ``noise [B, D]`` (``t = 0``) to data space (``t = 1``)."""
        return self._odeint(lambda t, x: self.field(x, t, cond), noise, 0.0, 1.0, noise)[-1]

    def log_prob(
        self,
        x1: torch.Tensor,
        cond: torch.Tensor | None = None,
        exact: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p_1(x1) [B], x0 [B, D])``: the density of the flow at ``x1`` and the base point
        it came from. ``exact`` takes the full trace (``D`` times the work of a sampling
        step; fine for small ``D``); otherwise one Rademacher probe per sample, fixed along the solve
        (Hutchinson; unbiased, noisier). Works under ``torch.inference_mode`` too."""
        with torch.inference_mode(False), torch.enable_grad():
            x1 = x1.detach().clone()
            cond = None if cond is None else cond.detach().clone()
            probe = None
            if not exact:
                probe = torch.randint(0, 2, x1.shape, generator=generator, device="cpu").to(x1) * 2 - 1

            def dynamics(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
                return velocity_and_divergence(self.field, state[0], t, cond, probe)

            x0, change = self._odeint(dynamics, (x1, torch.zeros(x1.shape[0]).to(x1)), 1.0, 0.0, x1)
        return standard_normal_log_prob(x0[-1]) + change[-1], x0[-1]
