"""Categorical diffusion (D3PM / DiGress) over node-op classes and directed edge classes.

A graph state is a dict of class indices: ``nodes [B, N]`` and, where the topology varies,
``edges [B, N, N]`` (``edges[b, i, j]`` is the class of the directed pair ``i -> j``; only
``i < j`` is ever non-zero, so direction comes from topological order and nothing is
symmetrised) or, where every node reads exactly one earlier node, ``sources [B, N]`` (the
node each one reads: one categorical per node, so no drawn wiring can be invalid). Spaces
with a fixed topology diffuse only ``nodes``.

Nodes have one class per op plus a last "no node" class: padding positions of spaces with
fewer real nodes than ``max_nodes`` (NB101) are that class, so the number of nodes is
generated like any op, and decoding keeps the nodes whose class is not "no node".

Noise is the marginal transition of DiGress, ``Q_t = a_t I + (1 - a_t) 1 m^T``: keep the
class, or redraw it from ``m``. The marginals ``m`` are class frequencies of the training
split *per position* (node index, ordered pair), so the prior at ``T`` is the data's own
per-position distribution: the input/output nodes never change, padding stays where
padding is likely and the lower triangle is always "no edge". Products of these matrices
stay in the family, ``Qbar_t = abar_t I + (1 - abar_t) 1 m^T``, which is what makes
skipping steps exact: ``Q_{t|s}`` has ``a = abar_t / abar_s``.

All arithmetic here is fp32 with autocast off, so bf16-mixed training only touches the network.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

State = dict[str, torch.Tensor]
#: How a sampler spaces its steps (:meth:`CategoricalDiffusion.timesteps`).
Spacing = Literal["time", "alpha"]


def cosine_alpha_bar(T: int, s: float = 0.008) -> torch.Tensor:
    """``abar_t`` for ``t = 0..T`` (Nichol & Dhariwal's cosine schedule): 1 at 0, 0 at ``T``."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos(0.5 * math.pi * (t + s) / (1 + s)) ** 2
    return (f / f[0]).clamp(0.0, 1.0).float()


def marginal_transition(alpha: torch.Tensor, marginals: torch.Tensor) -> torch.Tensor:
    """``alpha I + (1 - alpha) 1 m^T`` as ``[..., K, K]`` (rows: from-class, columns: to-class).

    ``alpha [...]`` and ``marginals [..., K]`` broadcast against each other."""
    k = marginals.shape[-1]
    eye = torch.eye(k, dtype=marginals.dtype, device=marginals.device)
    a = alpha[..., None, None]
    return a * eye + (1 - a) * marginals.unsqueeze(-2).expand(*marginals.shape[:-1], k, k)


def posterior(z_t: torch.Tensor, q_ts: torch.Tensor, qbar_s: torch.Tensor, qbar_t: torch.Tensor) -> torch.Tensor:
    """``q(z_s | z_t, x_0 = k)`` for every ``k``, as ``[..., K (x_0), K (z_s)]``.

    Bayes: ``q(z_t | z_s) q(z_s | x_0) / q(z_t | x_0)``; ``z_t`` is one-hot ``[..., K]``.
    Rows of ``x_0`` classes that cannot have produced ``z_t`` are zero."""
    likelihood = (q_ts @ z_t.unsqueeze(-1)).squeeze(-1)  # q(z_t | z_s = j)         [..., K]
    evidence = qbar_t @ z_t.unsqueeze(-1)  # q(z_t | x_0 = k)                       [..., K, 1]
    possible = evidence > 0
    return likelihood.unsqueeze(-2) * qbar_s / torch.where(possible, evidence, 1.0) * possible


def class_frequencies(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-position class frequencies ``[...positions, K]`` of ``classes [B, ...positions]``."""
    counts = torch.nn.functional.one_hot(classes.long(), num_classes).float().sum(0)
    return counts / counts.sum(-1, keepdim=True).clamp_min(1.0)


def categorical_sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One class index per row of ``probs [..., K]``."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


def budgeted_presence(p: torch.Tensor, budget: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws ``x [B, M]`` from independent Bernoullis ``p [B, M]`` conditioned on at most
    ``budget`` ones: exactly the model's distribution restricted to graphs a space's edge cap
    allows, not a repair of a drawn graph. Entries are drawn in order, each from its
    probability times the chance that the rest still fit (``fits[:, i, c]``: entries ``i..``
    hold at most ``c`` ones)."""
    p = p.double().clamp(1e-9, 1 - 1e-9)
    b, m = p.shape
    fits = p.new_ones(b, m + 1, budget + 1)
    for i in reversed(range(m)):
        rest = fits[:, i + 1]
        used = torch.cat([rest.new_zeros(b, 1), rest[:, :-1]], 1)
        fits[:, i] = (1 - p[:, i, None]) * rest + p[:, i, None] * used
    left = torch.full((b,), budget, dtype=torch.long, device=p.device)
    rows = torch.arange(b, device=p.device)
    drawn = torch.zeros(b, m, dtype=torch.bool, device=p.device)
    u = torch.rand(b, m, generator=generator, device=p.device, dtype=torch.float64)
    for i in range(m):
        rest = fits[rows, i + 1]
        one = p[:, i] * torch.where(left > 0, rest[rows, (left - 1).clamp(min=0)], 0.0)
        zero = (1 - p[:, i]) * rest[rows, left]
        drawn[:, i] = u[:, i] * (one + zero) < one
        left = left - drawn[:, i].long()
    return drawn


class CategoricalDiffusion(nn.Module):
    """Forward noising, posteriors and ancestral steps for graph states.

    Args:
        max_nodes: node positions ``N``.
        node_classes: ops plus the "no node" class.
        edge_classes: classes of a directed pair (2: absent/present), or None when the
            topology is fixed or drawn as ``sources``.
        sources: diffuse ``sources [B, N]``, the earlier node each node reads (classes: node
            indices), instead of edges.
        T: number of diffusion steps.
        reference: make :meth:`reverse_probs` compute posteriors through the full
            ``[..., K, K]`` matrices (:meth:`reverse_probs_dense`, the original path), for
            comparisons.
    """

    def __init__(
        self,
        max_nodes: int,
        node_classes: int,
        edge_classes: int | None,
        T: int = 500,
        reference: bool = False,
        sources: bool = False,
    ) -> None:
        super().__init__()
        if sources and edge_classes is not None:
            raise ValueError("a graph state diffuses edges or sources, not both")
        self.reference = reference
        if T < 1:
            raise ValueError(f"T={T}: need at least one diffusion step")
        self.T = T
        self.register_buffer("alpha_bar", cosine_alpha_bar(T))
        self.register_buffer("node_marginals", torch.full((max_nodes, node_classes), 1.0 / node_classes))
        edges = None
        if edge_classes is not None:
            edges = torch.zeros(max_nodes, max_nodes, edge_classes)
            edges[..., 0] = 1.0
            upper = torch.ones(max_nodes, max_nodes, dtype=torch.bool).triu(1)
            edges[upper] = 1.0 / edge_classes
        self.register_buffer("edge_marginals", edges)
        first = torch.nn.functional.one_hot(torch.zeros(max_nodes, dtype=torch.long), max_nodes).float()
        self.register_buffer("source_marginals", first if sources else None)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in ("nodes", "edges", "sources") if self.marginals(k) is not None)

    def marginals(self, kind: str) -> torch.Tensor:
        return {"nodes": self.node_marginals, "edges": self.edge_marginals, "sources": self.source_marginals}[kind]

    def set_marginals(self, state: State) -> None:
        """Per-position class frequencies of a (training) population of clean states.

        Pairs on or below the diagonal stay "no edge" with certainty."""
        self.node_marginals.copy_(class_frequencies(state["nodes"], self.node_marginals.shape[-1]))
        if self.source_marginals is not None:
            self.source_marginals.copy_(class_frequencies(state["sources"], self.source_marginals.shape[-1]))
        if self.edge_marginals is not None:
            freq = class_frequencies(state["edges"].triu(1), self.edge_marginals.shape[-1])
            lower = ~torch.ones(freq.shape[:2], dtype=torch.bool, device=freq.device).triu(1)
            freq[lower] = torch.nn.functional.one_hot(torch.tensor(0), freq.shape[-1]).to(freq)
            self.edge_marginals.copy_(freq)

    # --- matrices (used by the sampler and by tests) -------------------------------------
    def cumulative(self, kind: str, t: torch.Tensor) -> torch.Tensor:
        """``Qbar_t`` per sample and position: ``[B, ...positions, K, K]`` for ``t [B]``."""
        m = self.marginals(kind)
        a = self.alpha_bar[t].view(-1, *([1] * (m.dim() - 1)))
        return marginal_transition(a, m)

    def transition(self, kind: str, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``Q_{t|s}`` (``s < t``): ``abar_t / abar_s`` of keeping the class, the rest redrawn."""
        m = self.marginals(kind)
        a = (self.alpha_bar[t] / self.alpha_bar[s].clamp_min(1e-30)).view(-1, *([1] * (m.dim() - 1)))
        return marginal_transition(a, m)

    # --- forward process -----------------------------------------------------------------
    def q_probs(self, kind: str, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``q(z_t | x_0)`` as probabilities ``[B, ...positions, K]`` (closed form of ``x_0 Qbar_t``)."""
        with torch.autocast(x0.device.type, enabled=False):
            m = self.marginals(kind)
            a = self.alpha_bar[t].view(-1, *([1] * m.dim()))
            onehot = torch.nn.functional.one_hot(x0.long(), m.shape[-1]).float()
            return a * onehot + (1 - a) * m

    def noise(self, clean: State, t: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """Draw ``z_t ~ q(z_t | x_0)`` for every diffused kind; other entries pass through."""
        out = dict(clean)
        for kind in self.kinds:
            out[kind] = categorical_sample(self.q_probs(kind, clean[kind], t), generator)
        return out

    def prior(self, batch: int, generator: torch.Generator | None = None) -> State:
        """``z_T`` drawn from the per-position marginals."""
        return {
            kind: categorical_sample(self.marginals(kind).expand(batch, *self.marginals(kind).shape), generator)
            for kind in self.kinds
        }

    # --- reverse process -----------------------------------------------------------------
    def reverse_probs(self, kind: str, z_t: torch.Tensor, x0_probs: torch.Tensor, t: int, s: int) -> torch.Tensor:
        """``p(z_s | z_t) = sum_k p(x_0 = k | z_t) q(z_s | z_t, x_0 = k)`` for ``s < t``, in closed
        form and elementwise: nothing larger than ``x0_probs [..., K]`` is built.

        With ``Q = a I + (1 - a) 1 m^T`` throughout, for the observed class ``i = z_t``:
        ``q(z_t = i | x_0 = k) = abar_t [k = i] + (1 - abar_t) m_i``; with ``r_k = p_k / q(z_t | k)``
        (0 where ``x_0 = k`` cannot have produced ``z_t``) and ``R = sum_k r_k``,
        ``p(z_s = j | z_t) ∝ (a_ts [j = i] + (1 - a_ts) m_i) (abar_s r_j + (1 - abar_s) m_j R)``,
        the matrix product of :meth:`reverse_probs_dense` with the structure of ``Q`` used.
        Where the prediction puts (numerically) no mass on any ``x_0`` that could have
        produced ``z_t``, the class is kept rather than dividing by zero."""
        if self.reference:
            return self.reverse_probs_dense(kind, z_t, x0_probs, t, s)
        with torch.autocast(z_t.device.type, enabled=False):
            k = x0_probs.shape[-1]
            abar_t, abar_s = self.alpha_bar[t], self.alpha_bar[s]
            a_ts = abar_t / abar_s.clamp_min(1e-30)
            m = self.marginals(kind)  # [...positions, K]
            onehot = torch.nn.functional.one_hot(z_t.long(), k).to(m.dtype)
            m_i = torch.gather(m.expand(*z_t.shape, k), -1, z_t.long().unsqueeze(-1))  # m of the observed class
            evidence = abar_t * onehot + (1 - abar_t) * m_i  # q(z_t | x_0 = k)
            possible = evidence > 0
            r = torch.where(possible, x0_probs.float() / torch.where(possible, evidence, 1.0), 0.0)
            forward = a_ts * onehot + (1 - a_ts) * m_i  # q(z_t | z_s = j)
            probs = forward * (abar_s * r + (1 - abar_s) * m * r.sum(-1, keepdim=True))
            total = probs.sum(-1, keepdim=True)
            return torch.where(total > 1e-12, probs / total.clamp_min(1e-12), onehot)

    def reverse_probs_dense(self, kind: str, z_t: torch.Tensor, x0_probs: torch.Tensor, t: int, s: int) -> torch.Tensor:
        """:meth:`reverse_probs` through the full matrices (``[B, ...positions, K, K]``): the
        original computation, kept as the reference the closed form is tested against."""
        with torch.autocast(z_t.device.type, enabled=False):
            b = z_t.shape[0]
            tt = torch.full((b,), t, dtype=torch.long, device=z_t.device)
            ss = torch.full((b,), s, dtype=torch.long, device=z_t.device)
            k = x0_probs.shape[-1]
            onehot = torch.nn.functional.one_hot(z_t.long(), k).float()
            post = posterior(
                onehot, self.transition(kind, tt, ss), self.cumulative(kind, ss), self.cumulative(kind, tt)
            )
            probs = (x0_probs.float().unsqueeze(-1) * post).sum(-2)
            total = probs.sum(-1, keepdim=True)
            return torch.where(total > 1e-12, probs / total.clamp_min(1e-12), onehot)

    def step(
        self,
        state: State,
        x0_probs: dict[str, torch.Tensor],
        t: int,
        s: int,
        generator: torch.Generator | None = None,
        tilt: dict[str, torch.Tensor] | None = None,
        max_edges: int | None = None,
    ) -> State:
        """One ancestral step ``z_t -> z_s`` (any ``s < t``: skipping steps is exact).

        ``tilt``: log-weights per kind, position and class (shaped like ``x0_probs``) that
        multiply ``p(z_s | z_t)`` before drawing, as guidance does; classes it cannot reach
        stay unreachable. ``max_edges``: the space's edge cap; the last step (``s = 0``, the
        clean graph) draws its binary edges conditioned on it (:func:`budgeted_presence`)."""
        out = dict(state)
        for kind in self.kinds:
            probs = self.reverse_probs(kind, state[kind], x0_probs[kind], t, s)
            if tilt is not None:
                log_w = tilt[kind].float()
                probs = probs * (log_w - log_w.amax(-1, keepdim=True)).exp()
                probs = probs / probs.sum(-1, keepdim=True)
            if kind == "edges" and s == 0 and max_edges is not None and probs.shape[-1] == 2:
                present = budgeted_presence(probs[..., 1].flatten(1), max_edges, generator)
                out[kind] = present.view(probs.shape[:-1]).long()
            else:
                out[kind] = categorical_sample(probs, generator)
        return out

    def timesteps(self, steps: int | None = None, spacing: Spacing = "time") -> list[int]:
        """Descending integer times ``T .. 0`` visited by a sampler with ``steps`` steps, evenly
        spaced in ``t`` (``"time"``) or in ``abar_t`` (``"alpha"``: every step redraws the same
        expected share of positions; the cosine schedule changes little near ``0`` and ``T``, and
        evenly spaced times spend steps there). ``"alpha"`` may give fewer steps where two levels
        round to one integer time (more than about ``T / 1.6`` steps)."""
        steps = self.T if steps is None else steps
        if steps < 1:
            raise ValueError(f"steps={steps}: need at least one sampling step")
        if spacing == "time":
            grid = torch.linspace(self.T, 0, min(steps, self.T) + 1, dtype=torch.float64).round().long()
        elif spacing == "alpha":
            levels = torch.linspace(0.0, 1.0, min(steps, self.T) + 1, dtype=torch.float64)
            grid = (self.alpha_bar.double().cpu()[None, :] - levels[:, None]).abs().argmin(1)
        else:
            raise ValueError(f"spacing={spacing!r}; expected 'time' or 'alpha'")
        return torch.unique_consecutive(grid).tolist()
