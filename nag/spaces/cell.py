"""General DAG cells, the micro level of the hierarchical space (:mod:`nag.spaces.macro`
stacks them in stages of a network).

Cells are op-on-node DAGs: ``input``, 1 to 6 op nodes from :data:`CELL_OPS`, ``output``; each
node sums its predecessors. Their cost model is :mod:`nag.spaces.costs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from nag.errors import InvalidArchitecture
from nag.nn.hierarchical_network import CELL_OPS as _OP_BUILDERS
from nag.nn.hierarchical_network import DAGCell
from nag.spaces.base import SearchSpace, cheapest_path, check_ops_matrix, format_ops_matrix, split_ops_matrix
from nag.spaces.costs import ops_cost

INPUT = "input"
OUTPUT = "output"
CELL_OPS: tuple[str, ...] = tuple(_OP_BUILDERS)
MAX_OP_NODES = 6

_RANK = {op: i for i, op in enumerate((INPUT, *CELL_OPS, OUTPUT))}
_CELL_EXAMPLE = "'input,conv3x3,dwsep5x5,output|0110,0001,0001,0000'"


class Cell(NamedTuple):
    """``adjacency[i][j] == 1`` when node ``i`` feeds node ``j`` (``i < j``); ``ops`` = node labels."""

    adjacency: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]


def _format_cell(cell: Cell) -> str:
    return format_ops_matrix(cell.ops, cell.adjacency)


def _checked_cell(arch: object) -> Cell:
    """``arch`` as a well-formed (not yet pruned) cell; raises on anything that is not one."""
    return Cell(*check_ops_matrix(arch, "cell:", "Cell", CELL_OPS, (3, MAX_OP_NODES + 2), _CELL_EXAMPLE))


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
    """Summed :data:`~nag.spaces.costs.OP_COST` of the pruned cell's op nodes."""
    return ops_cost(_pruned(arch).ops[1:-1])


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
    input_shape = (16, 32, 32)  # the cell's input channels at its default c_in
    ops = (INPUT, *CELL_OPS, OUTPUT)
    max_nodes = MAX_OP_NODES + 2
    #: input, one op node, output
    min_nodes = 3
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

        ops, rows = split_ops_matrix(text, fail)
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
