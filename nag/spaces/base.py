"""The search-space contract every generator, predictor and search loop is written against."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np
import torch

from nag.errors import InvalidArchitecture, NagError

Arch = TypeVar("Arch", bound=Hashable)


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

    @property
    def num_ops(self) -> int:
        return len(self.ops)

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
            x[i, np.arange(k), [index[o] if o in index else self.op_index(o) for o in labels]] = 1.0
            a[i, :k, :k] = adj
            mask[i, :k] = True
        return torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(mask)

    def decode(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> Arch:
        """Project a (possibly soft) ``(X, A)`` to an architecture: argmax per real node row,
        adjacency thresholded at 0.5, upper triangle only. Raises :class:`InvalidArchitecture`."""
        if x.shape != (self.max_nodes, self.num_ops) or a.shape != (self.max_nodes, self.max_nodes):
            raise InvalidArchitecture(
                f"{self.name}: expected X {(self.max_nodes, self.num_ops)} and A "
                f"{(self.max_nodes, self.max_nodes)}, got {tuple(x.shape)} and {tuple(a.shape)}"
            )
        x = x.detach().float().cpu().numpy()
        a = a.detach().float().cpu().numpy()
        mask = np.abs(x).sum(-1) > 0 if node_mask is None else node_mask.detach().cpu().numpy().astype(bool)
        n = int(mask.sum())
        if not mask[:n].all():
            raise InvalidArchitecture(f"{self.name}: real nodes must come first; got node mask {mask.tolist()}")
        labels = [self.ops[i] for i in x[:n].argmax(-1)]
        adj = (np.triu(a[:n, :n], k=1) > 0.5).astype(np.int64)
        return self.from_graph(labels, adj)

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
