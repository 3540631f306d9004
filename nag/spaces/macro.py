"""Macro architectures, the network level of the hierarchical space: a stem width plus 1 to
``max_stages`` stages ``(cell, channels, stride, repeats)`` over :mod:`nag.spaces.cell` cells.

Parameter and FLOP counts of any macro architecture are exact and closed form
(:meth:`MacroSpace.params`, :meth:`MacroSpace.flops`, from :mod:`nag.spaces.costs`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from nag.errors import ConfigError, InvalidArchitecture
from nag.nn.hierarchical_network import HierarchicalNetwork
from nag.spaces.base import SearchSpace
from nag.spaces.cell import (
    CELL_OPS,
    INPUT,
    MAX_OP_NODES,
    OUTPUT,
    Cell,
    CellSpace,
    _canonical,
    _cell_cost,
    _cell_key,
    _format_cell,
    _op_node_positions,
    _pruned,
    _sample_cell,
)
from nag.spaces.costs import network_cost


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
    input_shape = (3, 32, 32)
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

    @property
    def min_nodes(self) -> int:
        """Stem and output, and per stage its header, one op node and the cell's output."""
        return 2 + 3 * self.min_stages

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
        stages = [(_cell_cost(cell), c, s, r) for cell, c, s, r in arch.stages]
        return network_cost(arch.stem, stages, num_classes, in_channels, input_size)

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
