"""NAS-Bench-101: cells of up to 7 nodes wired by an arbitrary DAG of at most 9 edges."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache, lru_cache
from itertools import combinations
from typing import NamedTuple

import numpy as np
import torch

from nag.errors import InvalidArchitecture
from nag.spaces.base import (
    SearchSpace,
    cheapest_path,
    check_ops_matrix,
    describe_ops_matrix,
    format_ops_matrix,
    split_ops_matrix,
)

INPUT = "input"
OUTPUT = "output"
#: The op-node choices, in NAS-Bench-101's order (their index is the hash label).
CELL_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
MAX_NODES = 7
MAX_EDGES = 9
#: Op codes of the benchmark tables (``nb101_1k.json``): ``-3`` pads cells to 7 nodes.
RECORD_OPS = {-1: INPUT, -2: OUTPUT, 0: CELL_OPS[0], 1: CELL_OPS[1], 2: CELL_OPS[2]}
RECORD_PAD = -3

_EXAMPLE = "'input,conv3x3-bn-relu,output|011,001,000'"


class NB101Cell(NamedTuple):
    """One cell: ``adjacency[i][j] == 1`` when node ``i`` feeds node ``j`` (``i < j``)."""

    adjacency: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]


def _checked(arch: object) -> NB101Cell:
    """``arch`` as a well-formed (not yet pruned) cell; raises on anything that is not one."""
    return NB101Cell(*check_ops_matrix(arch, "nb101: cell", "NB101Cell", CELL_OPS, (2, MAX_NODES), _EXAMPLE))


def _on_path(adjacency: np.ndarray) -> list[int] | None:
    """Nodes on some input->output path (ModelSpec pruning), or None when there is no such path."""
    n = len(adjacency)
    forward, stack = {0}, [0]
    while stack:
        u = stack.pop()
        for v in np.flatnonzero(adjacency[u]).tolist():
            if v not in forward:
                forward.add(v)
                stack.append(v)
    if n - 1 not in forward:
        return None
    backward, stack = {n - 1}, [n - 1]
    while stack:
        u = stack.pop()
        for v in np.flatnonzero(adjacency[:, u]).tolist():
            if v not in backward:
                backward.add(v)
                stack.append(v)
    return sorted(forward & backward)


def _live_edges(adjacency: np.ndarray) -> int:
    """Edges left after pruning (0 when no input->output path): what the 9-edge limit counts."""
    keep = _on_path(adjacency)
    return 0 if keep is None else int(adjacency[np.ix_(keep, keep)].sum())


def _repaired_wiring(scores: np.ndarray) -> np.ndarray:
    """The nearest legal adjacency to ``n x n`` edge scores: the 9 best edges above 0.5 (with
    the cheapest input->output path in place of the weakest when they leave the output
    unreachable), then each further edge above 0.5, by score, that keeps the pruned cell
    within 9 edges, as pruning frees what dead edges took."""
    n = len(scores)
    pairs = [(int(i), int(j)) for i, j in zip(*np.triu_indices(n, k=1))]
    ranked = [e for e in sorted(pairs, key=lambda e: -scores[e]) if scores[e] > 0.5]
    chosen = ranked[:MAX_EDGES]
    if _on_path(_adjacency(chosen, n)) is None:
        path = cheapest_path(scores)
        chosen = path + [e for e in ranked if e not in path][: MAX_EDGES - len(path)]
    adjacency = _adjacency(chosen, n)
    for edge in ranked:
        trial = adjacency.copy()
        trial[edge] = 1
        if _live_edges(trial) <= MAX_EDGES:
            adjacency = trial
    return adjacency


def _adjacency(edges: list[tuple[int, int]], n: int) -> np.ndarray:
    adjacency = np.zeros((n, n), dtype=np.int64)
    for edge in edges:
        adjacency[edge] = 1
    return adjacency


def _pruned(arch: object) -> NB101Cell:
    """The cell NAS-Bench-101 actually trains: nodes off every input->output path removed."""
    cell = _checked(arch)
    adjacency = np.array(cell.adjacency, dtype=np.int64)
    keep = _on_path(adjacency)
    if keep is None:
        raise InvalidArchitecture(
            f"nb101: cell {describe_ops_matrix(cell)} has no path from input to output; "
            "connect the input to the output through the op nodes"
        )
    adjacency = adjacency[np.ix_(keep, keep)]
    edges = int(adjacency.sum())
    if edges > MAX_EDGES:
        raise InvalidArchitecture(
            f"nb101: cell {describe_ops_matrix(cell)} has {edges} edges after pruning; expected at most {MAX_EDGES}; "
            f"remove {edges - MAX_EDGES}"
        )
    return NB101Cell(tuple(map(tuple, adjacency.tolist())), tuple(cell.ops[i] for i in keep))


@cache
def _path_complete_adjacencies(n: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Every ``n``-node adjacency of at most 9 edges that pruning leaves intact. In topological
    order a node lies on an input->output path exactly when every node but the input has a
    predecessor and every node but the output a successor, so columns are built one at a time
    as non-empty predecessor sets."""
    found: list[tuple[tuple[int, ...], ...]] = []

    def extend(columns: list[tuple[int, ...]], edges: int) -> None:
        j = len(columns) + 1
        if j == n:
            if {i for col in columns for i in col} == set(range(n - 1)):
                found.append(tuple(tuple(int(c > i and i in columns[c - 1]) for c in range(n)) for i in range(n)))
            return
        for size in range(1, min(j, MAX_EDGES - edges - (n - 1 - j)) + 1):
            for predecessors in combinations(range(j), size):
                extend([*columns, predecessors], edges + size)

    extend([], 0)
    return tuple(found)


