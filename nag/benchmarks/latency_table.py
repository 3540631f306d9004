"""Bring-your-own latency table: a CSV of latencies measured on a new device, joined onto a
benchmark as one more named metric.

A table of a few measured architectures serves a new device through ``nag generate
--device_table`` (:mod:`nag.generation.device`: a latency predictor adapted to it). When a table
covers enough of the space to train on, this wrapper makes it an ordinary :class:`Benchmark`,
so its metric can be made a condition by naming it in ``data.init_args.targets`` (the
datamodule drops unmeasured rows), or scored like any other column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Hashable
from pathlib import Path

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import (
    ArchitectureNotInBenchmark,
    ConfigError,
    DataFileError,
    InvalidArchitecture,
)
from nag.spaces.base import Arch

ARCH_COLUMN = "arch"
LATENCY_COLUMN = "latency"


class LatencyTableBenchmark(Benchmark[Arch]):
    """``base`` with one extra metric, ``metric``, read from ``path``.

    The CSV has (at least) the columns ``arch`` (the space's string form, e.g. NB201's
    ``|nor_conv_3x3~0|+|...|``) and ``latency`` (any unit, smaller is better). Rows join on
    the base benchmark's row key: the exact cell for NB201, whose isomorphic cells were
    measured separately and differ in latency, the canonical hash for NAS-Bench-Graph. Base
    rows the CSV does not cover get NaN. Every CSV row must parse, be in the base benchmark,
    appear once and carry a positive finite number; errors name the row.
    """

    def __init__(self, base: Benchmark, path: str, metric: str = "device_latency") -> None:
        if metric in base.metrics:
            raise ConfigError(
                f"latency table: metric name {metric!r} is already a column of {type(base).__name__}; "
                "pass another name with metric=..."
            )
        self.base, self.metric = base, metric
        self.space = base.space
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataFileError(
                f"data.init_args.benchmark.init_args.path: latency table {str(self.path)!r} not found; "
                f"pass the CSV (header '{ARCH_COLUMN},{LATENCY_COLUMN}') measured on your device"
            )
        rows = read_latency_rows(self.path)
        values = np.full(len(base), math.nan)
        source_line: dict[int, int] = {}
        for line, text, value in rows:
            try:
                i = base.index(self.space.from_string(text))
            except InvalidArchitecture as e:
                raise DataFileError(f"{self.path}: row {line}: arch {text!r} does not parse: {e}") from None
            except ArchitectureNotInBenchmark:
                raise DataFileError(
                    f"{self.path}: row {line}: arch {text!r} is not in {type(base).__name__} "
                    f"({len(base)} architectures); a latency table extends benchmarked architectures only"
                ) from None
            if i in source_line:
                raise DataFileError(
                    f"{self.path}: rows {source_line[i]} and {line} give the same architecture {text!r}; "
                    "keep one row per architecture (average repeated measurements first)"
                )
            source_line[i] = line
            values[i] = value
        #: Number of base architectures the table measures.
        self.num_measured = len(source_line)
        self.minimize = frozenset(base.minimize | {metric})
        columns = {m: base.column(m) for m in base.metrics}
        columns[metric] = values
        # the base's row keys in table order: recomputing canonical hashes would repeat its work
        self._set_table(base.archs(), columns, keys=list(base._rows))

    def row_key(self, arch: Arch) -> Hashable:
        return self.base.row_key(arch)

    @property
    def name(self) -> str:
        return self.base.name

    def __repr__(self) -> str:
        return (
            f"LatencyTableBenchmark({self.base!r} + {self.metric!r} from {str(self.path)!r}, "
            f"{self.num_measured} measured)"
        )


def read_latency_rows(file: Path) -> list[tuple[int, str, float]]:
    """``(line, arch string, latency)`` per data row of an ``arch,latency`` CSV (line numbers
    count the header as 1; blank rows skipped; other columns ignored): the one reader of latency
    tables, shared by :class:`LatencyTableBenchmark` and :func:`nag.hardware.tables.read_device_table`."""
    example = f"{ARCH_COLUMN},{LATENCY_COLUMN}"
    try:
        with file.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            raw = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFileError(f"{file}: not a readable CSV ({type(e).__name__}); save it as UTF-8 text") from None
    missing = [c for c in (ARCH_COLUMN, LATENCY_COLUMN) if c not in header]
    if missing:
        raise DataFileError(
            f"{file}: line 1: missing column(s) {', '.join(map(repr, missing))} (found {header}); "
            f"the first line must be the header '{example}'"
        )
    rows = []
    for line, row in enumerate(raw, start=2):
        text, cell = (row.get(ARCH_COLUMN) or "").strip(), (row.get(LATENCY_COLUMN) or "").strip()
        if not text and not cell:
            continue  # blank line
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise DataFileError(
                f"{file}: row {line}: latency {cell!r} of {text!r} is not a positive finite number; "
                "re-measure it or drop the row"
            )
        rows.append((line, text, value))
    if not rows:
        raise DataFileError(f"{file}: no data rows under the header; add one row per measured architecture")
    return rows
