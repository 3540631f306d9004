"""Predictor guidance: steer a score model toward architectures a predictor likes.

DiffusionNAG samples from ``p(x | y)`` by adding ``grad_x log p(y | x_t)`` to the learned
score. With a Gaussian likelihood around a predictor ``f(x_t, t)`` that gradient is, up
to a scale, ``grad_x f``; so each objective is a differentiable value per sample
("higher is better", in the predictor's normalised units) and guidance adds
``sum_i w_i s_i(t) grad_x v_i(x_t, t)`` to the score. Budgets ("latency <= L") are hinge
objectives that pull only samples predicted over the limit, so several objectives
compose without one swamping the others where they are already satisfied.

Calibration. *Norm ratio* (``normalize=True``, DiffusionNAG's option): each term's
gradient is rescaled, per sample and per state key, to ``w_i(t) |score_k|``, so a scale is
a ratio to the score's own size, comparable across noise levels, spaces and predictors.
Terms are normalised one by one before weighting: normalising their weighted sum instead
would let a predictor with steep gradients (other units, other targets) set the direction
alone. A zero gradient (a budget already met) adds nothing; with one term the added norm
is exactly ``w(t) |score|``, with several at most ``sum_i w_i(t) |score|``.

*Same strength in PC and ODE* means: at the same scale both samplers land on the same
distribution, the tilt ``p_0(x) exp(sum_i w_i v_i(x))``. The reverse SDE (drift ``g^2``
times the score) and the probability-flow ODE (``g^2 / 2``) share marginals for any score
of a consistent family ``p_t(x | y)``, so the ODE's ``1/2`` is right for the guidance too:
a noise-aware predictor's gradient approximates ``grad log p_t(y | x_t)``, and raw guidance
needs no correction (doubling it for the ODE to "match g^2" doubles its shift). Norm-ratio
guidance is not consistent. For data of unit scale (the +-1 encoding) and
``x_t = a(t) x_0 + std(t) z``, ``|score|`` per entry goes as ``1 / sqrt(a^2 + std^2)``,
while the gradient of a fixed tilt carried to time ``t`` (Tweedie: ``dE[x_0|x_t]/dx_t``)
goes as ``a / (a^2 + std^2)``. The PC sampler's Langevin corrector re-equilibrates at every
step, so its result is set by the guidance near ``t = 0``; the ODE integrates every push,
and the excess at high noise accumulates (about 5x PC's mean shift on a Gaussian toy).
``probability_flow=True`` therefore multiplies norm-ratio guidance by the signal fraction
``a / sqrt(a^2 + std^2)``, which gives it the consistent profile; it is 1 at ``t -> 0``,
so the ratio keeps its meaning near the data. A caller passes the flag of its sampler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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
Direction = Literal["max", "min"]


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
    direction: Direction = "max",
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


class NoisyStateReader(Protocol):
    """A model that reads the score-diffusion state: a score network or a noise-aware predictor."""

    sde: SDE
    entries: Mapping[str, Tensor]


def check_same_state(generator: NoisyStateReader, predictor: NoisyStateReader) -> None:
    """A noise-aware predictor reads ``x_t`` rightly only when it was trained on the generator's
    forward process (``.sde``) and the same diffused entries (``.entries``)."""
    if generator.sde.config() != predictor.sde.config():
        raise ConfigError(
            f"the predictor was trained on SDE {predictor.sde.config()} but the generator uses "
            f"{generator.sde.config()}; train the predictor with the generator's model.init_args.sde and σ/β"
        )
    ours, theirs = generator.entries, predictor.entries
    if set(ours) != set(theirs) or any(not torch.equal(ours[k].cpu(), theirs[k].cpu()) for k in ours):
        raise ConfigError(
            "the predictor reads other state entries than the generator diffuses (fitted on another "
            "space, or by an older nag); fit the predictor again on the generator's space"
        )


def _gradient(value: Callable[[State], Tensor], state: State) -> State:
    """``grad_state sum(value(state))``, in fp32 with gradients on even inside the samplers'
    ``no_grad``; keys the value does not read get zeros."""
    with torch.enable_grad(), torch.autocast(state["x"].device.type, enabled=False):
        leaves = {k: v.detach().float().requires_grad_(True) for k, v in state.items()}
        grads = torch.autograd.grad(value(leaves).sum(), list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}


def guidance_gradient(terms: Sequence[GuidanceTerm], state: State, t: Tensor, horizon: float) -> State:
    """``sum_i w_i(t) grad_state v_i(state, t)``."""
    return _gradient(lambda s: sum(term.weight(t, horizon) * term.value(s, t) for term in terms), state)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    """``[B]`` as ``[B, 1, ..., 1]`` to broadcast against ``like``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _norms(v: Tensor) -> Tensor:
    """Per-sample L2 norms, shaped to broadcast against ``v``."""
    return _per_sample(torch.linalg.vector_norm(v.float().flatten(1), dim=-1), v)


