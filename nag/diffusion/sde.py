"""Forward SDEs of Song et al. 2021, "Score-Based Generative Modeling through SDEs".

Every method computes in float32, whatever the input dtype and even inside an
``autocast`` region. bf16 keeps about 3 significant digits, while the noise scale of a
VE SDE spans four orders of magnitude (0.01 to 50) and the VP std goes to 0 as
``sqrt(1 - exp(...))``: in bf16 the small-``t`` coefficients round to wrong values (or
to exactly 0, giving infinite score weights) and samplers drift. The score network may
run in reduced precision; the SDE arithmetic around it must not.

Time-dependent coefficients (``diffusion``, ``std``) are returned with shape
``[B, 1, ..., 1]`` so they broadcast against a state tensor ``x`` of shape ``[B, ...]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from nag.errors import ConfigError


def _no_autocast(device: torch.device) -> AbstractContextManager[Any]:
    """Switch autocast off for ``device``; devices without autocast need nothing."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


def _fp32(x: Tensor) -> Tensor:
    return x.to(torch.float32)


def _expand_time(t: Tensor, x: Tensor) -> Tensor:
    """``t`` of shape ``[B]`` (or a scalar) as float32 ``[B, 1, ..., 1]`` matching ``x.dim()``."""
    return _fp32(t).to(x.device).reshape(-1, *([1] * (x.dim() - 1)))


