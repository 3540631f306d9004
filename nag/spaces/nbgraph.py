"""NAS-Bench-Graph: 4 GNN layers wired by a link pattern over the input (Qin et al., 2022)."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from nas_bench_graph.architecture import Arch as _BenchArch
from nas_bench_graph.architecture import gnn_list, gnn_list_proteins

from nag.errors import InvalidArchitecture
from nag.spaces.base import SearchSpace, argmax_unless_all

NUM_LAYERS = 4
ALL_OPS = tuple(gnn_list)
PROTEINS_OPS = tuple(gnn_list_proteins)

#: ``(links, ops)``: ``links[i]`` is the node layer ``i`` reads (0 = input, ``j`` = layer ``j``).
ArchGraph = tuple[tuple[int, int, int, int], tuple[str, str, str, str]]

_TOKEN = re.compile(r"^([a-z]+)~(\d+)$")


class NBGraphSpace(SearchSpace[ArchGraph]):
    """GNN macro space of NAS-Bench-Graph: each of 4 layers has one op and one input.

    Graph form: node 0 = input, nodes 1..4 = layers, node 5 = output, which sums the
    layers nothing else reads. Strings read ``op~src|op~src|op~src|op~src``, e.g.
    ``gcn~0|gat~1|skip~1|sage~2``. The canonical key is the benchmark's own hash, which
    also folds skip layers and symmetric branches, so 26,206 keys cover all 9^4 x 24 wirings.

    ``ops`` restricts the layer ops (``proteins`` was benchmarked on 5 of the 9 only).
    """

    name = "nbgraph"
    max_nodes = NUM_LAYERS + 2
    fixed_topology = False
    single_input = True

    def __init__(self, ops: Sequence[str] = ALL_OPS) -> None:
        unknown = [o for o in ops if o not in ALL_OPS]
        if unknown or not ops:
            raise InvalidArchitecture(
                f"nbgraph: unknown layer ops {unknown or list(ops)}; choose from {', '.join(ALL_OPS)}"
            )
        self.layer_ops = tuple(o for o in ALL_OPS if o in ops)
        self.ops = ("input", *self.layer_ops, "output")

    def __repr__(self) -> str:
        return f"NBGraphSpace(ops={list(self.layer_ops)})"

    def to_graph(self, arch: ArchGraph) -> tuple[list[str], np.ndarray]:
        links, ops = self.validate(arch)
        n = self.max_nodes
        adj = np.zeros((n, n), dtype=np.int64)
        for layer, src in enumerate(links, start=1):
            adj[src, layer] = 1
        for layer in range(1, NUM_LAYERS + 1):
            if layer not in links:
                adj[layer, n - 1] = 1
        return ["input", *ops, "output"], adj

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> ArchGraph:
        n = self.max_nodes
        if len(labels) != n or labels[0] != "input" or labels[-1] != "output":
            raise InvalidArchitecture(f"nbgraph: expected {n} nodes [input, 4 layers, output], got {list(labels)}")
        links = []
        for layer in range(1, NUM_LAYERS + 1):
            srcs = np.flatnonzero(adjacency[:layer, layer]).tolist()
            if len(srcs) != 1:
                raise InvalidArchitecture(f"nbgraph: layer {layer} must read exactly one earlier node, reads {srcs}")
            links.append(srcs[0])
        arch = (tuple(links), tuple(labels[1:-1]))
        expected = self.to_graph(arch)[1]
        if not np.array_equal(np.asarray(adjacency) != 0, expected != 0):
            raise InvalidArchitecture(
                "nbgraph: the output must read exactly the layers no other layer reads "
                f"(links {links}); got a different output wiring"
            )
        return arch

    def allowed_ops(self) -> torch.Tensor:
        """Input, any layer op at each layer (all four skip is ruled out by :meth:`project`), output."""
        return self.allowed_table([{"input"}, *[self.layer_ops] * NUM_LAYERS, {"output"}])

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> ArchGraph:
        """The nearest wiring: each layer reads its highest-scoring earlier node and takes its
        best layer op; if that makes all four skip, the layer that loses least computes instead.
        The output's edges follow from the links, so their scores are not read."""
        ops, edges, _ = self.soft_scores(x, a, node_mask)
        links = tuple(int(edges[:layer, layer].argmax()) for layer in range(1, NUM_LAYERS + 1))
        layers = ops[1:-1]
        choice = argmax_unless_all(layers, self.op_index("skip")) if "skip" in self.layer_ops else layers.argmax(-1)
        return self.validate((links, tuple(self.ops[i] for i in choice)))

    def validate(self, arch: ArchGraph) -> ArchGraph:
        try:
            links, ops = arch
            links, ops = tuple(links), tuple(ops)
        except (TypeError, ValueError):
            raise InvalidArchitecture(f"nbgraph: expected (links, ops), got {arch!r}") from None
        if len(links) != NUM_LAYERS or len(ops) != NUM_LAYERS:
            raise InvalidArchitecture(
                f"nbgraph: expected {NUM_LAYERS} layers, got {len(links)} links and {len(ops)} ops"
            )
        for layer, src in enumerate(links):
            if not isinstance(src, (int, np.integer)) or not 0 <= src <= layer:
                raise InvalidArchitecture(
                    f"nbgraph: layer {layer + 1} reads node {src!r}; it may read 0 (input) to {layer}"
                )
        for op in ops:
            if op not in self.layer_ops:
                raise InvalidArchitecture(
                    f"nbgraph: unknown layer op {op!r}; expected one of {', '.join(self.layer_ops)}"
                )
        if all(op == "skip" for op in ops):
            raise InvalidArchitecture("nbgraph: all four layers are skip; at least one must compute")
        return arch

    def key(self, arch: ArchGraph) -> str:
        links, ops = self.validate(arch)
        return _valid_hash(tuple(links), tuple(ops))

    def from_string(self, text: str) -> ArchGraph:
        tokens = text.strip().split("|") if isinstance(text, str) else []
        matches = [_TOKEN.match(t.strip()) for t in tokens]
        if len(tokens) != NUM_LAYERS or not all(matches):
            raise InvalidArchitecture(
                f"nbgraph: malformed architecture string {text!r}; expected 4 layers "
                "'op~src|op~src|op~src|op~src', e.g. 'gcn~0|gat~1|skip~1|sage~2'"
            )
        links = tuple(int(m.group(2)) for m in matches)
        ops = tuple(m.group(1) for m in matches)
        return self.validate((links, ops))

    def to_string(self, arch: ArchGraph) -> str:
        links, ops = self.validate(arch)
        return "|".join(f"{op}~{src}" for src, op in zip(links, ops))

    def sample(self, n: int, rng: np.random.Generator) -> list[ArchGraph]:
        out: list[ArchGraph] = []
        while len(out) < n:
            links = tuple(int(rng.integers(0, i + 1)) for i in range(NUM_LAYERS))
            ops = tuple(self.layer_ops[i] for i in rng.integers(0, len(self.layer_ops), NUM_LAYERS))
            if not all(op == "skip" for op in ops):
                out.append((links, ops))
        return out

    def neighbours(self, arch: ArchGraph) -> list[ArchGraph]:
        """One layer's op or one layer's input changed, one wiring per canonical key: edits
        that the benchmark's hash folds together (e.g. re-wiring a skip) would waste queries."""
        links, ops = self.validate(arch)
        edits = [(links, ops[:i] + (op,) + ops[i + 1 :]) for i in range(NUM_LAYERS) for op in self.layer_ops]
        edits += [(links[:i] + (src,) + links[i + 1 :], ops) for i in range(NUM_LAYERS) for src in range(i + 1)]
        seen, out = {self.key(arch)}, []
        for edit in edits:
            if any(op != "skip" for op in edit[1]) and (key := self.key(edit)) not in seen:
                seen.add(key)
                out.append(edit)
        return out

    @property
    def is_finite(self) -> bool:
        return True

    def enumerate(self) -> Iterator[ArchGraph]:
        """One representative per canonical key (26,206 with all 9 ops), in a fixed order."""
        return iter(representatives(self.layer_ops).values())


@functools.lru_cache(maxsize=4)
def representatives(layer_ops: tuple[str, ...]) -> dict[str, ArchGraph]:
    """Canonical key -> first wiring met with that key; cached because 9 datasets share it."""
    seen: dict[str, ArchGraph] = {}
    for links in itertools.product(*(range(i + 1) for i in range(NUM_LAYERS))):
        for ops in itertools.product(layer_ops, repeat=NUM_LAYERS):
            if any(op != "skip" for op in ops):
                seen.setdefault(str(_BenchArch(list(links), list(ops)).valid_hash()), (links, ops))
    return seen


@functools.cache
def _valid_hash(links: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """The benchmark's canonical hash, memoised: searches key the same 26k graphs every round
    (24 wirings x 9**4 op choices, about 157k entries at most)."""
    return str(_BenchArch(list(links), list(ops)).valid_hash())