@lru_cache(maxsize=1 << 16)
def _graph_hash(cell: NB101Cell) -> str:
    """nasbench ``graph_util.hash_module``: iterated md5 of (out-degree, in-degree, label)."""
    adjacency, n = cell.adjacency, len(cell.ops)
    labels = [-1] + [CELL_OPS.index(op) for op in cell.ops[1:-1]] + [-2]
    in_degree = [sum(adjacency[i][j] for i in range(n)) for j in range(n)]
    out_degree = [sum(row) for row in adjacency]
    hashes = [hashlib.md5(str(h).encode("utf-8")).hexdigest() for h in zip(out_degree, in_degree, labels)]
    for _ in range(n):
        hashes = [
            hashlib.md5(
                (
                    "".join(sorted(hashes[w] for w in range(n) if adjacency[w][v]))
                    + "|"
                    + "".join(sorted(hashes[w] for w in range(n) if adjacency[v][w]))
                    + "|"
                    + hashes[v]
                ).encode("utf-8")
            ).hexdigest()
            for v in range(n)
        ]
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


@lru_cache(maxsize=1 << 14)
def _neighbours(cell: NB101Cell) -> tuple[NB101Cell, ...]:
    """:meth:`NB101Space.neighbours` of a pruned cell; cached because evolution mutates the same
    parent many times when its children fall outside a small table (e.g. the 1k subset)."""
    adjacency, ops, n = np.array(cell.adjacency, dtype=np.int64), cell.ops, len(cell.ops)
    edits: list[tuple[np.ndarray, tuple[str, ...]]] = []
    for i, j in zip(*np.triu_indices(n, k=1)):
        flipped = adjacency.copy()
        flipped[i, j] ^= 1
        edits.append((flipped, ops))
    edits += [(adjacency, (*ops[:i], op, *ops[i + 1 :])) for i in range(1, n - 1) for op in CELL_OPS]
    if n < MAX_NODES:
        for i, j in np.argwhere(adjacency).tolist():
            split = np.insert(np.insert(adjacency, j, 0, axis=0), j, 0, axis=1)
            split[i, j + 1], split[i, j], split[j, j + 1] = 0, 1, 1
            edits += [(split, (*ops[:j], op, *ops[j:])) for op in CELL_OPS]
    seen, out = {_graph_hash(cell)}, []
    for matrix, labels in edits:
        try:
            neighbour = _pruned(NB101Cell(tuple(map(tuple, matrix.tolist())), labels))
        except InvalidArchitecture:
            continue
        if (key := _graph_hash(neighbour)) not in seen:
            seen.add(key)
            out.append(neighbour)
    return tuple(out)