def normalized_guidance(terms: Sequence[GuidanceTerm], score: State, state: State, t: Tensor, horizon: float) -> State:
    """``sum_i w_i(t) |score_k| grad_k v_i / |grad_k v_i|`` per sample and key (the norm
    ratio); a zero gradient stays zero."""
    total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in state.items()}
    for term in terms:
        grad = _gradient(lambda s, term=term: term.value(s, t), state)
        weight = term.weight(t, horizon).float()
        for k, g in grad.items():
            norm = _norms(g)
            unit = torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
            total[k] = total[k] + _per_sample(weight, g) * _norms(score[k]) * unit
    return total


def signal_fraction(sde: SDE, t: Tensor) -> Tensor:
    """``a / sqrt(a^2 + std^2)`` of ``x_t = a x_0 + std z`` for unit-scale data, ``[B]``: the
    factor that gives norm-ratio guidance a consistent profile in the probability-flow ODE."""
    a, std = sde.marginal_prob(torch.ones_like(t, dtype=torch.float32), t)
    return a / torch.sqrt(a**2 + std**2)


def guided_score(
    score_fn: ScoreFn,
    terms: Sequence[GuidanceTerm],
    horizon: float = 1.0,
    *,
    normalize: bool = False,
    probability_flow: bool = False,
    sde: SDE | None = None,
) -> ScoreFn:
    """The score plus the guidance gradient: a drop-in ``score_fn`` for any sampler.

    ``normalize`` turns each term's scale into a ratio to the score norm; pass
    ``probability_flow=True`` (and the ``sde``) when the sampler is the probability-flow
    ODE so that guidance has the strength it has in the PC sampler (module docstring).
    """
    if not terms:
        return score_fn
    if normalize and probability_flow and sde is None:
        raise ValueError("guided_score(normalize=True, probability_flow=True) needs the sde for its signal fraction")
    flow_sde = sde if normalize and probability_flow else None

    def score(state: State, t: Tensor) -> State:
        base = score_fn(state, t)
        if not normalize:
            grad = guidance_gradient(terms, state, t, horizon)
        else:
            grad = normalized_guidance(terms, base, state, t, horizon)
        if flow_sde is not None:
            factor = signal_fraction(flow_sde, t)
            grad = {k: _per_sample(factor, g) * g for k, g in grad.items()}
        return {k: base[k] + grad[k] for k in base}

    return score


_DIRECTIONS: dict[str, Direction] = {
    "max": "max",
    "maximize": "max",
    "maximise": "max",
    "min": "min",
    "minimize": "min",
    "minimise": "min",
}
_NAME = r"[A-Za-z_][\w.\-]*"
_GOAL = re.compile(rf"(?P<word>[A-Za-z]+)\s+(?P<target>{_NAME})")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOUND = re.compile(rf"(?P<target>{_NAME})\s*(?P<op><=|>=)\s*(?P<limit>{_NUMBER})")


def parse_objective(text: str) -> tuple[str, Direction, float | None]:
    """``(target, direction, limit)`` from a command-line objective: ``max valid_acc`` or
    ``min latency`` to push a metric, ``latency<=0.004`` or ``valid_acc>=0.8`` for a budget
    (the arguments of :func:`predictor_term`)."""
    stripped = text.strip()
    goal, bound = _GOAL.fullmatch(stripped), _BOUND.fullmatch(stripped)
    if goal and goal["word"].lower() in _DIRECTIONS:
        return goal["target"], _DIRECTIONS[goal["word"].lower()], None
    if bound:
        return bound["target"], "min" if bound["op"] == "<=" else "max", float(bound["limit"])
    raise ConfigError(
        f"objective {text!r} is not understood; use 'max METRIC', 'min METRIC', 'METRIC<=LIMIT' or "
        "'METRIC>=LIMIT' (e.g. 'max valid_acc', 'latency<=0.004')"
    )
