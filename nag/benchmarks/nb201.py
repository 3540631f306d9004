"""NAS-Bench-201 table (``nb201.csv``): accuracies, FLOPs/params and HW-NAS-Bench costs."""

from __future__ import annotations

import csv
import math

import numpy as np

from nag.benchmarks.base import Benchmark, require_file
from nag.errors import DataFileError, InvalidArchitecture
from nag.spaces.nb201 import Arch201, NB201Space

_NOT_METRICS = ("index", "arch_str", "iso_key")
_COST_SUFFIXES = ("_latency", "_energy", "_flops_M", "_params_M")


class NB201Benchmark(Benchmark[Arch201]):
    """Every numeric column of ``nb201.csv`` is a metric, e.g. ``cifar10_test_200ep``,
    ``cifar100_test_200ep``, ``imagenet16_test_200ep``, ``hwnb_cifar10_fpga_latency``.

    Each of the 15,625 cells has its own row (isomorphic cells were trained separately),
    so look-ups use the exact cell, not its isomorphism class. ``datasets`` declares the
    data of columns whose name does not say it (``{"lowfid": "cifar10"}`` for a CIFAR-10
    run added to the file), which the leak checks then use.
    """

    def __init__(self, path: str, space: NB201Space | None = None, datasets: dict[str, str] | None = None) -> None:
        self.space = space or NB201Space()
        file = require_file(path, "path")
        try:
            with file.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataFileError(f"{file}: not a readable CSV ({type(e).__name__}); re-copy nb201.csv") from None
        if "arch_str" not in header:
            raise DataFileError(f"{file}: missing column 'arch_str'; is this nb201.csv?")
        if not rows:
            raise DataFileError(f"{file}: no rows; re-copy nb201.csv")
        names = [c for c in header if c not in _NOT_METRICS]
        columns = {c: np.full(len(rows), math.nan) for c in names}
        archs, self.official_index = [], {}
        for i, row in enumerate(rows):
            line = i + 2
            try:
                arch = self.space.from_string(row["arch_str"])
            except InvalidArchitecture as e:
                raise DataFileError(f"{file}: row {line}: {e}") from None
            for c in ["index", *names] if row.get("index") else names:
                try:
                    value = float(row[c]) if row[c] else math.nan
                except ValueError:
                    raise DataFileError(f"{file}: row {line}, column {c!r}: {row[c]!r} is not a number") from None
                if c != "index":
                    columns[c][i] = value
            index = int(float(row["index"])) if row.get("index") else i
            if arch in self.official_index:
                raise DataFileError(f"{file}: row {line} repeats cell {row['arch_str']!r}; keep one row per cell")
            archs.append(arch)
            self.official_index[arch] = index
        self.minimize = frozenset(c for c in names if c.endswith(_COST_SUFFIXES))
        self._set_table(archs, columns)
        self.declare_datasets(datasets)

    def _dataset_by_name(self, metric: str) -> str:
        """The image dataset of an undeclared column, by NB201's naming: ``cifar10_test_200ep``
        and ``cifar10_valid_200ep_1seed`` are both CIFAR-10; ``hwnb_ImageNet16-120_fpga_latency``
        is ImageNet16."""
        name = metric.removeprefix("hwnb_").split("_")[0].lower()
        return "imagenet16" if name.startswith("imagenet16") else name

    def row_key(self, arch: Arch201) -> Arch201:
        return self.space.validate(arch)
