"""Measured GPU latency of once-for-all MobileNetV3 subnets (the HELP table, Lee et al. 2021).

The table has one row per subnet: OFA's ``ks``/``e``/``d`` lists (``-``-joined), the input
resolution ``r`` and latency columns ``help_lat_<device>_<batch>`` in milliseconds. Every
column besides ``ks``, ``e``, ``d`` and ``r`` is taken as a latency metric under its own name;
``r`` becomes the ``resolution`` metric.

The resolution is part of the architecture (:class:`~nag.spaces.mbv3.MBV3Subnet`); without a
``space``, the benchmark's space searches exactly the resolutions the table holds (HELP's: 128 to
224 in steps of 4). ``r`` is also kept as the ``resolution`` metric, a cost feature read from
the architecture. A table where one subnet appears twice is rejected, since
``query(arch, metric)`` could not tell the rows apart.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from nag.benchmarks.base import Benchmark, require_file
from nag.errors import DataFileError, InvalidArchitecture
from nag.spaces.mbv3 import MBV3Arch, MBV3Space

ARCH_COLUMNS = ("ks", "e", "d")
RESOLUTION_COLUMN = "r"


class OFALatencyBenchmark(Benchmark[MBV3Arch]):
    """Latency (ms, lower is better) of OFA MobileNetV3 subnets on several GPUs and batch sizes."""

    def __init__(self, path: str | Path, space: MBV3Space | None = None) -> None:
        self.path = require_file(path, "path")
        with self.path.open(newline="") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            body = list(reader)
        missing = [c for c in (*ARCH_COLUMNS, RESOLUTION_COLUMN) if c not in header]
        if missing:
            raise DataFileError(
                f"{self.path}: missing column(s) {', '.join(missing)}; expected a header with "
                f"ks, e, d, r and latency columns such as help_lat_2080ti_1, got {header}"
            )
        latency = [c for c in header if c not in (*ARCH_COLUMNS, RESOLUTION_COLUMN)]
        if not latency:
            raise DataFileError(f"{self.path}: no latency columns besides ks, e, d, r; expected e.g. help_lat_2080ti_1")
        rows: list[tuple[int, dict[str, str]]] = []
        for line, row in enumerate(body, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataFileError(
                    f"{self.path}: line {line} has {len(row)} fields, the header has {len(header)}; re-copy the table"
                )
            rows.append((line, dict(zip(header, row))))
        sides = [self._parse_side(cells, line) for line, cells in rows]
        self.space = space if space is not None else MBV3Space(resolutions=sorted(set(sides)) or (224,))
        archs: list[MBV3Arch] = []
        values: dict[str, list[float]] = {c: [] for c in (*latency, RESOLUTION_COLUMN)}
        seen: dict[str, int] = {}
        for (line, cells), side in zip(rows, sides):
            arch = self._parse_arch(cells, side, line)
            row_key = self.row_key(arch)
            if row_key in seen:
                raise DataFileError(
                    f"{self.path}: lines {seen[row_key]} and {line} hold the same subnet {row_key!r}; "
                    "queries by architecture would be ambiguous, so keep one of them"
                )
            seen[row_key] = line
            archs.append(arch)
            for column, column_values in values.items():
                column_values.append(self._parse_number(cells[column], column, line))
        self.minimize = frozenset(latency)
        self._set_table(
            archs,
            {"resolution" if c == RESOLUTION_COLUMN else c: np.array(v) for c, v in values.items()},
        )

    def _parse_side(self, cells: dict[str, str], line: int) -> int:
        try:
            return int(cells[RESOLUTION_COLUMN])
        except ValueError:
            raise DataFileError(
                f"{self.path}: line {line}, column r is {cells[RESOLUTION_COLUMN]!r}; expected a whole number of pixels"
            ) from None

    def _parse_arch(self, cells: dict[str, str], side: int, line: int) -> MBV3Arch:
        lists: dict[str, list[int]] = {}
        for column in ARCH_COLUMNS:
            try:
                lists[column] = [int(v) for v in cells[column].split("-")]
            except ValueError:
                raise DataFileError(
                    f"{self.path}: line {line}, column {column} is {cells[column]!r}; "
                    "expected whole numbers joined by '-'"
                ) from None
        try:
            return self.space.from_ofa(lists["ks"], lists["e"], lists["d"], side)
        except InvalidArchitecture as err:
            raise DataFileError(
                f"{self.path}: line {line} (columns ks, e, d, r) is not a valid subnet: {err}"
            ) from None

    def _parse_number(self, text: str, column: str, line: int) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataFileError(f"{self.path}: line {line}, column {column} is {text!r}; expected a finite number")
        return value
