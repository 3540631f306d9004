"""Samplers for the reverse process over a dict-of-tensors state.

A graph has several parts (``{"x": [B, N, V] op features, "adj": [B, N, N] adjacency}``)
that diffuse together under one time ``t``; spaces with a fixed topology diffuse only
``"x"``. Samplers therefore carry a dict and ask the score function for one score per
key. Everything is vectorised over the batch, runs under ``torch.no_grad()``, and draws
every random number from the given ``generator`` so a seed fixes the output.
"""

from __future__ import annotations

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
) -> tuple[State, dict[str, Tensor], torch.device, int, Tensor]:
    """Validate arguments; return the prior draw, masks on device, device, batch size and time grid."""
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
    state, masks, dev, batch, times = _setup(sde, shapes, num_steps, generator, device, mask)
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
) -> State:
    """Integrate the probability-flow ODE from ``T`` to ``eps`` starting at a prior draw.

    The ODE shares the SDE's marginals but has no noise, so a second-order solver (Heun,
    two score calls per step) reaches PC quality in tens of steps instead of a thousand.
    Only the prior draw uses ``generator``. ``mask`` as in :func:`pc_sample`.
    """
    if method not in ("heun", "euler"):
        raise ValueError(f"method={method!r} is unknown; use 'heun' or 'euler'")
    state, masks, dev, batch, times = _setup(sde, shapes, num_steps, generator, device, mask)

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
