"""The hierarchical space: general DAG cells (micro) stacked in stages of a network (macro).

Cells are op-on-node DAGs: ``input``, 1 to 6 op nodes from :data:`CELL_OPS`, ``output``; each
node sums its predecessors. A macro architecture is a stem width plus 1 to ``max_stages``
stages ``(cell, channels, stride, repeats)``. Parameter and FLOP counts of any macro
architecture are exact and closed form (:meth:`MacroSpace.params`, :meth:`MacroSpace.flops`):
a cell's cost is ``q*C**2 + l*C`` per pixel for its width ``C``, plus the input projection.
FLOPs follow ``torch.utils.flop_counter``: 2 per multiply-accumulate of convolutions and
linear layers; BN, activations, pooling and additions are free.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import torch

from nag.errors import ConfigError, InvalidArchitecture
from nag.nn.hierarchical_network import CELL_OPS as _OP_BUILDERS
from nag.nn.hierarchical_network import DAGCell, HierarchicalNetwork
from nag.spaces.base import SearchSpace, cheapest_path

INPUT = "input"
OUTPUT = "output"
CELL_OPS: tuple[str, ...] = tuple(_OP_BUILDERS)
MAX_OP_NODES = 6
#: Per op node of width ``C``: (q, params l, MACs-per-pixel l) with params ``q*C^2 + l*C`` and
#: MACs per output pixel ``q*C^2 + l*C`` -- BN adds ``2C`` parameters and no MACs.
OP_COST: dict[str, tuple[int, int, int]] = {
    "conv1x1": (1, 2, 0),
    "conv3x3": (9, 2, 0),
    "conv5x5": (25, 2, 0),
    "dwsep3x3": (1, 9 + 2, 9),
    "dwsep5x5": (1, 25 + 2, 25),
    "maxpool3x3": (0, 0, 0),
    "avgpool3x3": (0, 0, 0),
    "skip": (0, 0, 0),
}
_RANK = {op: i for i, op in enumerate((INPUT, *CELL_OPS, OUTPUT))}
_CELL_EXAMPLE = "'input,conv3x3,dwsep5x5,output|0110,0001,0001,0000'"


class Cell(NamedTuple):
    """``adjacency[i][j] == 1`` when node ``i`` feeds node ``j`` (``i < j``); ``ops`` = node labels."""

    adjacency: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]


def _format_cell(cell: Cell) -> str:
    return ",".join(cell.ops) + "|" + ",".join("".join(str(v) for v in row) for row in cell.adjacency)


def _checked_cell(arch: object) -> Cell:
    """``arch`` as a well-formed (not yet pruned) cell; raises on anything that is not one."""
    if not (
        isinstance(arch, tuple)
        and len(arch) == 2
        and isinstance(arch[0], tuple)
        and isinstance(arch[1], tuple)
        and all(isinstance(row, tuple) for row in arch[0])
    ):
        raise InvalidArchitecture(
            f"cell: {arch!r} is not a cell; expected Cell(adjacency, ops) of tuples or a string like {_CELL_EXAMPLE}"
        )
    adjacency, ops = arch
    n = len(ops)
    what = repr(arch)
    if not 3 <= n <= MAX_OP_NODES + 2:
        raise InvalidArchitecture(
            f"cell: {what} has {n} nodes; expected 3 to {MAX_OP_NODES + 2} "
            f"(input, 1 to {MAX_OP_NODES} op nodes, output)"
        )
    if len(adjacency) != n or any(len(row) != n for row in adjacency):
        raise InvalidArchitecture(f"cell: {what} has {n} ops, so it needs a {n}x{n} adjacency")
    for i, row in enumerate(adjacency):
        for j, v in enumerate(row):
            if v not in (0, 1) or (v and j <= i):
                raise InvalidArchitecture(
                    f"cell: {what} has adjacency entry {v!r} at ({i}, {j}); expected 0/1, strictly upper-triangular "
                    "(order the nodes topologically)"
                )
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise InvalidArchitecture(
            f"cell: {what} runs from {ops[0]!r} to {ops[-1]!r}; expected {INPUT!r} ... {OUTPUT!r}"
        )
    for i, op in enumerate(ops[1:-1], start=1):
        if op not in CELL_OPS:
            raise InvalidArchitecture(
                f"cell: {what} has unknown op {op!r} at node {i}; expected one of {', '.join(CELL_OPS)}"
            )
    return Cell(tuple(tuple(int(v) for v in row) for row in adjacency), ops)


def _reachable(adjacency: np.ndarray, start: int) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for v in np.flatnonzero(adjacency[stack.pop()]).tolist():
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


def _live_nodes(adjacency: np.ndarray) -> list[int]:
    """Nodes on some input->output path (empty when the output is unreachable)."""
    return sorted(_reachable(adjacency, 0) & _reachable(adjacency.T, len(adjacency) - 1))


def _op_node_positions(cell: Cell) -> list[set[str]]:
    """The ops each op-node position of the pruned ``cell`` holds in some topological order:
    a node fits position ``p`` exactly when its op-node ancestors fit before it and its
    op-node descendants after it."""
    adjacency = np.array(cell.adjacency, dtype=np.int64)
    k = len(cell.ops) - 2
    positions: list[set[str]] = [set() for _ in range(k)]
    for v in range(1, k + 1):
        before = len(_reachable(adjacency.T, v) - {0, v})
        after = len(_reachable(adjacency, v) - {k + 1, v})
        for p in range(before, k - after):
            positions[p].add(cell.ops[v])
    return positions


@lru_cache(maxsize=1 << 16)
def _pruned(arch: Cell) -> Cell:
    """The cell without nodes off every input->output path (they cannot change the output)."""
    cell = _checked_cell(arch)
    adjacency = np.array(cell.adjacency, dtype=np.int64)
    keep = _live_nodes(adjacency)
    if not keep:
        raise InvalidArchitecture(f"cell: {_format_cell(cell)!r} has no path from input to output; connect them")
    if len(keep) < 3:
        raise InvalidArchitecture(
            f"cell: {_format_cell(cell)!r} has no op node on an input->output path; route the input through an op"
        )
    adjacency = adjacency[np.ix_(keep, keep)]
    return Cell(tuple(map(tuple, adjacency.tolist())), tuple(cell.ops[i] for i in keep))


def _candidate_orders(preds: list[frozenset[int]], rank: list[int]) -> Iterator[tuple[int, ...]]:
    """Topological orders (input first, output last) that place, at every step, an available
    op node of the smallest op rank: the lexicographically smallest op sequence is among them
    (picking a larger rank anywhere makes the sequence larger), so only ties branch."""
    n = len(preds)

    def extend(order: tuple[int, ...], placed: frozenset[int]) -> Iterator[tuple[int, ...]]:
        if len(order) == n - 1:
            yield (*order, n - 1)
            return
        ready = [v for v in range(1, n - 1) if v not in placed and preds[v] <= placed]
        low = min(rank[v] for v in ready)
        for v in ready:
            if rank[v] == low:
                yield from extend((*order, v), placed | {v})

    yield from extend((0,), frozenset({0}))


@lru_cache(maxsize=1 << 16)
def _canonical(arch: Cell) -> Cell:
    """The pruned cell relabelled by its lexicographically smallest topological order (ops,
    then adjacency bits): isomorphic cells get the same result, so it is an exact key."""
    cell = _pruned(arch)
    adjacency = np.array(cell.adjacency, dtype=np.int64)
    rank = [_RANK[op] for op in cell.ops]
    preds = [frozenset(np.flatnonzero(adjacency[:, j]).tolist()) for j in range(len(cell.ops))]
    best = min(
        (tuple(adjacency[np.ix_(order, order)].ravel().tolist()), order) for order in _candidate_orders(preds, rank)
    )
    order = list(best[1])
    return Cell(tuple(map(tuple, adjacency[np.ix_(order, order)].tolist())), tuple(cell.ops[v] for v in order))


@lru_cache(maxsize=1 << 16)
def _cell_key(arch: Cell) -> str:
    return _format_cell(_canonical(arch))


@lru_cache(maxsize=1 << 16)
def _cell_cost(arch: Cell) -> tuple[int, int, int]:
    """Summed :data:`OP_COST` of the pruned cell's op nodes."""
    q, lp, lm = 0, 0, 0
    for op in _pruned(arch).ops[1:-1]:
        dq, dp, dm = OP_COST[op]
        q, lp, lm = q + dq, lp + dp, lm + dm
    return q, lp, lm


