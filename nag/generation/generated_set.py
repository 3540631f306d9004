"""Decoded samples of a generator, in sampling order, with what was wrong before projection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from nag.errors import InvalidArchitecture
from nag.spaces.base import Arch, SearchSpace


@dataclass
class GeneratedSet:
    """Samples in sampling order. ``archs`` are what the space's ``project`` made of each raw
    graph (``None`` with the reason in ``errors`` where even that failed, so failures are
    counted, never dropped); ``raw_valid`` says which graphs were valid as sampled, before any
    repair; ``changed`` how many node labels and edges projection changed in each (0 where
    none was needed, -1 where it failed or was not measured); ``unread`` how many positions of each
    sample the space's layout read otherwise than drawn (after the end of a stop run, read as
    the stop op: ``SearchSpace.stop_runs``; around a variable-size graph's output: see
    ``ScoreDiffusionModule.read_state``; 0 where none); ``graphs`` are the raw
    ``{x, adj, mask}`` tensors.

    A selection (the device path) holds its chosen architectures best first, with what it
    knows of each in ``rows`` (predicted latency, its spread, ...), its counts in ``summary``
    and one line on how it chose them in ``description``."""

    archs: list[Arch | None]
    errors: list[str | None]
    raw_valid: list[bool] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    unread: list[int] = field(default_factory=list)
    graphs: dict[str, torch.Tensor] | None = None
    summary: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.raw_valid:
            self.raw_valid = [a is not None for a in self.archs]
        if not self.changed:
            self.changed = [0 if raw else -1 for raw in self.raw_valid]
        if not self.unread:
            self.unread = [0] * len(self.archs)

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def valid(self) -> list[Arch]:
        return [a for a in self.archs if a is not None]

    @property
    def validity(self) -> float:
        return len(self.valid) / max(len(self.archs), 1)

    @property
    def raw_validity(self) -> float:
        return sum(self.raw_valid) / max(len(self.raw_valid), 1)

    @property
    def read_by_layout(self) -> float:
        """Share of samples with a position the layout read otherwise than drawn."""
        return sum(u > 0 for u in self.unread) / max(len(self.unread), 1)

    @property
    def repaired(self) -> list[int]:
        """Indices of the samples projection turned from invalid into architectures."""
        return [i for i, (arch, raw) in enumerate(zip(self.archs, self.raw_valid)) if arch is not None and not raw]

    @property
    def repair_changes(self) -> float:
        """Mean node labels and edges projection changed in a repaired sample (NaN: none measured)."""
        counts = [self.changed[i] for i in self.repaired if self.changed[i] >= 0]
        return sum(counts) / len(counts) if counts else math.nan


def decode_samples(space: SearchSpace, graphs: dict[str, torch.Tensor], project: bool = True) -> GeneratedSet:
    """Each raw graph decoded strictly (``space.decode``: is it valid as sampled?) and, with
    ``project``, mapped to the nearest valid architecture by ``space.project``."""
    archs: list[Arch | None] = []
    errors: list[str | None] = []
    raw_valid: list[bool] = []
    changed: list[int] = []
    for x, adj, mask in zip(graphs["x"], graphs["adj"], graphs["mask"]):
        try:
            arch, error = space.decode(x, adj, mask), None
        except InvalidArchitecture as e:
            arch, error = None, str(e)
        raw_valid.append(arch is not None)
        change = 0 if arch is not None else -1
        if arch is None and project:
            try:
                arch = space.project(x, adj, mask)
                change = space.changed_entries(x, adj, mask, arch)
            except InvalidArchitecture as e:
                error = f"{error}; projection failed: {e}"
        archs.append(arch)
        errors.append(None if arch is not None else error)
        changed.append(change)
    unread = graphs["unread"].tolist() if "unread" in graphs else []
    return GeneratedSet(archs, errors, raw_valid, changed, unread, graphs)