class SDE(ABC):
    """A forward SDE ``dx = f(x, t) dt + g(t) dw`` on ``t in [eps, T]``.

    Subclasses give the drift/diffusion and the closed-form Gaussian marginal
    ``p_t(x_t | x_0)``; training perturbs data with it and samplers integrate the reverse
    process with a learned score.
    """

    T: float = 1.0

    def __init__(self, eps: float = 1e-5) -> None:
        if not 0.0 < eps < self.T:
            raise ConfigError(f"SDE eps={eps} must lie in (0, T={self.T}); use a small positive time such as 1e-5")
        self.eps = float(eps)

    @abstractmethod
    def _sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and diffusion on float32 ``x`` and ``t`` already shaped ``[B, 1, ..., 1]``."""

    @abstractmethod
    def _marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std on float32 ``x0`` and ``t`` already shaped ``[B, 1, ..., 1]``."""

    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the zero-mean Gaussian prior ``p_T``."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments plus ``type``, for checkpoints; inverse of :func:`sde_from_config`."""

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``f(x, t)`` (shape of ``x``) and diffusion ``g(t)`` (``[B, 1, ..., 1]``), float32."""
        with _no_autocast(x.device):
            return self._sde(_fp32(x), _expand_time(t, x))

    def marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (shape of ``x0``) and std (``[B, 1, ..., 1]``) of ``p_t(x_t | x_0)``, float32."""
        with _no_autocast(x0.device):
            return self._marginal_prob(_fp32(x0), _expand_time(t, x0))

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = mean + std * noise``: a draw from ``p_t(x_t | x_0)`` given standard normal ``noise``."""
        with _no_autocast(x0.device):
            mean, std = self.marginal_prob(x0, t)
            return mean + std * _fp32(noise)

    def prior_sampling(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A float32 draw from ``p_T``; noise comes from ``generator`` so a seed fixes it."""
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32)
        return z * self.prior_std()

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor, probability_flow: bool = False) -> Tensor:
        """Drift of the reverse-time process: ``f - g^2 score`` for the reverse SDE.

        With ``probability_flow`` it is ``f - g^2 score / 2``, the deterministic ODE that
        shares the SDE's marginals (used by ODE samplers).
        """
        with _no_autocast(x.device):
            drift, diffusion = self.sde(x, t)
            weight = 0.5 if probability_flow else 1.0
            return drift - weight * diffusion**2 * _fp32(score)

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        """Per-sample factor on the Langevin corrector step size (Song et al.'s ``alpha``); 1 by default."""
        return torch.ones_like(_fp32(t))

    # --- the marginal as x_t = a(t) (x_0 + sigma(t) z): what few-step solvers step in ---------
    def scale_std(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``a(t)`` and ``std(t)`` of ``x_t = a(t) x_0 + std(t) z`` (float64 for float64 ``t``,
        else float32; same shape as ``t``)."""
        with _no_autocast(t.device):
            t = t if t.dtype == torch.float64 else _fp32(t)
            return self._scale_std(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda(t) = log(a(t) / std(t))``, decreasing in ``t``."""
        a, std = self.scale_std(t)
        return torch.log(a) - torch.log(std)

    @abstractmethod
    def _scale_std(self, t: Tensor) -> tuple[Tensor, Tensor]: ...

    @abstractmethod
    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` (same dtype as ``lam``)."""

    def t_from_sigma(self, sigma: Tensor) -> Tensor:
        """The time whose noise-to-signal ratio ``std / a`` is ``sigma`` (EDM's ``sigma``)."""
        return self.t_from_log_snr(-torch.log(sigma))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class VESDE(SDE):
    """Variance-exploding SDE: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, no drift."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, eps: float = 1e-5) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ConfigError(
                f"VESDE needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        super().__init__(eps)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale ``sigma(t)``, float32, same shape as ``t``."""
        with _no_autocast(t.device):
            return self.sigma_min * torch.exp(_fp32(t) * self._log_ratio)

    def _sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        diffusion = self.sigma(t) * math.sqrt(2.0 * self._log_ratio)
        return torch.zeros_like(x), diffusion

    def _marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return x0, self.sigma(t)

    def _scale_std(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self.sigma_min * torch.exp(t * self._log_ratio)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return (-lam - math.log(self.sigma_min)) / self._log_ratio

    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict[str, Any]:
        return {"type": "VESDE", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "eps": self.eps}


class VPSDE(SDE):
    """Variance-preserving SDE: ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw`` with linear ``beta``."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-5) -> None:
        if not 0.0 <= beta_min <= beta_max or beta_max <= 0.0:
            raise ConfigError(
                f"VPSDE needs 0 <= beta_min <= beta_max with beta_max > 0, got beta_min={beta_min}, beta_max={beta_max}"
            )
        super().__init__(eps)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``, float32."""
        with _no_autocast(t.device):
            return self.beta_min + _fp32(t) * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        """``log a(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` where ``mean = a(t) x0``."""
        with _no_autocast(t.device):
            t = _fp32(t)
            return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        return -0.5 * beta * x, torch.sqrt(beta)

    def _marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        lmc = self.log_mean_coeff(t)
        # -expm1 keeps 1 - exp(2 lmc) accurate when t (hence lmc) is tiny.
        return torch.exp(lmc) * x0, torch.sqrt(-torch.expm1(2.0 * lmc))

    def _scale_std(self, t: Tensor) -> tuple[Tensor, Tensor]:
        lmc = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return torch.exp(lmc), torch.sqrt(-torch.expm1(2.0 * lmc))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """``a^2 = sigmoid(2 lambda)``, so ``log a = -softplus(-2 lambda) / 2``; then the root of
        ``(beta_max - beta_min) t^2 / 4 + beta_min t / 2 + log a = 0``."""
        lmc = -0.5 * torch.nn.functional.softplus(-2.0 * lam)
        delta = self.beta_max - self.beta_min
        if delta == 0.0:
            return -2.0 * lmc / self.beta_min
        return (-0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min**2 - delta * lmc)) / (0.5 * delta)

    def prior_std(self) -> float:
        return 1.0

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        """``exp(-beta(t) |dt|)``: Song et al. use DDPM's ``alpha_i = 1 - beta_i``; this equals it to
        first order in ``dt`` but stays positive on coarse grids where ``1 - beta |dt|`` goes negative."""
        return torch.exp(-self.beta(t) * abs(dt))

    def config(self) -> dict[str, Any]:
        return {"type": "VPSDE", "beta_min": self.beta_min, "beta_max": self.beta_max, "eps": self.eps}


_SDES: dict[str, type[SDE]] = {"VESDE": VESDE, "VPSDE": VPSDE}


def sde_from_config(config: dict[str, Any]) -> SDE:
    """Rebuild an SDE from :meth:`SDE.config` (e.g. read back from a checkpoint)."""
    kwargs = dict(config)
    name = kwargs.pop("type", None)
    if name not in _SDES:
        raise ConfigError(f"SDE config type={name!r} is unknown; expected one of {sorted(_SDES)}")
    try:
        return _SDES[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"SDE config for {name} has bad arguments {sorted(kwargs)}: {err}") from None


def make_sde(kind: str, sigma_min: float, sigma_max: float, beta_min: float, beta_max: float) -> SDE:
    """The SDE named by a module's flat hyper-parameters (``model.init_args.sde``): every
    module that must share one forward process (generator, noise-aware predictors) builds it here."""
    if kind == "ve":
        return VESDE(sigma_min, sigma_max)
    if kind == "vp":
        return VPSDE(beta_min, beta_max)
    raise ConfigError(f"model.init_args.sde={kind!r}; expected 've' or 'vp'")