@lru_cache(maxsize=1 << 14)
def _cell_neighbours(arch: Cell) -> tuple[Cell, ...]:
    """:meth:`CellSpace.neighbours`, cached: evolution mutates the same parents many times."""
    cell = _pruned(arch)
    adjacency, ops, n = np.array(cell.adjacency, dtype=np.int64), cell.ops, len(cell.ops)
    edits: list[tuple[np.ndarray, tuple[str, ...]]] = []
    for i, j in zip(*np.triu_indices(n, k=1)):
        flipped = adjacency.copy()
        flipped[i, j] ^= 1
        edits.append((flipped, ops))
    edits += [(adjacency, (*ops[:i], op, *ops[i + 1 :])) for i in range(1, n - 1) for op in CELL_OPS if op != ops[i]]
    if n - 2 < MAX_OP_NODES:
        for i, j in np.argwhere(adjacency).tolist():
            split = np.insert(np.insert(adjacency, j, 0, axis=0), j, 0, axis=1)
            split[i, j + 1], split[i, j], split[j, j + 1] = 0, 1, 1
            edits += [(split, (*ops[:j], op, *ops[j:])) for op in CELL_OPS]
    for v in range(1, n - 1):
        bypass = adjacency.copy()
        bypass[np.ix_(np.flatnonzero(adjacency[:, v]), np.flatnonzero(adjacency[v]))] = 1
        keep = [u for u in range(n) if u != v]
        edits.append((bypass[np.ix_(keep, keep)], tuple(ops[u] for u in keep)))
    seen, out = {_cell_key(cell)}, []
    for matrix, labels in edits:
        try:
            neighbour = _pruned(Cell(tuple(map(tuple, matrix.tolist())), labels))
        except InvalidArchitecture:
            continue
        if (key := _cell_key(neighbour)) not in seen:
            seen.add(key)
            out.append(neighbour)
    return tuple(out)


