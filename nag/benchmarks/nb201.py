"""NAS-Bench-201 table (``nb201.csv``): accuracies, FLOPs/params and HW-NAS-Bench costs."""

from __future__ import annotations

import csv
import math

import numpy as np

from nag.benchmarks.base import Benchmark, require_file
from nag.errors import DataFileError
from nag.spaces.nb201 import Arch201, NB201Space

_NOT_METRICS = ("index", "arch_str", "iso_key")
_COST_SUFFIXES = ("_latency", "_energy", "_flops_M", "_params_M")


class NB201Benchmark(Benchmark[Arch201]):
    """Every numeric column of ``nb201.csv`` is a metric, e.g. ``cifar10_test_200ep``,
    ``cifar100_test_200ep``, ``imagenet16_test_200ep``, ``hwnb_cifar10_fpga_latency``.

    Each of the 15,625 cells has its own row (isomorphic cells were trained separately),
    so look-ups use the exact cell, not its isomorphism class.
    """

    def __init__(self, path: str, space: NB201Space | None = None) -> None:
        self.space = space or NB201Space()
        file = require_file(path, "path")
        with file.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if "arch_str" not in header:
                raise DataFileError(f"{file}: missing column 'arch_str'; is this nb201.csv?")
            rows = list(reader)
        if not rows:
            raise DataFileError(f"{file}: no rows; re-copy nb201.csv")
        names = [c for c in header if c not in _NOT_METRICS]
        columns = {c: np.full(len(rows), math.nan) for c in names}
        archs = []
        for i, row in enumerate(rows):
            archs.append(self.space.from_string(row["arch_str"]))
            for c in names:
                if row[c]:
                    try:
                        columns[c][i] = float(row[c])
                    except ValueError:
                        raise DataFileError(f"{file}: row {i + 2}, column {c!r}: {row[c]!r} is not a number") from None
        self.official_index = {a: int(r["index"]) if r.get("index") else i for i, (a, r) in enumerate(zip(archs, rows))}
        self.minimize = frozenset(c for c in names if c.endswith(_COST_SUFFIXES))
        self._set_table(archs, columns)

    def row_key(self, arch: Arch201) -> Arch201:
        return self.space.validate(arch)
