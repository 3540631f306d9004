"""Architecture features for latency prediction, for any search space.

From the space's graph form (``to_graph``: node labels and a DAG adjacency) only:

* ``onehot``: each node position's op, one-hot (the space's ``encode``, flattened);
* ``adjacency``: the upper triangle, for spaces whose topology varies;
* ``live``: the same one-hot after removing dead ops, for spaces with a ``none``/``zero`` op.
  An op whose input never sees the network's input, or whose output never reaches the
  output, computes nothing that matters; hardware tables measure the network without it
  (an NB201 cell whose output edges are all ``none`` runs in a fraction of the time), so the
  ops that actually run are the better description;
* ``counts``: how many nodes of each op run (live ones where ``live`` applies);
* ``declared`` and ``present``, for spaces with a ``none`` op: how many nodes of each op the
  architecture declares, dead or not, and which positions hold an op other than ``none``.
  Not every table prunes: HW-NAS-Bench's FPGA and Eyeriss latencies are linear in the
  declared counts (Spearman 0.995 on held-out cells), and its edge GPU's depend on which
  positions are occupied far more than on which op occupies them;
* ``costs``: log of cost columns such as FLOPs and parameters, where a callable gives them
  (:class:`TableCosts` reads a benchmark's columns).

Columns that never vary over the architectures the features are fitted on are dropped, and
the rest are standardised with that pool's mean and spread.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError, InvalidArchitecture
from nag.spaces.base import Arch, SearchSpace

#: Op names that compute nothing (their node cuts every path through it).
NONE_OPS = ("none", "zero")
#: Labels of the graph form's input and output nodes (never pruned, never counted as ops).
ENDPOINTS = ("input", "output")

CostFn = Callable[[Sequence[Arch]], np.ndarray]


def live_labels(labels: Sequence[str], adjacency: np.ndarray) -> list[str]:
    """``labels`` with every op that is not on an input-to-output path of computing nodes set
    to ``none`` (the ``none``/``zero`` nodes themselves cut paths). The input is the node
    labelled ``input`` (else node 0), the output the one labelled ``output`` (else the last)."""
    labels = list(labels)
    n = len(labels)
    adj = np.asarray(adjacency)[:n, :n] != 0
    cut = np.array([lab in NONE_OPS for lab in labels])
    source = labels.index("input") if "input" in labels else 0
    sink = labels.index("output") if "output" in labels else n - 1
    forward = np.zeros(n, dtype=bool)
    forward[source] = True
    for i in range(n):  # nodes are in topological order (upper-triangular adjacency)
        if forward[i] and not cut[i]:
            forward |= adj[i]
    backward = np.zeros(n, dtype=bool)
    backward[sink] = True
    for i in range(n - 1, -1, -1):
        if not cut[i] and (adj[i] & backward).any():
            backward[i] = True
    none = next(op for op in NONE_OPS if op in labels) if cut.any() else "none"
    return [
        lab if lab in ENDPOINTS or (forward[i] and backward[i] and not cut[i]) else none for i, lab in enumerate(labels)
    ]


def pruned(space: SearchSpace, arch: Arch) -> Arch | None:
    """The architecture with its dead ops set to ``none`` (the network that runs), or None
    when the space cannot express it."""
    labels, adjacency = space.to_graph(arch)
    live = live_labels(labels, adjacency)
    if live == list(labels):
        return arch
    try:
        return space.from_graph(live, adjacency)
    except InvalidArchitecture:
        return None


class TableCosts:
    """Cost features (e.g. ``cifar10_flops_M``, ``cifar10_params_M``) read from ``benchmark``:
    an architecture's own row where it has the value, else the row of its pruned form (NB201
    lists FLOPs only for cells without dead ops; a cell with dead ops costs what its pruned
    form costs), else NaN (imputed with the pool mean by :class:`ArchFeatures`)."""

    def __init__(self, benchmark: Benchmark, columns: Sequence[str]) -> None:
        self.benchmark, self.columns = benchmark, list(columns)
        self._values = np.stack([benchmark.column(c) for c in self.columns], axis=1)
        self._cache: dict[Hashable, np.ndarray] = {}

    def _row(self, arch: Arch) -> np.ndarray:
        key = arch if isinstance(arch, Hashable) else self.benchmark.space.to_string(arch)
        row = self._cache.get(key)
        if row is None:
            row = self._cache[key] = self._lookup(arch)
        return row

    def _lookup(self, arch: Arch) -> np.ndarray:
        for candidate in (arch, pruned(self.benchmark.space, arch)):
            if candidate is not None and candidate in self.benchmark:
                row = self._values[self.benchmark.index(candidate)]
                if np.isfinite(row).all():
                    return row
        return np.full(len(self.columns), np.nan)

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self._row(a) for a in archs]) if archs else np.zeros((0, len(self.columns)))

    def __repr__(self) -> str:
        return f"TableCosts({self.columns})"


#: Architectures whose feature rows :meth:`ArchFeatures.raw` keeps (NB-Graph has 26,206).
CACHED_ROWS = 50_000


class ArchFeatures:
    """Standardised feature rows of architectures of ``space`` (see the module docstring).

    ``fit(archs)`` fixes which columns vary and their statistics; ``transform(archs)`` gives
    ``[n, dim]`` rows. ``groups`` names the column ranges (``onehot``, ``adjacency``, ``live``,
    ``counts``, ``costs``) after fitting.
    """

    def __init__(self, space: SearchSpace, costs: CostFn | None = None) -> None:
        self.space, self.costs = space, costs
        self.has_none = any(op in space.ops for op in NONE_OPS)
        self._cache: dict[Hashable, np.ndarray] = {}
        self.keep: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.groups: dict[str, np.ndarray] = {}
        self._raw_groups: dict[str, slice] = {}

    # --- raw features ---------------------------------------------------------------
    def _graph_row(self, arch: Arch) -> np.ndarray:
        space = self.space
        labels, adjacency = space.to_graph(arch)
        n, v = space.max_nodes, len(space.ops)
        onehot = np.zeros((n, v))
        for i, lab in enumerate(labels):
            onehot[i, space.op_index(lab)] = 1.0
        parts = [onehot.ravel()]
        if not space.fixed_topology:
            adj = np.zeros((n, n))
            m = len(labels)
            adj[:m, :m] = np.asarray(adjacency)[:m, :m] != 0
            parts.append(adj[np.triu_indices(n, 1)])
        run = live_labels(labels, adjacency) if self.has_none else list(labels)
        if self.has_none:
            live = np.zeros((n, v))
            for i, lab in enumerate(run):
                live[i, space.op_index(lab)] = 1.0
            parts.append(live.ravel())
        counts = np.zeros(v)
        for lab in run:
            if lab not in ENDPOINTS and lab not in NONE_OPS:
                counts[space.op_index(lab)] += 1.0
        parts.append(counts)
        if self.has_none:
            declared, present = np.zeros(v), np.zeros(n)
            for i, lab in enumerate(labels):
                if lab not in ENDPOINTS and lab not in NONE_OPS:
                    declared[space.op_index(lab)] += 1.0
                    present[i] = 1.0
            parts += [declared, present]
        return np.concatenate(parts)

    def _graph_layout(self) -> dict[str, int]:
        n, v = self.space.max_nodes, len(self.space.ops)
        layout = {"onehot": n * v}
        if not self.space.fixed_topology:
            layout["adjacency"] = n * (n - 1) // 2
        if self.has_none:
            layout["live"] = n * v
        layout["counts"] = v
        if self.has_none:
            layout["declared"], layout["present"] = v, n
        return layout

    def raw(self, archs: Sequence[Arch]) -> np.ndarray:
        """Unstandardised features ``[n, raw_dim]`` (graph part cached per architecture, for the
        first :data:`CACHED_ROWS` seen: every table nag ships fits, while a search of a space too
        large to enumerate would otherwise grow the cache by ~16 KB a subnet without end)."""
        rows = []
        for arch in archs:
            key = arch if isinstance(arch, Hashable) else self.space.to_string(arch)
            row = self._cache.get(key)
            if row is None:
                row = self._graph_row(arch)
                if len(self._cache) < CACHED_ROWS:
                    self._cache[key] = row
            rows.append(row)
        graph = np.stack(rows) if rows else np.zeros((0, sum(self._graph_layout().values())))
        if self.costs is None:
            return graph
        costs = np.asarray(self.costs(archs), dtype=np.float64).reshape(len(archs), -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(costs > 0, np.log(np.where(costs > 0, costs, 1.0)), np.nan)
        return np.concatenate([graph, logs], axis=1)

    # --- fitting --------------------------------------------------------------------
    def fit(self, archs: Sequence[Arch]) -> ArchFeatures:
        if not archs:
            raise ConfigError("ArchFeatures.fit: no architectures to fit the feature statistics on")
        x = self.raw(archs)
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        self.keep = np.flatnonzero(np.nan_to_num(std) > 1e-9)
        self.mean, self.std = mean[self.keep], std[self.keep]
        layout = self._graph_layout()
        if self.costs is not None:
            layout["costs"] = x.shape[1] - sum(layout.values())
        start, groups = 0, {}
        for name, width in layout.items():
            cols = np.arange(start, start + width)
            groups[name] = np.flatnonzero(np.isin(self.keep, cols))
            start += width
        self.groups = {k: v for k, v in groups.items() if len(v)}
        return self

    @property
    def dim(self) -> int:
        self._check_fitted()
        return len(self.keep)

    def _check_fitted(self) -> None:
        if self.keep is None:
            raise ConfigError("ArchFeatures: call fit(archs) before transform")

    def transform(self, archs: Sequence[Arch]) -> np.ndarray:
        """Standardised features ``[n, dim]``; missing costs become the pool mean (0)."""
        self._check_fitted()
        x = (self.raw(archs)[:, self.keep] - self.mean) / self.std
        return np.nan_to_num(x, nan=0.0)

    def state(self) -> dict[str, Any]:
        """What :meth:`load_state` needs (plain lists, for weights-only files)."""
        self._check_fitted()
        return {
            "keep": self.keep.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "groups": {k: v.tolist() for k, v in self.groups.items()},
            "layout": self._graph_layout(),
            "costs": getattr(self.costs, "columns", None) if self.costs is not None else None,
        }

    def load_state(self, state: dict[str, Any]) -> ArchFeatures:
        # files from before ``declared``/``present`` existed have no layout: only spaces without
        # a none op still read them the same way
        now = self._graph_layout()
        layout = state.get("layout") or {k: w for k, w in now.items() if k not in ("declared", "present")}
        if layout != now:
            raise ConfigError(
                f"ArchFeatures: saved with feature layout {layout}, this version computes {now}; "
                "meta-train the predictor again"
            )
        self.keep = np.asarray(state["keep"], dtype=np.int64)
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)
        self.groups = {k: np.asarray(v, dtype=np.int64) for k, v in state["groups"].items()}
        return self
