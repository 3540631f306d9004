"""The cell table: ZC vectors of CellSpace cells, each scored inside a small network, that
the cell encoder and the CCNF learn from."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from nag.errors import ConfigError, DataFileError
from nag.io.atomic import atomic_write, write_text_atomically
from nag.search.hierarchical.config import CellTable
from nag.spaces.cell import Cell, CellSpace
from nag.spaces.macro import MacroArch, MacroSpace, Stage
from nag.zc import PROXIES, compute_proxies, image_batch


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
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", *table.proxies])
        writer.writerows(rows)
        write_text_atomically(record, json.dumps(settings, indent=1))  # before the table is in place
    return path