def _sample_cell(rng: np.random.Generator) -> Cell:
    """A random cell of 1..6 op nodes in which every node lies on an input->output path:
    each op node draws a non-empty set of earlier predecessors, nodes without successors
    feed the output, and any other node does with probability 1/4."""
    k = int(rng.integers(1, MAX_OP_NODES + 1))
    n = k + 2
    adjacency = np.zeros((n, n), dtype=np.int64)
    for j in range(1, n - 1):
        preds = rng.random(j) < 0.5
        if not preds.any():
            preds[rng.integers(j)] = True
        adjacency[:j, j] = preds
    adjacency[: n - 1, n - 1] = (adjacency[: n - 1, : n - 1].sum(1) == 0) | (rng.random(n - 1) < 0.25)
    ops = tuple(CELL_OPS[i] for i in rng.integers(len(CELL_OPS), size=k).tolist())
    return Cell(tuple(map(tuple, adjacency.tolist())), (INPUT, *ops, OUTPUT))


class CellSpace(SearchSpace[Cell]):
    """General DAG cells: input, 1 to 6 op nodes from :data:`CELL_OPS`, output.

    Like NAS-Bench-101's ``ModelSpec``, nodes on no input->output path are pruned: every
    constructor of this space returns the pruned cell, and :meth:`key` is the string of the
    canonical (isomorphism-invariant) relabelling of it. String form: op names joined by
    ``,``, ``|``, one 0/1 adjacency row per node, e.g. ``input,conv3x3,output|010,001,000``.
    """

    name = "hierarchical_cell"
    ops = (INPUT, *CELL_OPS, OUTPUT)
    max_nodes = MAX_OP_NODES + 2
    fixed_topology = False

    def to_graph(self, arch: Cell) -> tuple[list[str], np.ndarray]:
        cell = _pruned(arch)
        return list(cell.ops), np.array(cell.adjacency, dtype=np.int64)

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> Cell:
        matrix = np.asarray(adjacency)
        if matrix.shape != (len(labels), len(labels)) or not np.isin(matrix, (0, 1)).all():
            raise InvalidArchitecture(
                f"cell: {len(labels)} node labels need a {len(labels)}x{len(labels)} 0/1 adjacency, got shape "
                f"{matrix.shape}; threshold soft adjacencies first"
            )
        return _pruned(Cell(tuple(map(tuple, matrix.astype(np.int64).tolist())), tuple(labels)))

    def validate(self, arch: Cell) -> Cell:
        _pruned(arch)
        return arch

    def allowed_ops(self) -> torch.Tensor:
        """Input first; position 1 always holds an op node; the output may close a cell at
        positions 2 to 7 (1 to 6 op nodes)."""
        return self.allowed_table([{INPUT}, set(CELL_OPS), *[{*CELL_OPS, OUTPUT}] * (MAX_OP_NODES - 1), {OUTPUT}])

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> Cell:
        """The nearest cell: the node mask's count of nodes (3 to 8), input, each op node's
        best op, output; the edges above 0.5, plus the cheapest input->output path through an
        op node when they have none. Returned pruned, like every cell here."""
        ops, edges, n = self.soft_scores(x, a, node_mask)
        n = min(max(n, 3), self.max_nodes)
        best = ops[1 : n - 1, [self.op_index(op) for op in CELL_OPS]].argmax(-1)
        labels = (INPUT, *(CELL_OPS[i] for i in best), OUTPUT)
        scores = edges[:n, :n]
        adjacency = (scores > 0.5).astype(np.int64)
        if len(_live_nodes(adjacency)) < 3:
            for edge in cheapest_path(scores, direct=False):
                adjacency[edge] = 1
        return self.from_graph(labels, adjacency)

    def prune(self, arch: Cell) -> Cell:
        return _pruned(arch)

    def canonical(self, arch: Cell) -> Cell:
        """The representative of ``arch``'s isomorphism class (what :meth:`key` spells)."""
        return _canonical(arch)

    def key(self, arch: Cell) -> str:
        return _cell_key(arch)

    def to_string(self, arch: Cell) -> str:
        self.validate(arch)
        return _format_cell(arch)

    def from_string(self, text: str) -> Cell:
        def fail(problem: str) -> InvalidArchitecture:
            return InvalidArchitecture(
                f"cell: cannot parse {text!r}: {problem}; expected ops joined by ',', '|', one 0/1 row per node, "
                f"e.g. {_CELL_EXAMPLE}"
            )

        if not isinstance(text, str):
            raise fail(f"got a {type(text).__name__}, not a string")
        parts = text.strip().split("|")
        if len(parts) != 2:
            raise fail(f"found {len(parts) - 1} '|' separators instead of 1")
        ops = tuple(op.strip() for op in parts[0].split(","))
        rows = [row.strip() for row in parts[1].split(",")]
        if len(rows) != len(ops) or any(len(r) != len(ops) or set(r) - {"0", "1"} for r in rows):
            raise fail(f"{len(ops)} ops need {len(ops)} rows of {len(ops)} characters 0/1")
        return _pruned(Cell(tuple(tuple(int(c) for c in row) for row in rows), ops))

    def sample(self, n: int, rng: np.random.Generator) -> list[Cell]:
        return [_sample_cell(rng) for _ in range(n)]

    def neighbours(self, arch: Cell) -> list[Cell]:
        """Pruned cells one edit away, one per key: an edge flipped, an op changed, an edge
        split by a new op node (below 6), or an op node removed with its inputs wired to its
        outputs."""
        return list(_cell_neighbours(_pruned(arch)))

    def cost(self, arch: Cell) -> tuple[int, int, int]:
        """``(q, l_params, l_macs)``: at width ``C`` the op nodes hold ``q*C^2 + l_params*C``
        parameters and do ``q*C^2 + l_macs*C`` multiply-accumulates per output pixel."""
        return _cell_cost(arch)

    def to_module(self, arch: Cell, c_in: int = 16, c_out: int = 16, stride: int = 1) -> torch.nn.Module:
        """The cell as a module mapping ``[B, c_in, H, W]`` to ``[B, c_out, ceil(H/stride), ...]``."""
        labels, adjacency = self.to_graph(arch)
        return DAGCell(labels, adjacency, c_in, c_out, stride)


