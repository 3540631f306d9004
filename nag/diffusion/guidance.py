"""Predictor guidance: steer a score model toward architectures a predictor likes.

DiffusionNAG samples from ``p(x | y)`` by adding ``grad_x log p(y | x_t)`` to the learned
score. With a Gaussian likelihood around a predictor ``f(x_t, t)`` that gradient is, up
to a scale, ``grad_x f``; so each objective is a differentiable value per sample
("higher is better", in the predictor's normalised units) and guidance adds
``sum_i w_i s_i(t) grad_x v_i(x_t, t)`` to the score. Budgets ("latency <= L") are hinge
objectives that pull only samples predicted over the limit, so several objectives
compose without one swamping the others where they are already satisfied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from nag.diffusion.samplers import ScoreFn, State
from nag.diffusion.sde import SDE
from nag.errors import ConfigError

#: ``(state, t) -> [B]`` differentiable value of each sample; higher is better.
ValueFn = Callable[[State, Tensor], Tensor]
Schedule = Literal["constant", "late", "early"]


class StatePredictor(Protocol):
    """What guidance needs of a predictor: normalised outputs on a noisy state, and how to
    undo the normalisation (so budgets can be written in the benchmark's units)."""

    targets: list[str]
    mean: Tensor
    std: Tensor
    sde: SDE

    def predict_state(self, state: State, t: Tensor) -> Tensor: ...


@dataclass
class GuidanceTerm:
    """One objective with its scale and time schedule: ``late`` weighs steps near the data
    (``1 - t/T``) where details are decided, ``early`` those near the prior (``t/T``)."""

    value: ValueFn
    scale: float = 1.0
    schedule: Schedule = "constant"
    name: str = "objective"

    def weight(self, t: Tensor, horizon: float) -> Tensor:
        if self.schedule == "constant":
            return torch.full_like(t, self.scale)
        if self.schedule == "late":
            return self.scale * (1.0 - t / horizon)
        if self.schedule == "early":
            return self.scale * (t / horizon)
        raise ConfigError(f"guidance schedule={self.schedule!r}; expected 'constant', 'late' or 'early'")


def predictor_term(
    predictor: StatePredictor,
    target: str,
    direction: Literal["max", "min"] = "max",
    limit: float | None = None,
    scale: float = 1.0,
    schedule: Schedule = "constant",
) -> GuidanceTerm:
    """A term on one of ``predictor``'s targets.

    Without ``limit`` it pushes the metric up (``max``) or down (``min``). With ``limit``
    (benchmark units) it is a budget: ``min`` means "at most ``limit``", ``max`` "at least":
    the value is ``-relu(violation)``, zero (no pull) for samples already inside it.
    """
    if target not in predictor.targets:
        raise ConfigError(f"guidance target {target!r} is not predicted; the predictor knows {predictor.targets}")
    if direction not in ("max", "min"):
        raise ConfigError(f"guidance direction={direction!r}; expected 'max' or 'min'")
    j = predictor.targets.index(target)
    sign = 1.0 if direction == "max" else -1.0
    bound = None if limit is None else (limit - float(predictor.mean[j])) / float(predictor.std[j])

    def value(state: State, t: Tensor) -> Tensor:
        z = predictor.predict_state(state, t)[:, j].float()
        return sign * z if bound is None else -torch.relu(sign * (bound - z))

    label = f"{target} {'<=' if sign < 0 else '>='} {limit}" if limit is not None else f"{direction} {target}"
    return GuidanceTerm(value, scale, schedule, label)


def check_same_sde(generator_sde: SDE, predictor_sde: SDE) -> None:
    """A noise-aware predictor trained on another forward process reads ``x_t`` wrongly."""
    if generator_sde.config() != predictor_sde.config():
        raise ConfigError(
            f"the predictor was trained on SDE {predictor_sde.config()} but the generator uses "
            f"{generator_sde.config()}; train the predictor with the generator's model.init_args.sde and σ/β"
        )


def guidance_gradient(terms: Sequence[GuidanceTerm], state: State, t: Tensor, horizon: float) -> State:
    """``sum_i w_i(t) grad_state v_i(state, t)``, computed in fp32 with gradients on even
    inside the samplers' ``no_grad``."""
    with torch.enable_grad(), torch.autocast(state["x"].device.type, enabled=False):
        leaves = {k: v.detach().float().requires_grad_(True) for k, v in state.items()}
        total = sum((term.weight(t, horizon) * term.value(leaves, t)).sum() for term in terms)
        grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}


def guided_score(score_fn: ScoreFn, terms: Sequence[GuidanceTerm], horizon: float = 1.0) -> ScoreFn:
    """The score plus the guidance gradient: a drop-in ``score_fn`` for any sampler."""
    if not terms:
        return score_fn

    def score(state: State, t: Tensor) -> State:
        base = score_fn(state, t)
        grad = guidance_gradient(terms, state, t, horizon)
        return {k: base[k] + grad[k] for k in base}

    return score
