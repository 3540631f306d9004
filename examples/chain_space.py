"""A tutorial search space: a plain chain of conv/pool layers (walk-through in
``docs/new_search_space.md``).

Nothing inside ``nag`` is edited to use it: ``examples/chain.yaml`` names these classes by
import path (``chain_space.ChainSpace``), which resolves once ``examples/`` is on
``PYTHONPATH``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from nag.benchmarks import Benchmark
from nag.errors import InvalidArchitecture
from nag.spaces import SearchSpace, register_space
from nag.spaces.base import argmax_unless_all

LAYER_OPS = ("conv3x3", "conv1x1", "maxpool3x3", "avgpool3x3", "skip")
#: Ops that look at a 3x3 window, so each widens the receptive field by 2 pixels.
WIDENING = ("conv3x3", "maxpool3x3", "avgpool3x3")

Chain = tuple[str, ...]


@register_space  # so nag.load_generator rebuilds it from a checkpoint
class ChainSpace(SearchSpace[Chain]):
    """``depth`` layers in a row after a 3x3 stem, each one of :data:`LAYER_OPS`, at a fixed
    width of ``channels``; a global pool and a linear classifier close the network.

    String form: ops joined by ``>``, e.g. ``conv3x3>skip>maxpool3x3>conv1x1``. Graph form: the
    chain ``input -> layer 1 -> ... -> layer depth -> output`` (one topology; only ops vary).
    A ``skip`` layer is the identity, so the canonical key drops skips: ``conv3x3>skip`` and
    ``skip>conv3x3`` are one network, which novelty and uniqueness must count once.
    """

    name = "chain"
    fixed_topology = True

    def __init__(self, depth: int = 4, channels: int = 16, num_classes: int = 10) -> None:
        if depth < 1 or channels < 1 or num_classes < 1:
            raise InvalidArchitecture(
                f"chain: depth, channels and num_classes must be positive, got {depth}, {channels}, {num_classes}"
            )
        self.depth, self.channels, self.num_classes = depth, channels, num_classes
        self.ops = ("input", *LAYER_OPS, "output")
        self.max_nodes = depth + 2

    def __repr__(self) -> str:
        return f"ChainSpace(depth={self.depth}, channels={self.channels}, num_classes={self.num_classes})"

    # --- graph form -------------------------------------------------------------------
    def to_graph(self, arch: Chain) -> tuple[list[str], np.ndarray]:
        self.validate(arch)
        return ["input", *arch, "output"], np.eye(self.max_nodes, k=1, dtype=np.int64)

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> Chain:
        if len(labels) != self.max_nodes or labels[0] != "input" or labels[-1] != "output":
            raise InvalidArchitecture(
                f"chain: expected {self.max_nodes} nodes [input, {self.depth} layers, output], got {list(labels)}"
            )
        if not np.array_equal(np.asarray(adjacency) != 0, np.eye(self.max_nodes, k=1, dtype=bool)):
            raise InvalidArchitecture("chain: every node must feed exactly the next one")
        return self.validate(tuple(labels[1:-1]))

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> Chain:
        """The nearest chain to a generated soft graph: each layer's best op, except that when
        all are skip the layer that loses least computes instead; the topology is fixed, so
        edge scores are not read. (``allowed_ops`` is the base default: a sample shows every
        layer op at every layer.)"""
        ops, _, _ = self.soft_scores(x, a, node_mask)
        return self.validate(tuple(self.ops[i] for i in argmax_unless_all(ops[1:-1], self.op_index("skip"))))

    # --- identity ---------------------------------------------------------------------
    def validate(self, arch: Chain) -> Chain:
        if not isinstance(arch, tuple) or len(arch) != self.depth:
            raise InvalidArchitecture(f"chain: expected a tuple of {self.depth} layer ops, got {arch!r}")
        for op in arch:
            if op not in LAYER_OPS:
                raise InvalidArchitecture(f"chain: unknown layer op {op!r}; expected one of {', '.join(LAYER_OPS)}")
        if all(op == "skip" for op in arch):
            raise InvalidArchitecture("chain: every layer is skip; at least one must compute")
        return arch

    def key(self, arch: Chain) -> str:
        return ">".join(op for op in self.validate(arch) if op != "skip")

    # --- strings ----------------------------------------------------------------------
    def from_string(self, text: str) -> Chain:
        if not isinstance(text, str) or text.count(">") != self.depth - 1:
            raise InvalidArchitecture(
                f"chain: malformed architecture string {text!r}; expected {self.depth} ops joined by '>', "
                "e.g. 'conv3x3>skip>maxpool3x3>conv1x1'"
            )
        return self.validate(tuple(op.strip() for op in text.split(">")))

    def to_string(self, arch: Chain) -> str:
        return ">".join(self.validate(arch))

    # --- populations ------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> list[Chain]:
        out: list[Chain] = []
        while len(out) < n:
            arch = tuple(LAYER_OPS[i] for i in rng.integers(0, len(LAYER_OPS), self.depth))
            if self.is_valid(arch):
                out.append(arch)
        return out

    def neighbours(self, arch: Chain) -> list[Chain]:
        """One layer's op changed (for evolution and local search)."""
        self.validate(arch)
        edits = [arch[:i] + (op,) + arch[i + 1 :] for i in range(self.depth) for op in LAYER_OPS if op != arch[i]]
        return [e for e in edits if self.is_valid(e)]

    @property
    def is_finite(self) -> bool:
        return True

    def enumerate(self) -> Iterator[Chain]:
        """One chain per canonical key (the first met in product order)."""
        seen: set[str] = set()
        for arch in itertools.product(LAYER_OPS, repeat=self.depth):
            if self.is_valid(arch) and (key := self.key(arch)) not in seen:
                seen.add(key)
                yield arch

    # --- networks ---------------------------------------------------------------------
    def to_module(self, arch: Chain) -> nn.Module:
        """The runnable network for 3-channel images (any size >= 1 pixel)."""
        c = self.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        for op in self.validate(arch):
            if op.startswith("conv"):
                k = int(op[4])
                layers += [nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            elif op == "maxpool3x3":
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))
            elif op == "avgpool3x3":
                layers.append(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, self.num_classes)]
        return nn.Sequential(*layers)

    def receptive_field(self, arch: Chain) -> int:
        """Pixels of the input one output position sees: the 3x3 stem plus 2 per 3x3 layer."""
        return 3 + 2 * sum(op in WIDENING for op in self.validate(arch))


class ChainBenchmark(Benchmark[Chain]):
    """Exact, computed (not trained) properties of every chain, so the example needs no download:
    ``params`` counted on the built network (minimised) and ``receptive_field`` in pixels.
    A real benchmark would read measured accuracies from a table instead."""

    minimize = frozenset({"params"})

    def __init__(self, space: ChainSpace | None = None) -> None:
        self.space = space or ChainSpace()
        archs = list(self.space.enumerate())
        with torch.device("meta"):  # shapes only: counting parameters needs no memory or init
            params = [sum(p.numel() for p in self.space.to_module(a).parameters()) for a in archs]
        self._set_table(archs, {"params": params, "receptive_field": [self.space.receptive_field(a) for a in archs]})
