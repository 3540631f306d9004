"""A device's latency budget as predictor guidance: the adapted predictor inside the sampler.

:class:`StateLatency` evaluates an :class:`~nag.hardware.predictor.AdaptedLatency` on a
score-diffusion state instead of on decoded architectures, differentiably, so a budget can
steer every sampling step (:func:`latency_budget_term`) rather than only filter the samples
afterwards. The architecture features (:class:`~nag.hardware.features.ArchFeatures`) are
relaxed from one-hot ops to op probabilities (a softmax of the state's op scores):

* ``onehot`` is the probabilities themselves;
* ``live``: whether a node is on a path of computing nodes is a noisy-OR over its
  predecessors (forward) and successors (backward), with ``P(none)`` cutting paths;
* ``counts`` sums the live probabilities of each op; ``declared`` and ``present`` sum the
  probabilities of the computing ops over nodes and over ops;
* ``costs`` (log FLOPs/params, read from a table for decoded architectures) come from a
  least-squares line of the cost in the live ops and counts, fitted on architectures the
  table has (FLOPs and parameters of a cell add up over its ops, so the line is close).

On a decoded architecture the relaxation gives the same features, and so the same predictive
distribution, as :meth:`AdaptedLatency.predict` (up to the cost line's error, which
:attr:`StateLatency.cost_r2` reports). The fixed-topology spaces are covered (NB201-like
cells, whose latency varies with the ops); spaces whose topology is generated are not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nag.diffusion.guidance import GuidanceTerm, Schedule
from nag.errors import ConfigError
from nag.hardware.bayes import student_t_quantile
from nag.hardware.features import ENDPOINTS, NONE_OPS, TableCosts
from nag.hardware.predictor import AdaptedLatency, box_cox
from nag.spaces.base import Arch

#: Softmax temperature turning the state's signed op scores (+-1 at the data) into op
#: probabilities: a clean one-hot row maps to probability 1 - 2e-7 for its op.
TEMPERATURE = 0.125
#: Default strength of the budget's hinge (a ratio to the score's norm): on NB201 held-out
#: devices at K = 20 it doubles the distinct cells predicted within the budget that one draw
#: yields (40 to 78 per 100; benchmarks/results/new_device.md).
LATENCY_GUIDANCE = 2.0


class StateLatency(nn.Module):
    """Mean and scale of ``model``'s transformed latency (its Box-Cox ``power``; 0: log
    latency) for a batch of (noisy) signed states.

    ``archs``: architectures the model's cost features know, to fit the cost line on (default:
    the benchmark's, when the costs are a :class:`~nag.hardware.features.TableCosts`); unused
    when the features have no costs.
    """

    def __init__(self, model: AdaptedLatency, archs: Sequence[Arch] | None = None) -> None:
        super().__init__()
        meta, features = model.meta, model.meta.features
        space = features.space
        if not space.fixed_topology:
            raise ConfigError(
                f"latency guidance: {space.name}'s topology is generated, which the relaxed features do not "
                "cover; filter the samples with the adapted predictor instead (select_for_device)"
            )
        self.model, self.space, self.features = model, space, features
        self.register_buffer("adj", torch.as_tensor(space.fixed_adjacency(), dtype=torch.float32))
        n, v = space.max_nodes, len(space.ops)
        self.n = n
        none = [space.op_index(op) for op in NONE_OPS if op in space.ops]
        self.none = none[0] if none else None
        computing = torch.ones(v, dtype=torch.bool)
        for op in (*ENDPOINTS, *NONE_OPS):
            if op in space.ops:
                computing[space.op_index(op)] = False
        self.register_buffer("computing", computing)
        self.register_buffer("endpoint", torch.tensor([op in ENDPOINTS for op in space.ops]))
        #: ``[N, V]`` the ops each position allows: the others are not diffused (they hold 0) and get no probability.
        self.register_buffer("allowed", space.allowed_ops())
        self.source, self.sink = 0, n - 1  # the graph form's input and output nodes
        self.cost_r2 = math.nan
        if features.costs is not None:
            self._fit_cost_line(archs)
        self.register_buffer("keep", torch.as_tensor(features.keep, dtype=torch.long))
        self.register_buffer("mean", torch.as_tensor(features.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(features.std, dtype=torch.float32))
        self.register_buffer("phi_mean", torch.as_tensor(meta.phi_mean, dtype=torch.float32))
        self.body = copy.deepcopy(meta.net.body)  # its own copy: the module follows the sampler's device
        fit = model.model
        self.register_buffer("weights", torch.as_tensor(fit.v0_ft @ fit.s_inv_z, dtype=torch.float32))
        post = fit.v0 - fit.v0_ft @ fit.s_inv @ fit.v0_ft.T  # posterior covariance / noise variance
        self.register_buffer("post", torch.as_tensor((post + post.T) / 2, dtype=torch.float32))
        self.noise = fit.bn / fit.an
        self.y_mean, self.y_scale, self.dof, self.power = fit.y_mean, fit.y_scale, fit.dof, model.power

    # --- relaxed features ------------------------------------------------------------
    def _graph(self, p: Tensor) -> Tensor:
        """``[B, graph features]`` from op probabilities ``p`` ``[B, N, V]`` (ArchFeatures' layout)."""
        parts = [p.flatten(1)]
        live = p
        if self.none is not None:
            cut = p[..., self.none]
            forward, backward = self._reach(cut)
            on_path = (forward * backward).unsqueeze(-1)
            computing = p * self.computing * on_path
            endpoints = p * self.endpoint
            none = (1.0 - computing.sum(-1) - endpoints.sum(-1)).unsqueeze(-1)
            live = computing + endpoints
            live = torch.cat([live[..., : self.none], none, live[..., self.none + 1 :]], dim=-1)
            parts.append(live.flatten(1))
        parts.append((live * self.computing).sum(1))
        if self.none is not None:
            declared = p * self.computing  # the ops a cell declares, dead or not
            parts += [declared.sum(1), declared.sum(-1)]
        return torch.cat(parts, dim=1)

    def _reach(self, cut: Tensor) -> tuple[Tensor, Tensor]:
        """Soft ``forward`` (some uncut path from the input reaches the node) and ``backward``
        (some uncut path from the node's successors reaches the output), ``[B, N]`` each."""
        adj, n = self.adj, self.n
        forward = [None] * n
        for i in range(n):
            if i == self.source:
                forward[i] = torch.ones_like(cut[:, i])
                continue
            miss = torch.ones_like(cut[:, i])
            for j in range(i):
                if adj[j, i] > 0:
                    miss = miss * (1.0 - forward[j] * (1.0 - cut[:, j]))
            forward[i] = 1.0 - miss
        backward_in = [None] * n  # through the node's successors, not counting its own cut
        alive = [None] * n
        for i in range(n - 1, -1, -1):
            if i == self.sink:
                backward_in[i] = torch.ones_like(cut[:, i])
            else:
                miss = torch.ones_like(cut[:, i])
                for k in range(i + 1, n):
                    if adj[i, k] > 0:
                        miss = miss * (1.0 - alive[k])
                backward_in[i] = 1.0 - miss
            alive[i] = backward_in[i] * (1.0 - cut[:, i])
        return torch.stack(forward, 1), torch.stack(backward_in, 1)

    def _fit_cost_line(self, archs: Sequence[Arch] | None) -> None:
        """Least squares of each raw cost in the graph features (and 1) over ``archs`` with costs."""
        features = self.features
        if archs is None and isinstance(features.costs, TableCosts):
            archs = features.costs.benchmark.archs()
        if not archs:
            raise ConfigError(
                "latency guidance: the predictor uses cost features (FLOPs/params); pass archs= the "
                "benchmark's architectures to fit their line on"
            )
        costs = np.asarray(features.costs(archs), dtype=np.float64).reshape(len(archs), -1)
        rows = np.isfinite(costs).all(1) & (costs > 0).all(1)
        if rows.sum() < 10:
            raise ConfigError(
                "latency guidance: fewer than 10 of the given archs have cost values; pass the benchmark's"
            )
        chosen = [a for a, keep in zip(archs, rows) if keep]
        encoded = np.stack([self.space.encode(a)[0].numpy().astype(np.float64) for a in chosen])
        with torch.no_grad():
            graph = self._graph(torch.as_tensor(encoded)).numpy()
        design = np.concatenate([graph, np.ones((len(graph), 1))], axis=1)
        y = costs[rows]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        self.cost_r2 = float(1.0 - (resid**2).sum() / max(((y - y.mean(0)) ** 2).sum(), 1e-300))
        self.register_buffer("cost_coef", torch.as_tensor(coef, dtype=torch.float32))
        self.cost_floor = float(y.min()) / 2

    def raw(self, p: Tensor) -> Tensor:
        """Unstandardised relaxed features ``[B, raw_dim]`` of op probabilities ``p``."""
        graph = self._graph(p)
        if self.features.costs is None:
            return graph
        design = torch.cat([graph, torch.ones_like(graph[:, :1])], dim=1)
        costs = (design @ self.cost_coef).clamp_min(self.cost_floor)
        return torch.cat([graph, costs.log()], dim=1)

    # --- prediction ------------------------------------------------------------------
    def probabilities(self, state: dict[str, Tensor]) -> Tensor:
        """Op probabilities ``[B, N, V]`` of a signed state (softmax at :data:`TEMPERATURE` over the
        ops each position allows: score diffusion generates only those entries)."""
        return torch.softmax((state["x"].float() / TEMPERATURE).masked_fill(~self.allowed, -torch.inf), dim=-1)

    def forward(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, scale)`` of the predictive Student-t of the transformed latency, ``[B]`` each."""
        x = (self.raw(p)[:, self.keep] - self.mean) / self.std
        phi = self.body(x) - self.phi_mean
        design = torch.cat([phi, x], dim=1) if self.model.raw else phi
        f = torch.cat([torch.ones_like(design[:, :1]), design], dim=1)
        mean = f @ self.weights
        quad = torch.einsum("bi,ij,bj->b", f, self.post, f).clamp_min(0.0)
        scale = torch.sqrt(self.noise * (1.0 + quad))
        return mean * self.y_scale + self.y_mean, scale * self.y_scale


def latency_budget_term(
    state_latency: StateLatency,
    budget: float,
    threshold: float,
    scale: float = 1.0,
    schedule: Schedule = "late",
) -> GuidanceTerm:
    """A hinge that pulls only samples whose ``threshold`` predictive quantile of latency is
    over ``budget`` (the feasibility rule of :func:`~nag.hardware.selection.select_for_device`:
    ``P(latency <= budget) >= threshold``), in units of the measured points' spread of the
    transformed latency."""
    if budget <= 0:
        raise ConfigError(f"latency guidance: budget={budget}; a latency budget is a positive number")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"latency guidance: threshold={threshold}; a probability in (0, 1), e.g. 0.9")
    q = student_t_quantile(threshold, state_latency.dof)
    limit = float(box_cox(budget, state_latency.power))

    def value(state: dict[str, Tensor], t: Tensor) -> Tensor:
        state_latency.to(state["x"].device)  # a no-op once there
        mean, spread = state_latency(state_latency.probabilities(state))
        return -torch.relu(mean + q * spread - limit) / state_latency.y_scale

    return GuidanceTerm(value, scale, schedule, f"latency <= {budget:g} (P >= {threshold:g})")
