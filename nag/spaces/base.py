"""The search-space contract every generator, predictor and search loop is written against."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np
import torch

from nag.errors import InvalidArchitecture, NagError

Arch = TypeVar("Arch", bound=Hashable)

#: Architectures the default :meth:`SearchSpace.allowed_ops` encodes: a (position, op) pair
#: with a chance of 1 in 500 per draw is missed once in about 3,600 spaces.
ALLOWED_OPS_SAMPLES = 4096


class SearchSpace(ABC, Generic[Arch]):
    """A set of architectures seen as DAGs with one op label per node.

    Graph form: ``X`` is a ``[max_nodes, num_ops]`` one-hot op matrix and ``A`` a
    ``[max_nodes, max_nodes]`` strictly upper-triangular adjacency in topological order
    (``A[i, j] = 1`` means node ``i`` feeds node ``j``). Spaces whose graphs have fewer
    nodes than ``max_nodes`` pad with all-zero rows; ``node_mask`` tells which are real.

    Architectures themselves are small immutable, hashable values (tuples) specific to
    each space; strings are the human/CSV form.
    """

    #: Short identifier stored in checkpoints so a model cannot be used on another space.
    name: str = ""
    #: Node labels, including ``input``/``output`` where the space has them.
    ops: tuple[str, ...] = ()
    max_nodes: int = 0
    #: True when every architecture has the same DAG and only node ops vary.
    fixed_topology: bool = True
    #: True when every node but the first and the last reads exactly one earlier node and the
    #: last reads every node no other reads (NB-Graph): a generator can then draw one source per
    #: node instead of free edges, and every wiring it draws is valid.
    single_input: bool = False
    #: An op that ends a run of positions (:meth:`stop_runs`): every later position of the run
    #: holds it too. None where the space has no such runs.
    stop_op: str | None = None
    #: At most this many edges in a graph (NB101: 9), a rule no single position can keep, so
    #: generators draw their edges within it (:func:`nag.diffusion.discrete.budgeted_presence`).
    #: None where the space has no such cap.
    max_edges: int | None = None
    #: One input of :meth:`to_module`'s networks without the batch dimension (what export traces
    #: and latency measurement feeds); None where the space builds no networks or needs it given.
    input_shape: tuple[int, ...] | None = None

    def __new__(cls, *args: object, **kwargs: object) -> SearchSpace:
        """Records the constructor's arguments, so :attr:`build_config` can rebuild this space from a
        checkpoint alone (``nag.load_generator``)."""
        space = super().__new__(cls)
        space._init_args = (args, kwargs)
        return space

    @property
    def build_config(self) -> dict:
        """``{"name", "init_args"}``: the registered name (:func:`nag.spaces.build_space`) and the
        arguments this instance was built with, as plain values (lists for tuples), so a
        weights-only checkpoint can hold them."""
        args, kwargs = getattr(self, "_init_args", ((), {}))
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs).arguments
        bound.pop("self", None)
        return {"name": self.name, "init_args": {k: _plain(v) for k, v in bound.items()}}

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def stop_runs(self) -> tuple[tuple[int, ...], ...]:
        """Runs of node positions that end at their first :attr:`stop_op` (OFA-MobileNetV3: a
        stage's slots end at its first ``skip``, which is the stage's depth). A generator reads
        every position of a run after its first stop as the stop op, so it draws where each run
        ends, slot by slot, instead of a free op per slot that could put a layer after a skip.
        Default: none."""
        return ()

    @property
    def min_nodes(self) -> int:
        """Nodes every graph of the space has: the positions below it are never padding, so a
        generator reads them as real nodes whatever it drew. Spaces whose graphs vary in size
        (and pad to ``max_nodes``) give their smallest graph's count."""
        return self.max_nodes

    @property
    def identity(self) -> dict:
        """What a checkpoint must match to be used with this space."""
        return {"name": self.name, "ops": list(self.ops), "max_nodes": self.max_nodes}

    # --- graph form -------------------------------------------------------------------
    @abstractmethod
    def to_graph(self, arch: Arch) -> tuple[list[str], np.ndarray]:
        """Node labels (topological order) and the ``n x n`` upper-triangular adjacency."""

    @abstractmethod
    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> Arch:
        """Inverse of :meth:`to_graph`; raises :class:`InvalidArchitecture`."""

    def encode(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X, A)`` padded to ``max_nodes``; padded rows of ``X`` are all zero."""
        x, a, _ = self.encode_batch([arch])
        return x[0], a[0]

    def encode_batch(self, archs: Sequence[Arch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense padded ``X [B, N, V]``, ``A [B, N, N]`` and node mask ``[B, N]`` for many archs."""
        b, n = len(archs), self.max_nodes
        x = np.zeros((b, n, self.num_ops), dtype=np.float32)
        a = np.zeros((b, n, n), dtype=np.float32)
        mask = np.zeros((b, n), dtype=bool)
        index = {op: i for i, op in enumerate(self.ops)}
        for i, arch in enumerate(archs):
            labels, adj = self.to_graph(arch)
            k = len(labels)
            if k < self.min_nodes:
                raise InvalidArchitecture(
                    f"{self.name}: a graph of {k} nodes is below the space's min_nodes {self.min_nodes}; "
                    "a space whose graphs vary in size sets min_nodes to its smallest graph's count"
                )
            x[i, np.arange(k), [index[o] if o in index else self.op_index(o) for o in labels]] = 1.0
            a[i, :k, :k] = adj
            mask[i, :k] = True
        return torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(mask)

    def _check_shapes(self, x: torch.Tensor, a: torch.Tensor) -> None:
        if x.shape != (self.max_nodes, self.num_ops) or a.shape != (self.max_nodes, self.max_nodes):
            raise InvalidArchitecture(
                f"{self.name}: expected X {(self.max_nodes, self.num_ops)} and A "
                f"{(self.max_nodes, self.max_nodes)}, got {tuple(x.shape)} and {tuple(a.shape)}"
            )

    def decode(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> Arch:
        """Project a (possibly soft) ``(X, A)`` to an architecture: argmax per real node row,
        adjacency thresholded at 0.5, upper triangle only. Raises :class:`InvalidArchitecture`.

        Strict on purpose: it measures how often a generator's raw samples are members;
        :meth:`project` is the repairing path."""
        ops, adj, mask = self._reading(x, a, node_mask)
        n = int(mask.sum())
        if not mask[:n].all():
            raise InvalidArchitecture(f"{self.name}: real nodes must come first; got node mask {mask.tolist()}")
        return self.from_graph([self.ops[i] for i in ops[:n]], adj[:n, :n])

    def _reading(
        self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What :meth:`decode` reads: each node's argmax op, the upper-triangle edges above 0.5
        and which nodes are real."""
        self._check_shapes(x, a)
        x = x.detach().float().cpu().numpy()
        a = a.detach().float().cpu().numpy()
        mask = np.abs(x).sum(-1) > 0 if node_mask is None else node_mask.detach().cpu().numpy().astype(bool)
        return x.argmax(-1), (np.triu(a, k=1) > 0.5).astype(np.int64), mask

    def changed_entries(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None, arch: Arch) -> int:
        """How many node labels (a node added or dropped counts once) and edges of the graph
        :meth:`decode` reads from ``(X, A)`` differ from ``arch``'s: what a repair changed."""
        ops, adj, mask = self._reading(x, a, node_mask)
        labels, target_adj = self.to_graph(arch)
        n = self.max_nodes
        read = np.where(mask, ops, -1)
        target = np.full(n, -1)
        target[: len(labels)] = [self.op_index(op) for op in labels]
        padded = np.zeros((n, n), dtype=np.int64)
        padded[: len(labels), : len(labels)] = np.triu(np.asarray(target_adj), k=1)
        adj = adj * mask[:, None] * mask[None, :]
        return int((read != target).sum() + (adj != padded).sum())

    # --- repair (generated samples) ----------------------------------------------------
    def allowed_ops(self) -> torch.Tensor:
        """Bool ``[max_nodes, num_ops]``: True where the op stands at that node position in the
        graph of some architecture. Generators mask the other classes when sampling and
        projecting, so no probability goes to labels no member has.

        This default is the union over a fixed draw of :data:`ALLOWED_OPS_SAMPLES`
        architectures (seed 0, computed once): exact unless some (position, op) pair is rare
        under :meth:`sample`, in which case the space overrides it with the exact table."""
        return self._sampled_allowed_ops.clone()

    @functools.cached_property
    def _sampled_allowed_ops(self) -> torch.Tensor:
        x, _, _ = self.encode_batch(self.sample(ALLOWED_OPS_SAMPLES, np.random.default_rng(0)))
        return (x != 0).any(0)

    @functools.cached_property
    def _allowed_mask(self) -> np.ndarray:
        """:meth:`allowed_ops` once per space (it is fixed), not once per projected sample."""
        return self.allowed_ops().numpy()

    def allowed_table(self, rows: Sequence[Collection[str]]) -> torch.Tensor:
        """An :meth:`allowed_ops` table from the op names each node position may hold (how
        spaces that know their exact table override it)."""
        table = torch.zeros(self.max_nodes, self.num_ops, dtype=torch.bool)
        for i, names in enumerate(rows):
            table[i, [self.op_index(op) for op in names]] = True
        return table

    def soft_scores(
        self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """What :meth:`project` decides from, in float64: op scores with the ops
        :meth:`allowed_ops` rules out at ``-inf`` (so an argmax never picks them), the strict
        upper triangle of the edge scores, and the number of real nodes (``node_mask``, else
        the non-zero rows of ``x``). Raises :class:`InvalidArchitecture` for wrong shapes or
        non-finite scores."""
        self._check_shapes(x, a)
        scores = x.detach().double().cpu().numpy()
        edges = a.detach().double().cpu().numpy()
        if not (np.isfinite(scores).all() and np.isfinite(edges).all()):
            raise InvalidArchitecture(
                f"{self.name}: the soft graph holds non-finite scores; project needs finite X and A"
            )
        mask = np.abs(scores).sum(-1) > 0 if node_mask is None else node_mask.detach().cpu().numpy().astype(bool)
        return np.where(self._allowed_mask, scores, -np.inf), np.triu(edges, k=1), int(mask.sum())

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> Arch:
        """The member of the space nearest to a soft ``(X, A)`` of any finite values, so that
        every generated sample is an architecture by construction. It is the identity on the
        one-hot graphs of members (``project(*encode(arch), mask) == arch``).

        This default takes each node's best allowed op and, unless the topology is fixed
        (then every node is real and the one graph is used), the edges scored above 0.5, and
        hands them to :meth:`from_graph`: it raises :class:`InvalidArchitecture` when that is
        no member, so a space with structural constraints overrides it to never raise."""
        ops, edges, n = self.soft_scores(x, a, node_mask)
        if self.fixed_topology:
            n, adjacency = self.max_nodes, self.fixed_adjacency()
        else:
            adjacency = (edges[:n, :n] > 0.5).astype(np.int64)
        return self.from_graph([self.ops[i] for i in ops[:n].argmax(-1)], adjacency)

    def fixed_adjacency(self) -> np.ndarray | None:
        """The one graph of a fixed-topology space (padded to ``max_nodes``), else None."""
        if not self.fixed_topology:
            return None
        _, adj, _ = self.encode_batch(self.sample(1, np.random.default_rng(0)))
        return adj[0].numpy()

    def op_index(self, op: str) -> int:
        try:
            return self.ops.index(op)
        except ValueError:
            raise InvalidArchitecture(
                f"{self.name}: unknown op {op!r}; expected one of {', '.join(self.ops)}"
            ) from None

    # --- identity ---------------------------------------------------------------------
    @abstractmethod
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` unchanged if it belongs to the space, else raise :class:`InvalidArchitecture`."""

    def decodes(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> bool:
        """Whether :meth:`decode` accepts ``(x, a)`` as it is: a generator's raw validity."""
        try:
            self.decode(x, a, node_mask)
        except InvalidArchitecture:
            return False
        return True

    def is_valid(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except InvalidArchitecture:
            return False
        return True

    @abstractmethod
    def key(self, arch: Arch) -> str:
        """Canonical key: equal for architectures that compute the same function (isomorphic)."""

    # --- strings ----------------------------------------------------------------------
    @abstractmethod
    def from_string(self, text: str) -> Arch:
        """Parse the human/CSV form; raises :class:`InvalidArchitecture` naming the problem."""

    @abstractmethod
    def to_string(self, arch: Arch) -> str: ...

    # --- populations ------------------------------------------------------------------
    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> list[Arch]:
        """``n`` valid architectures drawn (uniformly where practical) with ``rng``."""

    @property
    def is_finite(self) -> bool:
        """Whether :meth:`enumerate` is practical for this space."""
        return False

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture of the space, one per canonical key where the space defines it."""
        raise NagError(f"{self.name}: the space is too large to enumerate; use sample()")

    # --- networks -----------------------------------------------------------------------
    def to_module(self, arch: Arch, **kwargs) -> torch.nn.Module:
        """A runnable, freshly initialised network for ``arch`` whose ``forward`` returns logits
        (space-specific keyword arguments such as ``num_classes``)."""
        raise NagError(f"{self.name}: no network builder for this space; use a space with to_module()")

    # --- neighbourhoods (local search, evolution) ---------------------------------------
    def neighbours(self, arch: Arch) -> list[Arch]:
        """Architectures one edit away from ``arch`` (distinct, valid, ``arch`` itself excluded).

        What counts as one edit is space-specific, so there is no generic default.
        """
        raise NagError(f"{self.name}: no neighbourhood defined; implement neighbours() to use local search / evolution")

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """One random edit: a uniform draw from :meth:`neighbours`, so mutation and local
        search explore the same graph of architectures."""
        options = self.neighbours(arch)
        if not options:
            raise NagError(f"{self.name}: {self.to_string(arch)!r} has no neighbours to mutate into")
        return options[int(rng.integers(len(options)))]

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """A child mixing ``a`` and ``b`` choice by choice; spaces whose architectures are lists of
        independent choices define it (evolution falls back to mutation where one does not)."""
        raise NagError(f"{self.name}: no crossover defined; implement crossover() to recombine architectures")

    def input_shape_for(self, arch: Arch) -> tuple[int, ...] | None:
        """The input ``arch``'s network is meant for: :attr:`input_shape`, unless the architecture
        fixes its own (OFA-MobileNetV3 searches the image resolution)."""
        return self.input_shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def format_ops_matrix(ops: Sequence[str], adjacency: Sequence[Sequence[int]]) -> str:
    """The ``op,op,...|row,row,...`` string form of a DAG cell (one 0/1 row per node)."""
    return ",".join(ops) + "|" + ",".join("".join(str(v) for v in row) for row in adjacency)


def split_ops_matrix(text: object, fail: Callable[[str], InvalidArchitecture]) -> tuple[tuple[str, ...], list[str]]:
    """``(ops, rows)`` of an ``op,op,...|row,row,...`` string, stripped; the rows still to be
    checked. ``fail(problem)`` builds the error for a value that is no such string."""
    if not isinstance(text, str):
        raise fail(f"got a {type(text).__name__}, not a string")
    parts = text.strip().split("|")
    if len(parts) != 2:
        raise fail(f"found {len(parts) - 1} '|' separators instead of 1")
    return tuple(op.strip() for op in parts[0].split(",")), [row.strip() for row in parts[1].split(",")]


def describe_ops_matrix(arch: object) -> str:
    """A cell as it appears in error messages: its string form where it has one."""
    if isinstance(arch, tuple) and len(arch) == 2:
        try:
            return repr(format_ops_matrix(arch[1], arch[0]))
        except TypeError:
            pass
    return repr(arch)


def check_ops_matrix(
    arch: object, prefix: str, cell_type: str, ops: Collection[str], nodes: tuple[int, int], example: str
) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
    """``(adjacency, ops)`` of a well-formed (not yet pruned) op-on-node cell: a strictly
    upper-triangular 0/1 adjacency of tuples, ``input`` first, ``output`` last and op nodes
    from ``ops``, between ``nodes[0]`` and ``nodes[1]`` nodes in all. Every space with such
    cells checks them here, so their errors read alike: one line, ``prefix`` and the cell
    first, naming ``cell_type`` and ``example`` when the value is no cell at all."""
    what = describe_ops_matrix(arch)
    if not (isinstance(arch, tuple) and len(arch) == 2):
        raise InvalidArchitecture(
            f"{prefix} {what} is not a cell; expected {cell_type}(adjacency, ops) or a string like {example}"
        )
    adjacency, labels = arch
    if not (
        isinstance(labels, tuple) and isinstance(adjacency, tuple) and all(isinstance(row, tuple) for row in adjacency)
    ):
        raise InvalidArchitecture(
            f"{prefix} {what} must hold tuples (cells are hashable values); build it with "
            f"{cell_type}(tuple(map(tuple, adjacency)), tuple(ops))"
        )
    n, (fewest, most) = len(labels), nodes
    if not fewest <= n <= most:
        raise InvalidArchitecture(
            f"{prefix} {what} has {n} nodes; expected {fewest} to {most} "
            f"(input, {fewest - 2} to {most - 2} op nodes, output)"
        )
    if len(adjacency) != n or any(len(row) != n for row in adjacency):
        raise InvalidArchitecture(
            f"{prefix} {what} has {n} ops, so it needs a {n}x{n} adjacency; give one row and one column per node"
        )
    for i, row in enumerate(adjacency):
        for j, v in enumerate(row):
            if v not in (0, 1):
                raise InvalidArchitecture(f"{prefix} {what} has adjacency entry {v!r} at ({i}, {j}); expected 0 or 1")
            if v and j <= i:
                raise InvalidArchitecture(
                    f"{prefix} {what} has edge {i}->{j}; expected a strictly upper-triangular adjacency "
                    "(node i feeds node j only when i < j); order the nodes topologically"
                )
    if labels[0] != "input" or labels[-1] != "output":
        raise InvalidArchitecture(
            f"{prefix} {what} runs from {labels[0]!r} to {labels[-1]!r}; expected 'input' first and 'output' last"
        )
    for i, op in enumerate(labels[1:-1], start=1):
        if op not in ops:
            raise InvalidArchitecture(
                f"{prefix} {what} has unknown op {op!r} at node {i}; expected one of {', '.join(ops)}"
            )
    return tuple(tuple(int(v) for v in row) for row in adjacency), labels


def argmax_unless_all(scores: np.ndarray, banned: int) -> np.ndarray:
    """Per-row argmax of ``[nodes, ops]`` scores, except that when every row picks ``banned``
    (e.g. a network of nothing but skips) the row that loses least by it takes its best other
    op: the nearest labelling in which some node is not ``banned``."""
    choice = scores.argmax(-1)
    if (choice == banned).all():
        others = scores.copy()
        others[:, banned] = -np.inf
        row = int((others.max(-1) - scores[:, banned]).argmax())
        choice[row] = others[row].argmax()
    return choice


def cheapest_path(scores: np.ndarray, direct: bool = True) -> list[tuple[int, int]]:
    """Edges of the path from node 0 to the last node of an ``n x n`` edge-score matrix
    (topological order) that needs the least added score to clear 0.5, fewest edges on ties:
    the smallest change that connects a soft graph's input to its output. ``direct=False``
    leaves out the edge from the first node straight to the last one."""
    n = len(scores)
    cost = np.maximum(0.5 - scores, 0.0)
    best: list[tuple[float, int] | None] = [(0.0, 0)] + [None] * (n - 1)
    parent = [0] * n
    for j in range(1, n):
        for i in range(j):
            if best[i] is None or (not direct and (i, j) == (0, n - 1)):
                continue
            candidate = (best[i][0] + float(cost[i, j]), best[i][1] + 1)
            if best[j] is None or candidate < best[j]:
                best[j], parent[j] = candidate, i
    path, node = [], n - 1
    while node:
        path.append((parent[node], node))
        node = parent[node]
    return path[::-1]


def _plain(value: object) -> object:
    """Constructor arguments as checkpoint-safe plain values; anything else is refused so a
    space that cannot be rebuilt says so when its model is saved, not when it is loaded."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    raise NagError(f"search space argument {value!r} is not a plain value (str, number, list, dict)")
