"""The hierarchical generator: macro transformer networks whose cell slots the CCNF fills,
checked exactly against the budgets; and the random baseline within the same budgets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nag.errors import ConfigError
from nag.generation import GeneratedSet, decode_samples
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.search.hierarchical.cell_table import CellProxies
from nag.search.hierarchical.config import Generation
from nag.spaces.cell import Cell, CellSpace
from nag.spaces.macro import MacroArch, MacroConstraints, MacroSpace

#: A cell that costs nothing: a slot's own cost is the network's cost with it minus with this.
SKIP_CELL = "input,skip,output|010,001,000"


@dataclass
class Generated:
    """Networks generated for one seed, and what happened on the way."""

    macro_samples: int
    macro_share: float  # transformer samples (vocabulary cells) within both budgets
    cell_draws: int
    invalid_cells: int
    built: list[MacroArch]  # every slot filled, distinct networks
    incomplete: int  # networks given up: a slot decoded to no cell in every round
    satisfiers: list[MacroArch]

    @property
    def share_before_check(self) -> float:
        return len(self.satisfiers) / max(len(self.built), 1)

    def summary(self) -> dict[str, float]:
        return {
            "macro_samples": self.macro_samples,
            "macro_share": self.macro_share,
            "cell_draws": self.cell_draws,
            "invalid_cells": self.invalid_cells,
            "invalid_share": self.invalid_cells / max(self.cell_draws, 1),
            "incomplete": self.incomplete,
            "built": len(self.built),
            "satisfiers": len(self.satisfiers),
            "share_before_check": self.share_before_check,
        }


def free_space(macro: MacroTransformerModule) -> MacroSpace:
    """The macro transformer's space without its cell vocabulary: any cell may fill a slot."""
    return MacroSpace(**{**macro.tokenizer.space.config(), "cells": None})


