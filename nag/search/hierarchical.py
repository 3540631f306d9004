"""Hierarchical generative NAS end to end (``nag search-hierarchical``).

For a task (classes, input size) and params/FLOPs budgets:

1. the macro transformer writes ``generation.num_samples`` macro networks (stem, stages of
   cell slot / channels / stride / repeats) for the budgets;
2. the CCNF fills every cell slot with a new cell, sampled for a target ZC vector: chosen
   proxies at high quantiles of the training cells (``generation.condition``), optionally
   with the slot's vocabulary cell's own cost proxies (``generation.match``) so the macro's
   budget reasoning still holds; undecodable cells are counted and re-drawn; of a slot's
   ``generation.cell_candidates`` cells the one of best predicted ZC that keeps the network
   completable within budget (closed-form costs) is kept;
3. the networks are built and checked exactly (closed-form params/FLOPs): the share within
   both budgets *before* the check is reported, only satisfiers go on;
4. satisfiers are ranked by zero-cost proxies of the whole network on a task image batch;
5. the top-k are trained briefly on MNIST-5k (fixed split) and their test accuracy reported,
   next to ``top_k`` random networks (random macro, random cells) within the same budgets,
   trained the same way -- the baseline of the same run, over the same seeds.

The three models come from their YAML configs (the ones ``nag fit`` reads) and are fitted
here when no checkpoint is given, cached under ``cache_dir`` by a digest of everything that
determines them; the cell models learn from ZC vectors of CellSpace cells that are computed
here with :mod:`nag.zc` on small networks (written once to ``cell_table.path``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentParser

from nag import tables
from nag.checkpoints import load_checkpoint, load_module
from nag.errors import ConfigError, DataFileError
from nag.generation import decode_samples, write_rows
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.search.short_training import ImageTask, train_briefly
from nag.spaces.hierarchical import (
    Cell,
    CellSpace,
    MacroArch,
    MacroConstraints,
    MacroSpace,
    Stage,
)
from nag.zc import PROXIES, compute_proxies, image_batch

MNIST = "../shared/data/images/mnist_5k.csv.gz"
#: A cell that costs nothing: a slot's own cost is the network's cost with it minus with this.
SKIP_CELL = "input,skip,output|010,001,000"
#: Trainer settings of a model's YAML that the fit here keeps (the rest: logging, callbacks).
_TRAINER_KEYS = ("gradient_clip_val", "check_val_every_n_epoch", "accelerator", "precision", "deterministic")


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
@dataclass
class Task:
    """What networks are generated for: a classification task and two budgets."""

    num_classes: int = 10
    input_size: int = 16
    in_channels: int = 1
    max_params: int = 40_000
    max_flops: int = 4_000_000

    @property
    def constraints(self) -> MacroConstraints:
        return MacroConstraints(self.num_classes, self.input_size, self.max_params, self.max_flops, self.in_channels)


@dataclass
class CellTable:
    """ZC vectors of ``num_cells`` distinct random CellSpace cells, each scored inside a small
    network (a ``width``-channel stem and the cell, global pooling, linear head) on a seeded
    batch of ``batch_size`` images resized to ``image_size``."""

    path: str = "runs/hierarchical/cell_zc.csv"
    num_cells: int = 1000
    images: str = MNIST
    image_size: int = 8
    batch_size: int = 32
    width: int = 16
    num_classes: int = 10
    proxies: list[str] = field(default_factory=lambda: list(PROXIES))
    seed: int = 0


@dataclass
class ModelFit:
    """A model of the pipeline: its ``nag fit`` YAML, fitted here for ``epochs`` (default: the
    YAML's ``max_epochs``) unless a trained checkpoint ``ckpt`` is given."""

    config: str
    epochs: int | None = None
    ckpt: str | None = None


@dataclass
class Generation:
    """How networks are generated.

    ``condition``: proxy -> quantile of the cell table's training cells that the CCNF is
    asked for (rank-normalised ZC units, so quantile ``q`` is the normal quantile of ``q``).
    ``match``: proxies conditioned on the value of the slot's vocabulary cell instead (cost
    proxies keep a slot as expensive as the macro transformer planned it).
    ``cell_candidates``: cells drawn per slot; a network takes, slot by slot, the candidate
    of best predicted ZC (the encoder's head, mean over ``condition``'s proxies) that still
    lets the network meet both budgets with the cheapest candidates in the remaining slots
    (closed-form costs), or the cheapest one when none does. With 1, every slot takes its
    one draw as it comes.
    ``cell_rounds``: draws for a slot whose candidates all failed to decode, before its
    network is given up.
    """

    num_samples: int = 64
    temperature: float = 1.0
    condition: dict[str, float] = field(default_factory=lambda: {"synflow": 0.9, "nwot": 0.9})
    match: list[str] = field(default_factory=lambda: ["params", "flops"])
    cell_candidates: int = 4
    cell_rounds: int = 4


@dataclass
class Training:
    """Ranking and brief training of the networks that are kept.

    ``rank_by``: proxies of the whole network, combined by mean rank. NASWOT by default: the
    generator already pushes synflow up (CCNF condition, the macro transformer's evolution
    fitness), and among its networks synflow no longer tracked 2-epoch accuracy in a one-off
    check on seeds 10 and 11, kept apart from the benchmark's (Spearman -0.04 vs 0.57 for
    nwot, 12 networks).
    """

    top_k: int = 3
    rank_by: list[str] = field(default_factory=lambda: ["nwot"])
    proxy_batch_size: int = 32
    epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    test_size: int = 1000
    train_size: int | None = None
    split_seed: int = 0
    accelerator: str = "auto"


# ------------------------------------------------------------------------------------------
# the cell table: ZC vectors of CellSpace cells
# ------------------------------------------------------------------------------------------
class CellProxies:
    """ZC vectors of cells as :class:`CellTable` defines them, cached per canonical key."""

    def __init__(self, table: CellTable) -> None:
        unknown = [p for p in table.proxies if p not in PROXIES]
        if unknown:
            raise ConfigError(f"cell_table.proxies: unknown {unknown}; expected some of {list(PROXIES)}")
        self.table, self.space = table, CellSpace()
        self._images = image_batch(table.images, table.batch_size, table.seed, table.image_size, 1)
        self._holder = MacroSpace(stem_channels=(table.width,), channels=(table.width,), strides=(1,), repeats=(1,))
        self._cache: dict[str, dict[str, float]] = {}

    def network(self, cell: Cell) -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(self.table.seed)
            arch = MacroArch(self.table.width, (Stage(cell, self.table.width, 1, 1),))
            return self._holder.to_module(arch, self.table.num_classes, 1)

    def __call__(self, cells: Sequence[Cell], names: Sequence[str] | None = None) -> np.ndarray:
        """``[len(cells), len(names)]`` raw proxy values (default: all of the table's)."""
        names = list(self.table.proxies if names is None else names)
        x, y = self._images
        out = np.empty((len(cells), len(names)))
        for i, cell in enumerate(cells):
            key = self.space.key(cell)
            known = self._cache.setdefault(key, {})
            missing = [n for n in names if n not in known]
            if missing:
                known.update(
                    compute_proxies(self.network(cell), x, y % self.table.num_classes, missing, self.table.seed)
                )
            out[i] = [known[n] for n in names]
        return out


def build_cell_table(table: CellTable, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``table.path`` (CSV: ``arch`` + one column per proxy, the layout ``ZCCellDataModule``
    reads) with a ``.json`` record of the settings beside it; an existing file made with the
    same settings is reused, one made with others is refused."""
    path, record = Path(table.path), Path(table.path).with_suffix(".json")
    settings = {**asdict(table), "images": Path(table.images).name}
    settings.pop("path")
    if path.is_file():
        stored = json.loads(record.read_text()) if record.is_file() else None
        if stored != settings:
            raise DataFileError(
                f"cell_table.path {str(path)!r} was made with other settings (see {record.name}); "
                "delete it to recompute or point cell_table.path elsewhere"
            )
        return path
    if table.num_cells < 10:
        raise ConfigError(f"cell_table.num_cells={table.num_cells}: the cell models need at least 10 cells")
    space, rng, cells = CellSpace(), np.random.default_rng(table.seed), {}
    while len(cells) < table.num_cells:
        cell = space.sample(1, rng)[0]
        cells.setdefault(space.key(cell), cell)
    scorer, rows = CellProxies(table), []
    for i, cell in enumerate(cells.values()):
        rows.append([space.to_string(cell), *scorer([cell])[0].tolist()])
        if progress is not None:
            progress(i + 1, table.num_cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", *table.proxies])
        writer.writerows(rows)
    record.write_text(json.dumps(settings, indent=1))
    os.replace(partial, path)
    return path


# ------------------------------------------------------------------------------------------
# the models: loaded, or fitted from their YAML and cached
# ------------------------------------------------------------------------------------------
def _instantiate(section: Mapping[str, Any], base: type, **init_args: Any) -> Any:
    """A ``class_path``/``init_args`` YAML section as an object (nested classes included)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--obj", type=base)
    section = copy.deepcopy(dict(section))
    section["init_args"] = {**section.get("init_args", {}), **init_args}
    return parser.instantiate(parser.parse_object({"obj": section})).obj


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = value


def fit_model(
    name: str,
    fit: ModelFit,
    cache_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    upstream: Any = None,
    quiet: bool = False,
) -> Path:
    """The checkpoint of ``fit``: its ``ckpt`` when given, else the cached result of fitting
    the YAML's model on its data (``overrides``: dotted keys replaced in the YAML), named by a
    digest of the model and data sections, epochs, seed, trainer settings and ``upstream``."""
    if fit.ckpt is not None:
        load_checkpoint(fit.ckpt, f"{name}.ckpt")
        return Path(fit.ckpt)
    source = Path(fit.config)
    if not source.is_file():
        raise ConfigError(f"{name}.config {str(source)!r}: no such YAML; give the model's `nag fit` config")
    config = yaml.safe_load(source.read_text())
    if not isinstance(config, dict) or not {"model", "data"} <= set(config):
        raise ConfigError(f"{name}.config {str(source)!r}: expected a `nag fit` YAML with model and data sections")
    for key, value in (overrides or {}).items():
        _set(config, key, value)
    trainer_config = config.get("trainer") or {}
    epochs = fit.epochs if fit.epochs is not None else trainer_config.get("max_epochs", 1)
    recipe = {
        "model": config["model"],
        "data": config["data"],
        "seed": config.get("seed_everything", 0),
        "epochs": epochs,
        "trainer": {k: trainer_config[k] for k in _TRAINER_KEYS if k in trainer_config},
        "upstream": upstream,
    }
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}-{digest}.ckpt"
    if path.is_file():
        return path
    pl.seed_everything(recipe["seed"], verbose=False)
    data = _instantiate(config["data"], pl.LightningDataModule)
    model = _instantiate(config["model"], pl.LightningModule, data_spec=data.spec())
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=not quiet,
        default_root_dir=str(cache_dir),
        **recipe["trainer"],
    )
    trainer.fit(model, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    trainer.save_checkpoint(partial)
    path.with_suffix(".json").write_text(json.dumps(recipe, indent=1, default=str))
    os.replace(partial, path)
    return path


def prepare_models(
    table: CellTable,
    macro: ModelFit,
    cell_encoder: ModelFit,
    cell_flow: ModelFit,
    cache_dir: str | Path,
    quiet: bool = False,
) -> tuple[MacroTransformerModule, CellFlowModule]:
    """The macro transformer and the CCNF (with its encoder), fitted where needed; the cell
    models read ``table.path``, which is computed first when missing. A given flow checkpoint
    carries its encoder, so ``cell_encoder`` is then unused."""
    if cell_flow.ckpt is None:
        build_cell_table(table, None if quiet else _progress("cell ZC table"))
        table_settings = json.loads(Path(table.path).with_suffix(".json").read_text())
        data = {"data.init_args.path": table.path}
        encoder = fit_model("cell_encoder", cell_encoder, cache_dir, data, table_settings, quiet)
        flow_path = fit_model(
            "cell_flow",
            cell_flow,
            cache_dir,
            {**data, "model.init_args.encoder_ckpt": str(encoder)},
            table_settings,
            quiet,
        )
    else:
        flow_path = fit_model("cell_flow", cell_flow, cache_dir)
    macro_path = fit_model("macro", macro, cache_dir, quiet=quiet)
    return (
        load_module(MacroTransformerModule, macro_path, None, "macro.ckpt"),
        load_module(CellFlowModule, flow_path, None, "cell_flow.ckpt"),
    )


def _progress(what: str) -> Callable[[int, int], None]:
    def show(i: int, n: int) -> None:
        if i == n or i % max(n // 10, 1) == 0:
            print(f"  {what}: {i}/{n}", flush=True)

    return show


# ------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------
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

    def generate(self, constraints: MacroConstraints, seed: int = 0) -> Generated:
        """``generation.num_samples`` macro samples with CCNF cells in their slots, built,
        de-duplicated and checked exactly against ``constraints``. Same seed, same networks."""
        g = self.generation
        macros = self.macro.sample(constraints, g.num_samples, g.temperature, seed)
        macro_share = self.macro.constraint_share(macros, constraints)
        slots = [stage.cell for arch in macros for stage in arch.stages]
        options, draws, invalid = self._candidates(self._conditions(slots), seed)
        flat = self._predicted_zc([c for cells in options for c in cells])
        ends = np.cumsum([len(cells) for cells in options])
        scores = np.split(flat, ends[:-1]) if len(options) else []
        built, seen, incomplete, k = [], set(), 0, 0
        for arch in macros:
            n = len(arch.stages)
            filled, k = options[k : k + n], k + n
            if not all(filled):
                incomplete += 1
                continue
            network = self._fill(arch, filled, scores[k - n : k], constraints)
            if (key := self.space.key(network)) not in seen:
                seen.add(key)
                built.append(network)
        satisfiers = [a for a in built if self.space.satisfies(a, constraints)]
        return Generated(len(macros), macro_share, draws, invalid, built, incomplete, satisfiers)


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


# ------------------------------------------------------------------------------------------
# ranking and training
# ------------------------------------------------------------------------------------------
def build(space: MacroSpace, arch: MacroArch, task: Task, seed: int) -> torch.nn.Module:
    """``arch``'s network with weights drawn from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return space.to_module(arch, task.num_classes, task.in_channels)


def network_proxies(
    space: MacroSpace,
    archs: Sequence[MacroArch],
    task: Task,
    names: Sequence[str],
    images: str,
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """``[len(archs), len(names)]`` ZC proxies of the freshly built networks on a seeded batch
    of task images."""
    x, y = image_batch(images, batch_size, seed, task.input_size, task.in_channels)
    return np.array(
        [
            list(compute_proxies(build(space, a, task, seed), x, y % task.num_classes, names, seed).values())
            for a in archs
        ]
    ).reshape(len(archs), len(names))


def rank_score(values: np.ndarray) -> np.ndarray:
    """Mean over proxies (columns) of each row's rank (0 = worst; NaN ranks lowest)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    return np.mean([np.argsort(np.argsort(col, kind="stable"), kind="stable") for col in filled.T], axis=0)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()) if len(v) else math.nan, "std": float(v.std()) if len(v) else math.nan, "n": len(v)}


def shown_proxies(training: Training) -> list[str]:
    """Proxies reported for every trained network: the ranking ones, synflow and nwot."""
    return list(dict.fromkeys([*training.rank_by, "synflow", "nwot"]))


def evaluate(
    space: MacroSpace,
    archs: Sequence[MacroArch],
    task: Task,
    data: ImageTask,
    training: Training,
    images: str,
    seed: int,
) -> list[dict[str, Any]]:
    """Each network's cost, ranking proxies and test accuracy after brief training."""
    constraints, names = task.constraints, shown_proxies(training)
    zc = network_proxies(space, archs, task, names, images, training.proxy_batch_size, seed)
    rows = []
    for arch, values in zip(archs, zc):
        params, flops = space.cost(arch, constraints)
        accuracy = train_briefly(
            build(space, arch, task, seed),
            data,
            training.epochs,
            training.batch_size,
            training.lr,
            seed,
            training.accelerator,
        )
        rows.append(
            {
                "arch": space.to_string(arch),
                "params": params,
                "flops": flops,
                **dict(zip(names, values.tolist())),
                "accuracy": accuracy,
            }
        )
    return rows


def search(
    generator: HierarchicalGenerator,
    task: Task,
    training: Training,
    seeds: Sequence[int],
    images: str = MNIST,
    quiet: bool = True,
) -> dict[str, Any]:
    """Per seed: generate, keep exact satisfiers, rank by ZC, train the top-k; and train
    ``top_k`` random networks within the same budgets. Accuracies summarised over seeds
    (each seed's mean over its networks)."""
    constraints, space = task.constraints, generator.space
    data = ImageTask(
        images,
        task.input_size,
        task.in_channels,
        task.num_classes,
        training.test_size,
        training.train_size,
        training.split_seed,
    )
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        generated = generator.generate(constraints, seed)
        ranked = []
        if generated.satisfiers:
            zc = network_proxies(
                space, generated.satisfiers, task, training.rank_by, images, training.proxy_batch_size, seed
            )
            order = np.argsort(-rank_score(zc), kind="stable")[: training.top_k]
            ranked = [generated.satisfiers[i] for i in order]
        generated_seconds = time.perf_counter() - start
        top = evaluate(space, ranked, task, data, training, images, seed)
        randoms, random_share = random_satisfiers(space, constraints, training.top_k, np.random.default_rng([seed, 1]))
        baseline = evaluate(space, randoms, task, data, training, images, seed)
        runs.append(
            {
                "seed": seed,
                **generated.summary(),
                "random_share": random_share,
                "generation_seconds": generated_seconds,
                "seconds": time.perf_counter() - start,
                "generated": top,
                "random": baseline,
            }
        )
        if not quiet:
            print(
                f"  seed {seed}: {len(generated.satisfiers)}/{len(generated.built)} generated networks within "
                f"budget; top-{len(top)} accuracy {_mean_std([r['accuracy'] for r in top])['mean']:.4f}, random "
                f"{_mean_std([r['accuracy'] for r in baseline])['mean']:.4f}",
                flush=True,
            )
    per_seed = {
        kind: [_mean_std([r["accuracy"] for r in run[kind]])["mean"] for run in runs]
        for kind in ("generated", "random")
    }
    summary = {
        f"{kind}_accuracy": _mean_std([v for v in values if not math.isnan(v)]) for kind, values in per_seed.items()
    }
    for key in ("share_before_check", "macro_share", "invalid_share", "random_share"):
        summary[key] = _mean_std([run[key] for run in runs])
    summary["share_after_check"] = 1.0 if all(run["satisfiers"] for run in runs) else math.nan
    gen, rnd = summary["generated_accuracy"]["mean"], summary["random_accuracy"]["mean"]
    summary["accuracy_ratio"] = gen / rnd if rnd else math.nan
    gains = [g - r for g, r in zip(per_seed["generated"], per_seed["random"]) if not math.isnan(g)]
    summary["accuracy_gain"] = _mean_std(gains)  # paired by seed: same split, seed and budgets
    summary["seeds_won"] = sum(g > 0 for g in gains)
    return {
        "task": asdict(task),
        "training": asdict(training),
        "generation": asdict(generator.generation),
        "seeds": list(seeds),
        "summary": summary,
        "runs": runs,
    }


def format_report(report: dict[str, Any]) -> str:
    """The summary and every trained network as terminal tables."""
    s, t = report["summary"], report["task"]
    head = (
        f"task: {t['num_classes']} classes, {t['input_size']}x{t['input_size']}x{t['in_channels']}, "
        f"<= {t['max_params']:,} params, <= {t['max_flops']:,} FLOPs; seeds {report['seeds']}"
    )
    lines = [
        ("generated top-k accuracy", "generated_accuracy"),
        ("random accuracy (same budgets)", "random_accuracy"),
        ("within budget before check", "share_before_check"),
        ("  with the transformer's own cells", "macro_share"),
        ("  random draws", "random_share"),
        ("invalid cell decodes", "invalid_share"),
    ]
    summary = [{"": name, "mean": s[key]["mean"], "std": s[key]["std"]} for name, key in lines]
    summary += [
        {
            "": "generated - random accuracy, per seed",
            "mean": s["accuracy_gain"]["mean"],
            "std": s["accuracy_gain"]["std"],
        },
        {"": f"seeds where generated wins (of {len(report['seeds'])})", "mean": s["seeds_won"]},
        {"": "generated / random accuracy", "mean": s["accuracy_ratio"]},
        {"": "within budget after check", "mean": s["share_after_check"]},
    ]
    proxies = shown_proxies(Training(**report["training"]))
    networks = [
        {"seed": run["seed"], "source": kind, **r}
        for run in report["runs"]
        for kind in ("generated", "random")
        for r in run[kind]
    ]
    return "\n\n".join(
        [
            head,
            tables.format_table(summary, ["", "mean", "std"]),
            tables.format_table(networks, ["seed", "source", "params", "flops", *proxies, "accuracy", "arch"]),
        ]
    )


DEFAULT_TASK, DEFAULT_TABLE, DEFAULT_GENERATION, DEFAULT_TRAINING = Task(), CellTable(), Generation(), Training()
DEFAULT_MACRO = ModelFit("configs/hierarchical/macro_transformer.yaml", epochs=25)
DEFAULT_ENCODER = ModelFit("configs/hierarchical/cell_encoder.yaml")
DEFAULT_FLOW = ModelFit("configs/hierarchical/cell_flow.yaml")


def run_hierarchical_search(
    task: Task = DEFAULT_TASK,
    cell_table: CellTable = DEFAULT_TABLE,
    macro: ModelFit = DEFAULT_MACRO,
    cell_encoder: ModelFit = DEFAULT_ENCODER,
    cell_flow: ModelFit = DEFAULT_FLOW,
    generation: Generation = DEFAULT_GENERATION,
    training: Training = DEFAULT_TRAINING,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    images: str = MNIST,
    cache_dir: str = "runs/hierarchical/models",
    output: str = "runs/hierarchical/search.json",
    quiet: bool = False,
) -> dict[str, Any]:
    """Hierarchical generative NAS for ``task``: the macro transformer's networks with CCNF
    cells, kept when within both budgets (exact check), ranked by ZC proxies; the top
    ``training.top_k`` trained briefly on ``images`` next to as many random networks within
    the same budgets, for every seed. Models are fitted (and cached in ``cache_dir``) unless
    their ``ckpt`` is given. Writes ``output`` (``.json`` report or ``.csv`` of networks)."""
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds [0,1,2]")
    if Path(output).suffix not in (".json", ".csv"):
        raise ConfigError(f"--output {output!r}: expected a .json or .csv file name")
    if training.top_k < 1:
        raise ConfigError(f"training.top_k={training.top_k}: expected at least 1")
    start = time.perf_counter()
    macro_model, flow = prepare_models(cell_table, macro, cell_encoder, cell_flow, cache_dir, quiet)
    prepared = time.perf_counter() - start
    generator = HierarchicalGenerator(macro_model, flow, CellProxies(cell_table), generation)
    report = search(generator, task, training, seeds, images, quiet)
    report["seconds"] = {"models": prepared, "search": time.perf_counter() - start - prepared}
    rows = [
        {"seed": run["seed"], "source": kind, **r}
        for run in report["runs"]
        for kind in ("generated", "random")
        for r in run[kind]
    ]
    write_rows(report if output.endswith(".json") else rows, output)
    if not quiet:
        print(format_report(report))
        print(f"wrote {output}")
    return report