# ------------------------------------------------------------------------------------------
# macro level
# ------------------------------------------------------------------------------------------
class Stage(NamedTuple):
    """``repeats`` copies of ``cell`` at ``channels``; the first one applies ``stride``."""

    cell: Cell
    channels: int
    stride: int
    repeats: int


class MacroArch(NamedTuple):
    """A whole network: stem width and stages, in order."""

    stem: int
    stages: tuple[Stage, ...]


class MacroConstraints(NamedTuple):
    """A task and its budgets: what a macro architecture is generated for."""

    num_classes: int
    input_size: int
    max_params: int
    max_flops: int
    in_channels: int = 3


_MACRO_EXAMPLE = "'16;input,conv3x3,output|010,001,000:32:2:2'"
_HEADER = re.compile(r"^stage_c(\d+)_s(\d+)_r(\d+)$")
_STEM = re.compile(r"^stem_c(\d+)$")
CELL_OUTPUT = "cell_output"


class MacroSpace(SearchSpace[MacroArch]):
    """Macro architectures over a cell vocabulary.

    Args:
        cells: cell strings the stages may use (the macro tokens' cell ids, in order); with
            ``num_cells`` instead, that many distinct cells are sampled with ``cell_seed``;
            with neither, stages may use any cell of :class:`CellSpace`.
        stem_channels, channels, strides, repeats: the choices of each field.
        min_stages, max_stages: how many stages a network has.

    String form: ``stem;cell:channels:stride:repeats;...`` (cells in :class:`CellSpace`
    string form), e.g. ``16;input,conv3x3,output|010,001,000:32:2:2``. :meth:`params`,
    :meth:`flops` and :meth:`to_module` accept any valid cell (not only the vocabulary), so
    cells generated elsewhere can be swapped in and checked exactly.

    Graph form (for graph models): a chain ``stem_c{C}`` -> per stage a header node
    ``stage_c{C}_s{S}_r{R}`` acting as the cell's input, the cell's op nodes with its own
    edges, a ``cell_output`` node -> ... -> ``output``.
    """

    name = "hierarchical_macro"
    fixed_topology = False

    def __init__(
        self,
        cells: Sequence[str] | None = None,
        num_cells: int | None = None,
        cell_seed: int = 0,
        stem_channels: Sequence[int] = (8, 16, 24),
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        strides: Sequence[int] = (1, 2),
        repeats: Sequence[int] = (1, 2, 3),
        min_stages: int = 1,
        max_stages: int = 4,
    ) -> None:
        self.cell_space = CellSpace()
        for field, values in (
            ("stem_channels", stem_channels),
            ("channels", channels),
            ("strides", strides),
            ("repeats", repeats),
        ):
            if not values or any(int(v) != v or v < 1 for v in values) or len(set(values)) != len(values):
                raise ConfigError(f"{self.name}.{field}={list(values)}: expected distinct positive integers")
        if not 1 <= min_stages <= max_stages:
            raise ConfigError(f"{self.name}: need 1 <= min_stages <= max_stages, got {min_stages}, {max_stages}")
        if cells is not None and num_cells is not None:
            raise ConfigError(f"{self.name}: give cells or num_cells, not both")
        self.stem_channels, self.channels = tuple(map(int, stem_channels)), tuple(map(int, channels))
        self.strides, self.repeats = tuple(map(int, strides)), tuple(map(int, repeats))
        self.min_stages, self.max_stages = min_stages, max_stages
        if num_cells is not None:
            cells = self._sample_vocabulary(num_cells, cell_seed)
        self.cells: tuple[Cell, ...] | None = None
        if cells is not None:
            parsed = [
                self.cell_space.canonical(self.cell_space.from_string(c) if isinstance(c, str) else c) for c in cells
            ]
            self.cells = tuple(dict.fromkeys(parsed))
            if not self.cells:
                raise ConfigError(f"{self.name}.cells is empty; give at least one cell or leave it unset")
        self.cell_ids = None if self.cells is None else {_cell_key(c): i for i, c in enumerate(self.cells)}
        headers = [f"stage_c{c}_s{s}_r{r}" for c in self.channels for s in self.strides for r in self.repeats]
        self.ops = (*(f"stem_c{c}" for c in self.stem_channels), *headers, *CELL_OPS, CELL_OUTPUT, OUTPUT)
        self.max_nodes = 2 + max_stages * (MAX_OP_NODES + 2)

    def _sample_vocabulary(self, num_cells: int, seed: int) -> list[Cell]:
        """``num_cells`` cells with distinct keys, drawn in order with ``seed``."""
        if num_cells < 1:
            raise ConfigError(f"{self.name}.num_cells={num_cells}: expected at least 1")
        rng, found = np.random.default_rng(seed), {}
        while len(found) < num_cells:
            cell = _sample_cell(rng)
            found.setdefault(_cell_key(cell), _canonical(cell))
        return list(found.values())

    def config(self) -> dict:
        """Keyword arguments that rebuild this space (cells as strings): stored in checkpoints."""
        return {
            "cells": None if self.cells is None else [_format_cell(c) for c in self.cells],
            "stem_channels": list(self.stem_channels),
            "channels": list(self.channels),
            "strides": list(self.strides),
            "repeats": list(self.repeats),
            "min_stages": self.min_stages,
            "max_stages": self.max_stages,
        }

    @property
    def identity(self) -> dict:
        return {**super().identity, **self.config()}

    # --- identity -----------------------------------------------------------------------
    def _structure(self, arch: object) -> MacroArch:
        """``arch`` with pruned cells if it is a well-formed macro architecture of valid cells
        and in-range fields (any cell allowed); raises otherwise."""
        if not (isinstance(arch, tuple) and len(arch) == 2 and isinstance(arch[1], tuple)):
            raise InvalidArchitecture(f"{self.name}: {arch!r} is not MacroArch(stem, stages); e.g. {_MACRO_EXAMPLE}")
        stem, stages = arch
        if stem not in self.stem_channels:
            raise InvalidArchitecture(f"{self.name}: stem width {stem!r}; expected one of {list(self.stem_channels)}")
        if not self.min_stages <= len(stages) <= self.max_stages:
            raise InvalidArchitecture(
                f"{self.name}: {len(stages)} stages; expected {self.min_stages} to {self.max_stages}"
            )
        out = []
        for i, stage in enumerate(stages):
            if not (isinstance(stage, tuple) and len(stage) == 4):
                raise InvalidArchitecture(
                    f"{self.name}: stage {i} is {stage!r}; expected Stage(cell, channels, stride, repeats)"
                )
            cell, c, s, r = stage
            for field, value, choices in (
                ("channels", c, self.channels),
                ("stride", s, self.strides),
                ("repeats", r, self.repeats),
            ):
                if value not in choices:
                    raise InvalidArchitecture(
                        f"{self.name}: stage {i} {field}={value!r}; expected one of {list(choices)}"
                    )
            out.append(Stage(_pruned(cell), int(c), int(s), int(r)))
        return MacroArch(int(stem), tuple(out))

    def validate(self, arch: MacroArch) -> MacroArch:
        checked = self._structure(arch)
        if self.cell_ids is not None:
            for i, stage in enumerate(checked.stages):
                if _cell_key(stage.cell) not in self.cell_ids:
                    raise InvalidArchitecture(
                        f"{self.name}: stage {i} cell {_format_cell(stage.cell)!r} is not in the space's "
                        f"{len(self.cell_ids)}-cell vocabulary; use MacroSpace() without cells for any cell"
                    )
        return arch

    def cell_id(self, cell: Cell) -> int:
        """Index of ``cell`` (up to isomorphism) in the vocabulary."""
        if self.cell_ids is None:
            raise ConfigError(f"{self.name}: this space has no cell vocabulary; give cells or num_cells")
        try:
            return self.cell_ids[_cell_key(cell)]
        except KeyError:
            raise InvalidArchitecture(
                f"{self.name}: cell {_format_cell(_pruned(cell))!r} is not in the vocabulary"
            ) from None

    def key(self, arch: MacroArch) -> str:
        """Canonical cells, and a stage that continues the previous one (same cell and width,
        stride 1) merged into it: both build the same network."""
        merged: list[list] = []
        for cell, c, s, r in self._structure(arch).stages:
            k = _cell_key(cell)
            if merged and merged[-1][0] == k and merged[-1][1] == c and s == 1:
                merged[-1][3] += r
            else:
                merged.append([k, c, s, r])
        return ";".join([str(arch[0]), *(f"{k}:{c}:{s}:{r}" for k, c, s, r in merged)])

    # --- strings ------------------------------------------------------------------------
    def to_string(self, arch: MacroArch) -> str:
        self.validate(arch)
        return ";".join([str(arch[0]), *(f"{_format_cell(st[0])}:{st[1]}:{st[2]}:{st[3]}" for st in arch[1])])

    def from_string(self, text: str) -> MacroArch:
        def fail(problem: str) -> InvalidArchitecture:
            return InvalidArchitecture(
                f"{self.name}: cannot parse {text!r}: {problem}; expected 'stem;cell:channels:stride:repeats;...', "
                f"e.g. {_MACRO_EXAMPLE}"
            )

        if not isinstance(text, str):
            raise fail(f"got a {type(text).__name__}, not a string")
        parts = text.strip().split(";")
        try:
            stem = int(parts[0])
            stages = []
            for part in parts[1:]:
                cell, c, s, r = part.rsplit(":", 3)
                stages.append(Stage(self.cell_space.from_string(cell), int(c), int(s), int(r)))
        except ValueError as e:
            raise fail(
                str(e) if isinstance(e, InvalidArchitecture) else "a field is missing or not an integer"
            ) from None
        arch = MacroArch(stem, tuple(stages))
        self.validate(arch)
        return arch

    # --- graph form ---------------------------------------------------------------------
    def to_graph(self, arch: MacroArch) -> tuple[list[str], np.ndarray]:
        self.validate(arch)
        arch = self._structure(arch)
        labels, blocks = [f"stem_c{arch.stem}"], []
        for cell, c, s, r in arch.stages:
            blocks.append(len(labels))
            labels += [f"stage_c{c}_s{s}_r{r}", *cell.ops[1:-1], CELL_OUTPUT]
        labels.append(OUTPUT)
        adjacency = np.zeros((len(labels), len(labels)), dtype=np.int64)
        previous = 0
        for start, stage in zip(blocks, arch.stages):
            k = len(stage.cell.ops)
            adjacency[previous, start] = 1
            adjacency[start : start + k, start : start + k] = stage.cell.adjacency
            previous = start + k - 1
        adjacency[previous, -1] = 1
        return labels, adjacency

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> MacroArch:
        labels, matrix = list(labels), np.asarray(adjacency)
        n = len(labels)
        if matrix.shape != (n, n) or not np.isin(matrix, (0, 1)).all() or n < 3:
            raise InvalidArchitecture(f"{self.name}: {n} labels need an {n}x{n} 0/1 adjacency, got {matrix.shape}")
        stem = _STEM.match(labels[0])
        if stem is None or labels[-1] != OUTPUT:
            raise InvalidArchitecture(
                f"{self.name}: graph must run from 'stem_c<C>' to {OUTPUT!r}, got {labels[0]!r}, {labels[-1]!r}"
            )
        stages, expected, i, previous = [], np.zeros_like(matrix), 1, 0
        while i < n - 1:
            header = _HEADER.match(labels[i])
            if header is None or CELL_OUTPUT not in labels[i + 1 :]:
                raise InvalidArchitecture(
                    f"{self.name}: node {i} is {labels[i]!r}; expected a 'stage_c<C>_s<S>_r<R>' header starting a "
                    f"block that ends in {CELL_OUTPUT!r}"
                )
            end = labels.index(CELL_OUTPUT, i + 1)
            block = matrix[i : end + 1, i : end + 1]
            cell = Cell(tuple(map(tuple, block.astype(np.int64).tolist())), (INPUT, *labels[i + 1 : end], OUTPUT))
            c, s, r = map(int, header.groups())
            stages.append(Stage(_pruned(cell), c, s, r))
            expected[previous, i] = 1
            expected[i : end + 1, i : end + 1] = block
            previous, i = end, end + 1
        expected[previous, n - 1] = 1
        if not np.array_equal(expected, matrix):
            raise InvalidArchitecture(
                f"{self.name}: graph has edges between stages other than the chain stem -> stage -> ... -> output"
            )
        arch = MacroArch(int(stem.group(1)), tuple(stages))
        self.validate(arch)
        return arch

    def allowed_ops(self) -> torch.Tensor:
        """Exact, by walking the graph: the stem, then after each count of stages every block
        a stage may add (header, its cell's op nodes, ``cell_output``), and the output after
        ``min_stages`` to ``max_stages`` of them."""
        return self._allowed.clone()

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> MacroArch:
        """Exact on graphs that already read as members (one-hot ones included); no repair is
        defined beyond that, because macro architectures are generated as token sequences that
        :class:`~nag.spaces.macro_tokens.MacroTokenizer`'s grammar keeps valid."""
        try:
            return super().project(x, a, node_mask)
        except InvalidArchitecture as e:
            raise InvalidArchitecture(
                f"{self.name}: cannot project a soft graph that does not read as a member ({e}); macro "
                "architectures are generated as token sequences (MacroTransformerModule), not repaired from graphs"
            ) from None

    @cached_property
    def _allowed(self) -> torch.Tensor:
        rows: list[set[str]] = [set() for _ in range(self.max_nodes)]
        rows[0] = {op for op in self.ops if _STEM.match(op)}
        blocks = self._stage_blocks()
        starts = {1}
        for count in range(1, self.max_stages + 1):
            ends = set()
            for start in starts:
                for block in blocks:
                    for offset, names in enumerate(block):
                        rows[start + offset] |= names
                    ends.add(start + len(block))
            starts = ends
            if count >= self.min_stages:
                for start in starts:
                    rows[start].add(OUTPUT)
        return self.allowed_table(rows)

    def _stage_blocks(self) -> list[list[set[str]]]:
        """For each block length a stage's graph can have, the ops each of its nodes may hold
        (over every cell of that size, in every topological order)."""
        if self.cells is None:
            bodies = [[set(CELL_OPS)] * k for k in range(1, MAX_OP_NODES + 1)]
        else:
            bodies = [_op_node_positions(cell) for cell in self.cells]
        merged: dict[int, list[set[str]]] = {}
        for body in bodies:
            union = merged.setdefault(len(body), [set() for _ in body])
            for names, ops in zip(union, body):
                names |= ops
        headers = {op for op in self.ops if _HEADER.match(op)}
        return [[headers, *body, {CELL_OUTPUT}] for body in merged.values()]

    # --- populations --------------------------------------------------------------------
    def _random_cell(self, rng: np.random.Generator) -> Cell:
        return self.cells[int(rng.integers(len(self.cells)))] if self.cells is not None else _sample_cell(rng)

    def sample(self, n: int, rng: np.random.Generator) -> list[MacroArch]:
        """Independent draws: stem, number of stages and every stage field uniform."""
        out = []
        for _ in range(n):
            k = int(rng.integers(self.min_stages, self.max_stages + 1))
            stem = self.stem_channels[int(rng.integers(len(self.stem_channels)))]
            stages = tuple(
                Stage(
                    self._random_cell(rng),
                    self.channels[int(rng.integers(len(self.channels)))],
                    self.strides[int(rng.integers(len(self.strides)))],
                    self.repeats[int(rng.integers(len(self.repeats)))],
                )
                for _ in range(k)
            )
            out.append(MacroArch(stem, stages))
        return out

    def neighbours(self, arch: MacroArch) -> list[MacroArch]:
        """One edit away, one per key: the stem width, or one stage's cell (any other vocabulary
        cell, or a :class:`CellSpace` neighbour without a vocabulary), width, stride or repeats;
        a stage removed; a stage appended (the last one's cell at the next wider channels)."""
        self.validate(arch)
        stem, stages = arch
        edits = [MacroArch(s, stages) for s in self.stem_channels if s != stem]
        for i, (cell, c, s, r) in enumerate(stages):
            cells = self.cells if self.cells is not None else self.cell_space.neighbours(cell)
            options = [Stage(x, c, s, r) for x in cells]
            options += [Stage(cell, x, s, r) for x in self.channels if x != c]
            options += [Stage(cell, c, x, r) for x in self.strides if x != s]
            options += [Stage(cell, c, s, x) for x in self.repeats if x != r]
            edits += [MacroArch(stem, (*stages[:i], o, *stages[i + 1 :])) for o in options]
            if len(stages) > self.min_stages:
                edits.append(MacroArch(stem, stages[:i] + stages[i + 1 :]))
        last = stages[-1]
        wider = [c for c in self.channels if c > last.channels]
        if len(stages) < self.max_stages:
            edits.append(
                MacroArch(
                    stem,
                    (*stages, Stage(last.cell, min(wider, default=last.channels), self.strides[-1], self.repeats[0])),
                )
            )
        seen, out = {self.key(arch)}, []
        for edit in edits:
            if self.is_valid(edit) and (k := self.key(edit)) not in seen:
                seen.add(k)
                out.append(edit)
        return out

    # --- cost and networks --------------------------------------------------------------
    def _walk(self, arch: MacroArch, num_classes: int, in_channels: int, input_size: int) -> tuple[int, int]:
        """Closed-form (params, MACs per image) of :meth:`to_module`'s network."""
        arch = self._structure(arch)
        width, size = arch.stem, input_size
        params = in_channels * width * 9 + 2 * width
        macs = size * size * in_channels * width * 9
        for cell, c, s, r in arch.stages:
            q, lp, lm = _cell_cost(cell)
            for k in range(r):
                stride = s if k == 0 else 1
                if width != c or stride != 1:
                    size = (size - 1) // stride + 1
                    params += width * c + 2 * c
                    macs += size * size * width * c
                params += q * c * c + lp * c
                macs += size * size * (q * c * c + lm * c)
                width = c
        return params + width * num_classes + num_classes, macs + width * num_classes

    def params(self, arch: MacroArch, num_classes: int = 10, in_channels: int = 3) -> int:
        """Exact parameter count of ``to_module(arch, num_classes, in_channels)`` (BN affine included)."""
        return self._walk(arch, num_classes, in_channels, 1)[0]

    def flops(self, arch: MacroArch, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> int:
        """Exact per-image FLOPs on ``input_size x input_size`` inputs, as
        ``torch.utils.flop_counter`` counts them (2 per conv/linear multiply-accumulate)."""
        return 2 * self._walk(arch, num_classes, in_channels, input_size)[1]

    def cost(self, arch: MacroArch, constraints: MacroConstraints) -> tuple[int, int]:
        """``(params, flops)`` of ``arch`` for the task of ``constraints``."""
        p, macs = self._walk(arch, constraints.num_classes, constraints.in_channels, constraints.input_size)
        return p, 2 * macs

    def satisfies(self, arch: MacroArch, constraints: MacroConstraints) -> bool:
        """Exact check of both budgets."""
        p, f = self.cost(arch, constraints)
        return p <= constraints.max_params and f <= constraints.max_flops

    def to_module(self, arch: MacroArch, num_classes: int = 10, in_channels: int = 3) -> torch.nn.Module:
        """The network (stem, cells, head); resolution-agnostic thanks to global pooling."""
        arch = self._structure(arch)
        stages = [(list(cell.ops), np.array(cell.adjacency), c, s, r) for cell, c, s, r in arch.stages]
        return HierarchicalNetwork(arch.stem, stages, num_classes, in_channels)

    def __repr__(self) -> str:
        vocabulary = "any cell" if self.cells is None else f"{len(self.cells)} cells"
        return f"MacroSpace({vocabulary}, channels={list(self.channels)}, max_stages={self.max_stages})"