class NB101Space(SearchSpace[NB101Cell]):
    """NAS-Bench-101 cells (Ying et al., 2019): input, up to 5 op nodes, output; at most 9 edges.

    Architectures are :class:`NB101Cell` tuples ``(adjacency, ops)``. Like NAS-Bench-101's
    ``ModelSpec``, a cell may carry nodes that lie on no input->output path; they are pruned
    before anything is measured, so :meth:`validate` checks the pruned cell (including the
    9-edge limit) and :meth:`key` hashes it. Everything this space builds (``from_string``,
    ``from_graph``/``decode``, ``sample``, ``from_benchmark_record``) returns the pruned cell,
    and ``to_graph``/``encode`` give the pruned cell, zero-padded to 7 nodes.

    String form: op names joined by ``,``, then ``|``, then one 0/1 adjacency row per node
    joined by ``,`` -- e.g. ``input,conv3x3-bn-relu,output|011,001,000``.
    """

    name = "nb101"
    ops = (INPUT, *CELL_OPS, OUTPUT)
    max_nodes = MAX_NODES
    #: input -> output
    min_nodes = 2
    max_edges = MAX_EDGES
    fixed_topology = False

    def to_graph(self, arch: NB101Cell) -> tuple[list[str], np.ndarray]:
        cell = _pruned(arch)
        return list(cell.ops), np.array(cell.adjacency, dtype=np.int64)

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> NB101Cell:
        matrix = np.asarray(adjacency)
        if matrix.shape != (len(labels), len(labels)):
            raise InvalidArchitecture(
                f"nb101: {len(labels)} node labels need a {len(labels)}x{len(labels)} adjacency, "
                f"got shape {matrix.shape}; pass one row and column per node"
            )
        if not np.isin(matrix, (0, 1)).all():
            bad = sorted(set(matrix.ravel().tolist()) - {0, 1})
            raise InvalidArchitecture(
                f"nb101: adjacency for {list(labels)} has entries {bad}; "
                "expected 0 or 1 (threshold soft adjacencies first)"
            )
        return _pruned(NB101Cell(tuple(map(tuple, matrix.astype(np.int64).tolist())), tuple(labels)))

    def validate(self, arch: NB101Cell) -> NB101Cell:
        _pruned(arch)
        return arch

    def allowed_ops(self) -> torch.Tensor:
        """Input first; the output may close a cell at any later position (a 2-node cell puts it
        at position 1), so positions 1 to 5 hold an op or the output and position 6 the output.
        Exact, unlike a sample: 2-node cells are a vanishing share of uniform draws."""
        return self.allowed_table([{INPUT}, *[{*CELL_OPS, OUTPUT}] * (MAX_NODES - 2), {OUTPUT}])

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> NB101Cell:
        """The nearest cell: the node mask's count of nodes (2 to 7), input, each op node's best
        op, output, wired by :func:`_repaired_wiring`; returned pruned, like every cell here."""
        ops, edges, n = self.soft_scores(x, a, node_mask)
        n = min(max(n, 2), MAX_NODES)
        best = ops[1 : n - 1, [self.op_index(op) for op in CELL_OPS]].argmax(-1)
        labels = (INPUT, *(CELL_OPS[i] for i in best), OUTPUT)
        return self.from_graph(labels, _repaired_wiring(edges[:n, :n]))

    def prune(self, arch: NB101Cell) -> NB101Cell:
        """The cell without nodes that lie on no input->output path (what NAS-Bench-101 trains)."""
        return _pruned(arch)

    def key(self, arch: NB101Cell) -> str:
        """The official NAS-Bench-101 hash of the pruned cell (the ``key`` of the benchmark tables)."""
        return _graph_hash(_pruned(arch))

    def to_string(self, arch: NB101Cell) -> str:
        """The string form of ``arch`` as given (not pruned); raises for non-members."""
        adjacency, ops = self.validate(arch)
        return format_ops_matrix(ops, adjacency)

    def from_string(self, text: str) -> NB101Cell:
        def fail(problem: str) -> InvalidArchitecture:
            return InvalidArchitecture(
                f"nb101: cannot parse {text!r}: {problem}; expected ops joined by ',', then '|', "
                f"then one 0/1 row per node, e.g. {_EXAMPLE}"
            )

        ops, rows = split_ops_matrix(text, fail)
        if len(rows) != len(ops):
            raise fail(f"{len(ops)} ops but {len(rows)} adjacency rows")
        for i, row in enumerate(rows):
            if len(row) != len(ops) or set(row) - {"0", "1"}:
                raise fail(f"row {i} is {row!r}, not {len(ops)} characters of 0/1")
        return _pruned(NB101Cell(tuple(tuple(int(c) for c in row) for row in rows), ops))

    def sample(self, n: int, rng: np.random.Generator) -> list[NB101Cell]:
        """``n`` independent draws, uniform over pruned labelled cells (an adjacency in
        topological order plus ops). Pruning random 7-node matrices, as NASLib does, gives
        7-node cells in well under 1% of draws though they are most of the space (84% of
        nb101_1k); isomorphism classes with more valid node orders stay likelier here."""
        sizes = np.arange(2, MAX_NODES + 1)
        counts = np.array([len(_path_complete_adjacencies(int(k))) for k in sizes])
        weights = counts * 3.0 ** (sizes - 2)
        picked = rng.choice(sizes, size=n, p=weights / weights.sum()).tolist()
        which = rng.random(n)
        ops = rng.integers(0, len(CELL_OPS), size=(n, MAX_NODES - 2)).tolist()
        return [
            NB101Cell(
                _path_complete_adjacencies(k)[int(u * counts[k - 2])],
                (INPUT, *(CELL_OPS[o] for o in row[: k - 2]), OUTPUT),
            )
            for k, u, row in zip(picked, which.tolist(), ops)
        ]

    def neighbours(self, arch: NB101Cell) -> list[NB101Cell]:
        """Pruned cells one edit from ``arch``'s pruned cell, one per graph hash: an edge of the
        upper triangle flipped, an op node's op changed, or (below 7 nodes) an edge split by a
        new op node -- without splits a pruned cell could shrink but never grow."""
        return list(_neighbours(_pruned(arch)))

    @staticmethod
    def from_benchmark_record(adjacency: Sequence[Sequence[float]], operations: Sequence[int]) -> NB101Cell:
        """A cell from the tables' integer form: a 7x7 0/1 matrix and op codes (-1 input,
        -2 output, 0/1/2 by :data:`CELL_OPS`), padded at the end with op code -3."""
        try:
            codes = [int(c) for c in operations]
            matrix = np.asarray(adjacency, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArchitecture(
                f"nb101: record ({adjacency!r}, {operations!r}) is not a 0/1 matrix with integer op codes"
            ) from None
        n = codes.index(RECORD_PAD) if RECORD_PAD in codes else len(codes)
        if matrix.shape != (len(codes), len(codes)):
            raise InvalidArchitecture(
                f"nb101: record adjacency of shape {matrix.shape} does not match {len(codes)} op codes; "
                "expected a square matrix with one row per op code"
            )
        if any(c != RECORD_PAD for c in codes[n:]) or matrix[n:].any() or matrix[:, n:].any():
            raise InvalidArchitecture(
                f"nb101: record ops {codes} pad with {RECORD_PAD} before the end or wire padded nodes; "
                "padding must be trailing and edge-free"
            )
        unknown = [c for c in codes[:n] if c not in RECORD_OPS]
        if unknown:
            raise InvalidArchitecture(
                f"nb101: record ops {codes} contain unknown codes {unknown}; expected -1 input, -2 output, "
                f"0/1/2 for {', '.join(CELL_OPS)}, {RECORD_PAD} padding"
            )
        if not np.isin(matrix, (0, 1)).all():
            raise InvalidArchitecture(f"nb101: record adjacency for ops {codes} has entries other than 0/1")
        return _pruned(
            NB101Cell(
                tuple(map(tuple, matrix[:n, :n].astype(np.int64).tolist())),
                tuple(RECORD_OPS[c] for c in codes[:n]),
            )
        )
