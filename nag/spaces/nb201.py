"""NAS-Bench-201: a fixed 4-node cell whose 6 edges each carry one of 5 ops."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from nag.errors import InvalidArchitecture
from nag.nn.nb201_network import NB201Network
from nag.spaces.base import SearchSpace

EDGE_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Cell edges (source, target) in the order they appear in the architecture string.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
CELL_OUTPUT = 3

Arch201 = tuple[str, str, str, str, str, str]

_STRING = re.compile(r"^\|([^|]+)\|\+\|([^|]+)\|([^|]+)\|\+\|([^|]+)\|([^|]+)\|([^|]+)\|$")


def _edge_node_adjacency() -> np.ndarray:
    """Adjacency of the op-on-node DAG, derived from what each edge computes.

    Nodes: 0 = cell input, 1..6 = the six edges in string order, 7 = cell output. Edge
    ``(j -> i)`` feeds every edge leaving cell node ``i``; edges leaving cell node 0 read
    the input; edges entering the last cell node feed the output.
    """
    n = len(EDGES) + 2
    adj = np.zeros((n, n), dtype=np.int64)
    for a, (_, dst) in enumerate(EDGES, start=1):
        for b, (src, _) in enumerate(EDGES, start=1):
            if src == dst:
                adj[a, b] = 1
        if dst == CELL_OUTPUT:
            adj[a, n - 1] = 1
    for b, (src, _) in enumerate(EDGES, start=1):
        if src == 0:
            adj[0, b] = 1
    return adj


class NB201Space(SearchSpace[Arch201]):
    """The 15,625 NAS-Bench-201 cells in op-on-node form (input, 6 edge ops, output).

    Architectures are 6-tuples of edge ops in string order; strings are the benchmark's
    ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
    """

    name = "nb201"
    input_shape = (3, 32, 32)
    ops = ("input", *EDGE_OPS, "output")
    max_nodes = len(EDGES) + 2
    fixed_topology = True
    _adjacency = _edge_node_adjacency()

    def to_graph(self, arch: Arch201) -> tuple[list[str], np.ndarray]:
        self.validate(arch)
        return ["input", *arch, "output"], self._adjacency.copy()

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> Arch201:
        if len(labels) != self.max_nodes:
            raise InvalidArchitecture(
                f"nb201: expected {self.max_nodes} nodes (input, 6 edge ops, output), got {len(labels)}"
            )
        if labels[0] != "input" or labels[-1] != "output":
            raise InvalidArchitecture(f"nb201: first/last nodes must be input/output, got {labels[0]!r}/{labels[-1]!r}")
        return self.validate(tuple(labels[1:-1]))

    def allowed_ops(self) -> torch.Tensor:
        """Input, an edge op at each of the 6 edge nodes, output. The base :meth:`project`
        (best allowed op per node on the fixed graph) already never fails here."""
        return self.allowed_table([{"input"}, *[EDGE_OPS] * len(EDGES), {"output"}])

    def validate(self, arch: Arch201) -> Arch201:
        if not isinstance(arch, tuple) or len(arch) != len(EDGES):
            raise InvalidArchitecture(f"nb201: expected a tuple of {len(EDGES)} edge ops, got {arch!r}")
        for op in arch:
            if op not in EDGE_OPS:
                raise InvalidArchitecture(f"nb201: unknown edge op {op!r}; expected one of {', '.join(EDGE_OPS)}")
        return arch

    def key(self, arch: Arch201) -> str:
        """NAS-Bench-201's isomorphism key (``to_unique_str(consider_zero=True)``).

        ``none`` edges contribute zero (``#``), ``skip_connect`` passes its input through, and
        the inputs of each node are summed in sorted order, so cells computing the same
        function share a key; this gives the benchmark's 6,466 classes.
        """
        self.validate(arch)
        nodes = {0: "0"}
        for dst in range(1, CELL_OUTPUT + 1):
            terms = []
            for (src, d), op in zip(EDGES, arch):
                if d != dst:
                    continue
                if op == "none" or nodes[src] == "#":
                    terms.append("#")
                elif op == "skip_connect":
                    terms.append(nodes[src])
                else:
                    terms.append(f"({nodes[src]})@{op}")
            nodes[dst] = "+".join(sorted(terms))
        return nodes[CELL_OUTPUT]

    def from_string(self, text: str) -> Arch201:
        m = _STRING.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise InvalidArchitecture(
                f"nb201: malformed architecture string {text!r}; expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
            )
        ops = []
        for token, (src, _) in zip(m.groups(), EDGES):
            op, sep, idx = token.partition("~")
            if not sep or idx != str(src):
                raise InvalidArchitecture(
                    f"nb201: edge {token!r} in {text!r} should read '<op>~{src}' (its source node)"
                )
            ops.append(op)
        return self.validate(tuple(ops))

    def to_string(self, arch: Arch201) -> str:
        a = self.validate(arch)
        return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*a)

    def sample(self, n: int, rng: np.random.Generator) -> list[Arch201]:
        idx = rng.integers(0, len(EDGE_OPS), size=(n, len(EDGES)))
        return [tuple(EDGE_OPS[i] for i in row) for row in idx.tolist()]

    def neighbours(self, arch: Arch201) -> list[Arch201]:
        """The 24 cells with one edge op changed. Isomorphic cells are kept: the benchmark
        trained each cell separately, so they are distinct rows with their own values."""
        self.validate(arch)
        return [arch[:i] + (op,) + arch[i + 1 :] for i in range(len(EDGES)) for op in EDGE_OPS if op != arch[i]]

    def to_module(
        self, arch: Arch201, num_classes: int = 10, in_channels: int = 3, C: int = 16, N: int = 5
    ) -> torch.nn.Module:
        """The benchmark's network for ``arch`` (stem, 3 stages of ``N`` cells of width ``C``,
        ``2C``, ``4C``); with the defaults its parameter count is the table's ``cifar10_params_M``."""
        return NB201Network(self.validate(arch), num_classes=num_classes, in_channels=in_channels, C=C, N=N)

    @property
    def is_finite(self) -> bool:
        return True

    def enumerate(self) -> Iterator[Arch201]:
        """All 15,625 cells (product order; the benchmark's own index order is a table column)."""
        for rev in itertools.product(EDGE_OPS, repeat=len(EDGES)):
            yield tuple(reversed(rev))