class HierarchicalGenerator:
    """Macro transformer + CCNF: networks for a task and its budgets.

    Args:
        macro: the trained macro transformer.
        flow: the trained CCNF over CellSpace cells.
        cell_proxies: scores the vocabulary cells for ``generation.match`` (the settings the
            flow's table was made with).
        generation: sampling settings.
    """

    def __init__(
        self, macro: MacroTransformerModule, flow: CellFlowModule, cell_proxies: CellProxies, generation: Generation
    ) -> None:
        spec = flow.hparams.data_spec
        if spec["space"].get("name") != CellSpace.name:
            raise ConfigError(
                f"cell_flow: the flow was trained on {spec['space'].get('name')!r} cells; the hierarchical "
                f"pipeline needs one trained on {CellSpace.name!r} (configs/hierarchical/cell_flow.yaml)"
            )
        if spec.get("normalization") != "rank":
            raise ConfigError(
                "cell_flow: generation.condition is in quantiles, which needs rank normalisation "
                "(data.normalization: rank)"
            )
        if list(cell_proxies.table.proxies) != flow.proxies:
            raise ConfigError(
                f"cell_table.proxies {list(cell_proxies.table.proxies)}: the flow learned {flow.proxies}; "
                "cell_table must describe the table the flow was trained on"
            )
        for what, names in (("condition", list(generation.condition)), ("match", generation.match)):
            unknown = [n for n in names if n not in flow.proxies]
            if unknown:
                raise ConfigError(f"generation.{what}: {unknown} are not proxies of the flow ({flow.proxies})")
        bad = {k: q for k, q in generation.condition.items() if not 0 < q < 1}
        if bad:
            raise ConfigError(f"generation.condition {bad}: quantiles must lie strictly between 0 and 1")
        if generation.cell_candidates < 1 or generation.cell_rounds < 1:
            raise ConfigError(
                f"generation.cell_candidates={generation.cell_candidates}, cell_rounds="
                f"{generation.cell_rounds}: both must be at least 1"
            )
        self.macro, self.flow, self.cell_proxies, self.generation = macro, flow, cell_proxies, generation
        self.space, self.cell_space = free_space(macro), CellSpace()
        self._skip = self.cell_space.from_string(SKIP_CELL)

    def _conditions(self, slots: Sequence[Cell]) -> torch.Tensor:
        """Normalised condition rows ``[len(slots), P]`` (NaN: left to the flow)."""
        names = self.flow.proxies
        rows = torch.full((len(slots), len(names)), math.nan)
        for name, q in self.generation.condition.items():
            rows[:, names.index(name)] = float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64)))
        if self.generation.match and slots:
            raw = torch.zeros(len(slots), len(names), dtype=torch.float64)
            columns = [names.index(n) for n in self.generation.match]
            raw[:, columns] = torch.from_numpy(self.cell_proxies(slots, self.generation.match))
            rows[:, columns] = self.flow.normalizer.normalize(raw)[:, columns].float()
        return rows

    def _candidates(self, conditions: torch.Tensor, seed: int) -> tuple[list[list[Cell]], int, int]:
        """Decoded cells for every condition row (``cell_candidates`` draws; rows left with
        none are drawn again, up to ``cell_rounds`` times): (cells per row, draws, invalid)."""
        m = self.generation.cell_candidates
        found: list[list[Cell]] = [[] for _ in range(conditions.shape[0])]
        pending, draws, invalid = list(range(len(found))), 0, 0
        for r in range(self.generation.cell_rounds):
            if not pending:
                break
            rows = [i for i in pending for _ in range(m)]
            round_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
            with torch.no_grad():
                graphs = self.flow.sample(conditions[rows], seed=round_seed)
            decoded = decode_samples(self.cell_space, graphs, project=False)  # redrawn, not repaired: a repair
            # would drift from the proxies the flow was conditioned on
            draws += len(rows)
            invalid += sum(a is None for a in decoded.archs)
            for i, cell in zip(rows, decoded.archs):
                if cell is not None:
                    found[i].append(cell)
            pending = [i for i in pending if not found[i]]
        return found, draws, invalid

    @torch.no_grad()
    def _predicted_zc(self, cells: Sequence[Cell]) -> np.ndarray:
        """The encoder's ZC prediction for each cell, mean over the conditioned proxies."""
        names = [self.flow.proxies.index(n) for n in self.generation.condition]
        if not cells or not names:
            return np.zeros(len(cells))
        encoder = self.flow.encoder
        x, adj, mask = (t.to(encoder.device) for t in self.cell_space.encode_batch(cells))
        return encoder.predict_zc(encoder.embed(x, adj, mask))[:, names].mean(-1).cpu().numpy()

    def _fill(
        self,
        arch: MacroArch,
        options: Sequence[Sequence[Cell]],
        scores: Sequence[np.ndarray],
        constraints: MacroConstraints,
    ) -> MacroArch:
        """``arch`` with one of ``options[i]`` (predicted ZC ``scores[i]``) in stage ``i``
        (the rule is :class:`Generation`'s)."""

        def with_cell(i: int, cell: Cell) -> MacroArch:
            return MacroArch(
                empty.stem, (*empty.stages[:i], empty.stages[i]._replace(cell=cell), *empty.stages[i + 1 :])
            )

        empty = MacroArch(arch.stem, tuple(s._replace(cell=self._skip) for s in arch.stages))
        spent = np.array(self.space.cost(empty, constraints), dtype=np.int64)
        extra = [
            np.array([self.space.cost(with_cell(i, c), constraints) for c in cells], dtype=np.int64) - spent
            for i, cells in enumerate(options)
        ]
        budget = np.array([constraints.max_params, constraints.max_flops], dtype=np.int64)
        chosen = []
        for i, cells in enumerate(options):
            rest = sum((e.min(0) for e in extra[i + 1 :]), np.zeros(2, dtype=np.int64))
            fits = np.flatnonzero((spent + extra[i] + rest <= budget).all(1))
            # the best-scoring cell that leaves room for the rest, else the cheapest
            j = int(fits[np.argmax(scores[i][fits])]) if len(fits) else int(np.argmin((extra[i] / budget).sum(1)))
            chosen.append(cells[j])
            spent = spent + extra[i][j]
        return MacroArch(arch.stem, tuple(s._replace(cell=c) for s, c in zip(arch.stages, chosen)))

    def _networks(self, constraints: MacroConstraints, n: int, seed: int) -> tuple[list[MacroArch | None], Generated]:
        """``n`` macro samples with CCNF cells in their slots, in sampling order (None where a
        slot decoded to no cell in every round), and the de-duplicated summary."""
        g = self.generation
        macros = self.macro.sample(constraints, n, g.temperature, seed)
        macro_share = self.macro.constraint_share(macros, constraints)
        slots = [stage.cell for arch in macros for stage in arch.stages]
        options, draws, invalid = self._candidates(self._conditions(slots), seed)
        flat = self._predicted_zc([c for cells in options for c in cells])
        ends = np.cumsum([len(cells) for cells in options])
        scores = np.split(flat, ends[:-1]) if len(options) else []
        networks: list[MacroArch | None] = []
        built, seen, k = [], set(), 0
        for arch in macros:
            size = len(arch.stages)
            filled, k = options[k : k + size], k + size
            if not all(filled):
                networks.append(None)
                continue
            network = self._fill(arch, filled, scores[k - size : k], constraints)
            networks.append(network)
            if (key := self.space.key(network)) not in seen:
                seen.add(key)
                built.append(network)
        satisfiers = [a for a in built if self.space.satisfies(a, constraints)]
        incomplete = sum(a is None for a in networks)
        return networks, Generated(len(macros), macro_share, draws, invalid, built, incomplete, satisfiers)

    def generate(self, constraints: MacroConstraints, seed: int = 0) -> Generated:
        """``generation.num_samples`` macro samples with CCNF cells in their slots, built,
        de-duplicated and checked exactly against ``constraints``. Same seed, same networks."""
        return self._networks(constraints, self.generation.num_samples, seed)[1]

    # --- the Generator interface (nag.generation.Generator) ----------------------------------
    #: What ``conditions`` must name: the task and its budgets (``in_channels`` defaults to 3).
    condition_names = MacroConstraints._fields
    supports_guidance = False

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        steps: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        guidance: Sequence[Any] | None = None,
        progress: bool = False,
    ) -> GeneratedSet:
        """``n`` networks for the task and budgets in ``conditions``, in sampling order; a
        network that could not be built, or that is over a budget, is None with the reason."""
        if steps is not None or guidance:
            raise ConfigError("the hierarchical generator takes neither steps nor guidance terms; drop them")
        given = dict(conditions or {})
        required = [f for f in MacroConstraints._fields if f not in MacroConstraints._field_defaults]
        missing = [f for f in required if f not in given]
        unknown = [f for f in given if f not in MacroConstraints._fields]
        if missing or unknown:
            raise ConfigError(
                f"conditions: the hierarchical generator needs the task and its budgets {required} "
                f"(in_channels optional); missing {missing}, unknown {unknown}"
            )
        constraints = MacroConstraints(**{k: int(v) for k, v in given.items()})
        networks, _ = self._networks(constraints, n, seed)
        archs: list[MacroArch | None] = []
        errors: list[str | None] = []
        for network in networks:
            if network is None:
                archs.append(None)
                errors.append(f"a cell slot decoded to no valid cell in {self.generation.cell_rounds} rounds")
                continue
            params, flops = self.space.cost(network, constraints)
            within = self.space.satisfies(network, constraints)
            archs.append(network if within else None)
            errors.append(
                None
                if within
                else f"over budget: {params:,} params (max {constraints.max_params:,}), "
                f"{flops:,} FLOPs (max {constraints.max_flops:,})"
            )
        return GeneratedSet(archs, errors, raw_valid=[a is not None for a in networks])


def random_satisfiers(
    space: MacroSpace, constraints: MacroConstraints, k: int, rng: np.random.Generator, max_draws: int = 100_000
) -> tuple[list[MacroArch], float]:
    """``k`` distinct uniform random networks (random macro, random cells) within both budgets,
    by rejection, and the share of draws that were within them."""
    found: dict[str, MacroArch] = {}
    draws = 0
    while len(found) < k and draws < max_draws:
        arch = space.sample(1, rng)[0]
        draws += 1
        if space.satisfies(arch, constraints):
            found.setdefault(space.key(arch), arch)
    if len(found) < k:
        raise ConfigError(
            f"task budgets: only {len(found)} of {draws} random networks fit them; raise max_params/max_flops"
        )
    return list(found.values()), len(found) / draws
