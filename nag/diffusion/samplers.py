"""Samplers for the reverse process over a dict-of-tensors state.

A graph has several parts (``{"x": [B, N, V] op features, "adj": [B, N, N] adjacency}``)
that diffuse together under one time ``t``; spaces with a fixed topology diffuse only
``"x"``. Samplers therefore carry a dict and ask the score function for one score per
key. Everything is vectorised over the batch, runs under ``torch.no_grad()``, and draws
every random number from the given ``generator`` so a seed fixes the output; ``init`` gives
the prior draw instead (the same start on two devices, whose generators differ).

Two families: :func:`pc_sample` and :func:`ode_sample` step uniformly in ``t`` (hundreds,
resp. tens, of network evaluations); :func:`dpm_solver_sample` (DPM-Solver++(2M), uniform in
log-SNR) and :func:`edm_sample` (Karras et al.'s Heun on a ``rho = 7`` noise schedule) solve
the same probability-flow ODE in the variables where it is nearly linear and need under ten.
Both few-step solvers work for any :class:`~nag.diffusion.sde.SDE` through
``x_t = a(t) (x_0 + sigma z)``; the network is only ever asked for the score at a time ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from nag.diffusion.sde import SDE

#: ``score_fn(state, t)`` -> ``{key: score}`` for every key of ``state``; ``t`` has shape ``[B]``.
ScoreFn = Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]
State = dict[str, Tensor]


def _setup(
    sde: SDE,
    shapes: Mapping[str, tuple[int, ...]],
    num_steps: int,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    mask: Mapping[str, Tensor] | None,
    init: Mapping[str, Tensor] | None = None,
) -> tuple[State, dict[str, Tensor], torch.device, int, Tensor]:
    """Validate arguments; return the prior draw (``init`` when given), masks on device, device,
    batch size and time grid."""
    if not shapes:
        raise ValueError("shapes is empty; give at least one state key, e.g. {'x': (B, N, V)}")
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be at least 1")
    batch_sizes = {k: next(iter(s)) for k, s in shapes.items()}
    if len(set(batch_sizes.values())) != 1:
        raise ValueError(f"every state tensor needs the same batch size (first dim), got {batch_sizes}")
    masks = dict(mask or {})
    unknown = set(masks) - set(shapes)
    if unknown:
        raise ValueError(f"mask keys {sorted(unknown)} are not state keys {sorted(shapes)}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    masks = {k: m.to(device=device, dtype=torch.float32) for k, m in masks.items()}
    if init is not None:
        if set(init) != set(shapes) or any(tuple(init[k].shape) != tuple(s) for k, s in shapes.items()):
            got = {k: tuple(v.shape) for k, v in init.items()}
            raise ValueError(f"init has shapes {got}; expected {dict(shapes)}")
        state = {k: init[k].to(device=device, dtype=torch.float32) for k in shapes}
    else:
        state = {k: sde.prior_sampling(tuple(s), generator=generator, device=device) for k, s in shapes.items()}
    # The grid lives in float64 so step sizes do not pick up rounding error before use.
    times = torch.linspace(sde.T, sde.eps, num_steps + 1, dtype=torch.float64)
    return _apply_mask(state, masks), masks, device, next(iter(batch_sizes.values())), times


def _apply_mask(state: State, masks: Mapping[str, Tensor]) -> State:
    return {k: v * masks[k] if k in masks else v for k, v in state.items()}


def _score(score_fn: ScoreFn, state: State, t: Tensor) -> State:
    """Call ``score_fn`` and check it answered for every key with the right shape."""
    score = score_fn(state, t)
    missing = set(state) - set(score)
    if missing:
        raise ValueError(f"score_fn returned no score for state keys {sorted(missing)}")
    for k, v in state.items():
        if score[k].shape != v.shape:
            raise ValueError(f"score_fn returned shape {tuple(score[k].shape)} for {k!r}, expected {tuple(v.shape)}")
    return score


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)


def _batch_mean_norm(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=-1).mean()


@torch.no_grad()
def pc_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shapes: Mapping[str, tuple[int, ...]],
    num_steps: int = 1000,
    snr: float = 0.16,
    n_corrector: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    mask: Mapping[str, Tensor] | None = None,
    progress: bool = False,
    init: Mapping[str, Tensor] | None = None,
) -> State:
    """Predictor-corrector sampling from ``T`` down to ``eps``.

    At each grid time the Langevin corrector runs ``n_corrector`` times, then the
    reverse-diffusion Euler-Maruyama predictor steps to the next time. The corrector step
    size follows Song et al.'s ``LangevinCorrector``: ``2 alpha (snr |z| / |score|)^2``
    with norms averaged over the batch, computed per state key because parts such as
    ``x`` and ``adj`` have different sizes and score scales. Norms count only unmasked
    entries, so padding does not shrink the step. The result is the noise-free mean of
    the last predictor step (denoising). ``mask`` entries (broadcastable to their tensor)
    hold masked positions at exactly 0 after every step.
    """
    state, masks, dev, batch, times = _setup(sde, shapes, num_steps, generator, device, mask, init)
    mean = state
    for i in tqdm(range(num_steps), desc="pc sampling", disable=not progress):
        t_now, dt = float(times[i]), float(times[i + 1] - times[i])
        t = torch.full((batch,), t_now, device=dev)
        for _ in range(n_corrector):
            score = _score(score_fn, state, t)
            alpha = sde.langevin_alpha(t, dt)
            new = {}
            for k, x in state.items():
                m = masks.get(k)
                grad = score[k].float() if m is None else score[k].float() * m
                noise = _randn(x, generator)
                noise = noise if m is None else noise * m
                grad_norm = _batch_mean_norm(grad)
                step = 2.0 * alpha * (snr * _batch_mean_norm(noise) / grad_norm.clamp_min(1e-30)) ** 2
                step = torch.where(grad_norm > 0, step, torch.zeros_like(step))
                step = step.reshape(-1, *([1] * (x.dim() - 1)))
                new[k] = x + step * grad + torch.sqrt(2.0 * step) * noise
            state = new  # already masked: x, grad and noise all are
        score = _score(score_fn, state, t)
        mean, new = {}, {}
        for k, x in state.items():
            _, diffusion = sde.sde(x, t)
            mean[k] = x + sde.reverse_drift(x, t, score[k]) * dt
            new[k] = mean[k] + diffusion * abs(dt) ** 0.5 * _randn(x, generator)
        mean, state = _apply_mask(mean, masks), _apply_mask(new, masks)
    return mean


@torch.no_grad()
def ode_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shapes: Mapping[str, tuple[int, ...]],
    num_steps: int = 50,
    method: Literal["heun", "euler"] = "heun",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    mask: Mapping[str, Tensor] | None = None,
    progress: bool = False,
    init: Mapping[str, Tensor] | None = None,
) -> State:
    """Integrate the probability-flow ODE from ``T`` to ``eps`` starting at a prior draw.

    The ODE shares the SDE's marginals but has no noise, so a second-order solver (Heun,
    two score calls per step) reaches PC quality in tens of steps instead of a thousand.
    Only the prior draw uses ``generator``. ``mask`` as in :func:`pc_sample`.
    """
    if method not in ("heun", "euler"):
        raise ValueError(f"method={method!r} is unknown; use 'heun' or 'euler'")
    state, masks, dev, batch, times = _setup(sde, shapes, num_steps, generator, device, mask, init)

    def velocity(s: State, t_value: float) -> State:
        t = torch.full((batch,), t_value, device=dev)
        score = _score(score_fn, s, t)
        return _apply_mask({k: sde.reverse_drift(x, t, score[k], probability_flow=True) for k, x in s.items()}, masks)

    for i in tqdm(range(num_steps), desc="ode sampling", disable=not progress):
        t_now, t_next = float(times[i]), float(times[i + 1])
        dt = t_next - t_now
        v = velocity(state, t_now)
        euler = {k: x + v[k] * dt for k, x in state.items()}
        if method == "euler":
            state = euler
            continue
        v_next = velocity(euler, t_next)
        state = {k: x + 0.5 * (v[k] + v_next[k]) * dt for k, x in state.items()}
    return state


def _noise_pred(score_fn: ScoreFn, sde: SDE, state: State, t_value: float, batch: int, dev: torch.device) -> State:
    """``eps_hat = -std(t) score(x_t, t)``: the unit noise the score implies."""
    t = torch.full((batch,), t_value, device=dev)
    std = float(sde.scale_std(torch.tensor(t_value, dtype=torch.float64))[1])
    score = _score(score_fn, state, t)
    return {k: -std * score[k].float() for k in state}


@torch.no_grad()
def dpm_solver_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shapes: Mapping[str, tuple[int, ...]],
    num_steps: int = 10,
    t_end: float = 0.02,
    denoise: bool = True,
    grid: Literal["time", "logsnr", "quadratic"] = "time",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    mask: Mapping[str, Tensor] | None = None,
    progress: bool = False,
    init: Mapping[str, Tensor] | None = None,
) -> State:
    """DPM-Solver++(2M) (Lu et al. 2022): the multistep second-order solver of the
    probability-flow ODE written for the data prediction ``x0_hat = (x - std eps_hat) / a``.
    One network evaluation per step; the first step and (below 10 steps) the last are first
    order, as the authors recommend for few steps.

    The grid runs from ``T`` to ``t_end``, uniform in ``t`` (``grid="time"``), in
    ``lambda = log(a / std)`` (``"logsnr"``, the authors' default for images) or in ``sqrt(t)``
    (``"quadratic"``). With ``denoise`` the last of the ``num_steps`` evaluations is made at
    ``t_end`` and its data prediction is the result (the solver's step to ``t = 0``); without
    it the result is the state at ``t_end``. The defaults (uniform in ``t`` down to 0.02, then
    denoise) were chosen on the trained NB201 and NB-Graph generators against the 50-step Heun
    ODE (``benchmarks/generation_speed.py``): architectures are decided at moderate noise, and
    a log-SNR grid spends its few steps where nothing visible changes. ``mask`` as in
    :func:`pc_sample`.
    """
    if not sde.eps <= t_end < sde.T:
        raise ValueError(f"t_end={t_end} must lie in [eps={sde.eps}, T={sde.T})")
    state, masks, dev, batch, _ = _setup(sde, shapes, num_steps, generator, device, mask, init)
    points = num_steps if denoise else num_steps + 1
    if grid == "logsnr":
        lam_T, lam_end = sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64)).tolist()
        times = sde.t_from_log_snr(torch.linspace(lam_T, lam_end, points, dtype=torch.float64))
    elif grid == "time":
        times = torch.linspace(sde.T, t_end, points, dtype=torch.float64)
    elif grid == "quadratic":
        times = torch.linspace(sde.T**0.5, t_end**0.5, points, dtype=torch.float64) ** 2
    else:
        raise ValueError(f"grid={grid!r}; expected 'logsnr', 'time' or 'quadratic'")
    times[0], times[-1] = sde.T, t_end if len(times) > 1 else sde.T
    lams = sde.log_snr(times)
    scale, std = sde.scale_std(times)
    previous: State | None = None
    for i in tqdm(range(num_steps), desc="dpm-solver++ sampling", disable=not progress):
        eps = _noise_pred(score_fn, sde, state, float(times[i]), batch, dev)
        x0 = {k: (x - float(std[i]) * eps[k]) / float(scale[i]) for k, x in state.items()}
        if i == len(lams) - 1:  # denoise: the step to t = 0 lands on the data prediction
            return _apply_mask(x0, masks)
        h = float(lams[i + 1] - lams[i])
        last = i == len(lams) - 2
        if previous is None or (last and len(lams) <= 10):
            d = x0
        else:
            r = float(lams[i] - lams[i - 1]) / h
            d = {k: (1.0 + 0.5 / r) * x0[k] - (0.5 / r) * previous[k] for k in x0}
        ratio, phi = float(std[i + 1] / std[i]), float(scale[i + 1]) * math.expm1(-h)
        state = _apply_mask({k: ratio * x - phi * d[k] for k, x in state.items()}, masks)
        previous = x0
    return state


def karras_sigmas(sigma_min: float, sigma_max: float, num: int, rho: float = 7.0) -> Tensor:
    """EDM's noise levels: ``num`` points uniform in ``sigma^(1/rho)`` from ``sigma_max`` down to
    ``sigma_min`` (float64)."""
    ramp = torch.linspace(0.0, 1.0, num, dtype=torch.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


@torch.no_grad()
def edm_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shapes: Mapping[str, tuple[int, ...]],
    num_steps: int = 5,
    rho: float = 7.0,
    sigma_min: float | None = 0.05,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    mask: Mapping[str, Tensor] | None = None,
    progress: bool = False,
    init: Mapping[str, Tensor] | None = None,
) -> State:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1) on ``num_steps`` noise
    levels from ``sigma(T)`` to ``sigma_min`` spaced by :func:`karras_sigmas`, then one Euler
    step to ``sigma = 0`` (the denoised estimate): ``2 num_steps - 1`` network evaluations. It
    integrates ``d x_hat / d sigma = eps_hat`` in ``x_hat = x_t / a(t)``, which is the VE SDE's
    own state (``a = 1``) and the VP SDE's after rescaling, so it serves both. ``sigma_min``
    (noise-to-signal ratio ``std / a``) is clipped to the SDE's own at ``eps``; None means that
    one. The default 0.05 was chosen on a trained NB201 generator: with ``rho = 7`` the levels
    crowd toward ``sigma_min``, and below ~0.05 the {-1, 1} graph entries are already decided.
    ``mask`` as in :func:`pc_sample`.
    """
    state, masks, dev, batch, _ = _setup(sde, shapes, num_steps, generator, device, mask, init)
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    scale, std = sde.scale_std(ends)
    s_max, s_min = (std / scale).tolist()
    sigmas = karras_sigmas(s_min if sigma_min is None else max(sigma_min, s_min), s_max, num_steps, rho)
    times = sde.t_from_sigma(sigmas)
    times[0] = sde.T
    scales = sde.scale_std(times)[0]
    x_hat = {k: x / float(scales[0]) for k, x in state.items()}

    def eps_at(x: State, i: int) -> State:
        a = float(scales[i])
        eps = _noise_pred(score_fn, sde, {k: v * a for k, v in x.items()}, float(times[i]), batch, dev)
        return _apply_mask(eps, masks)

    for i in tqdm(range(num_steps), desc="edm sampling", disable=not progress):
        d = eps_at(x_hat, i)
        s_now = float(sigmas[i])
        s_next = float(sigmas[i + 1]) if i + 1 < num_steps else 0.0
        euler = {k: x + (s_next - s_now) * d[k] for k, x in x_hat.items()}
        if s_next == 0.0:
            x_hat = euler
            continue
        d_next = eps_at(euler, i + 1)
        x_hat = {k: x + (s_next - s_now) * 0.5 * (d[k] + d_next[k]) for k, x in x_hat.items()}
    return _apply_mask(x_hat, masks)
