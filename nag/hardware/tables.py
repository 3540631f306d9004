"""A user's device table: ``arch,latency`` rows measured on their device, and the budget.

The file is a CSV with (at least) the columns ``arch`` (the space's string form, e.g. NB201's
``|nor_conv_3x3~0|+|...|``) and ``latency`` (any unit, the budget's unit). Each problem fails
with one line naming the file, the row and the fix: a missing column, an architecture that
does not parse, the same architecture twice, a latency that is not a positive number, fewer
rows than the adaptation needs.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nag.errors import ConfigError, DataFileError, InvalidArchitecture
from nag.spaces.base import Arch, SearchSpace

#: Rows a device table must have by default: the adapted predictor ranks from 5, loosely.
MIN_ROWS = 5
#: Below this many rows the device path says its intervals are wide (measure more).
FEW_ROWS = 10
ARCH_COLUMN = "arch"
LATENCY_COLUMN = "latency"


def _line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass
class DeviceTable:
    """Measured architectures of one device, in file order (``lines``: CSV line numbers)."""

    space: SearchSpace
    archs: list[Arch]
    latencies: np.ndarray
    path: Path | None = None
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latencies = np.asarray(self.latencies, dtype=np.float64)
        self._index = {self.space.to_string(a): i for i, a in enumerate(self.archs)}

    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, arch: Arch) -> bool:
        return self.space.to_string(arch) in self._index

    def measured(self, arch: Arch) -> float:
        """The measured latency of ``arch`` (NaN when the table does not have it)."""
        i = self._index.get(self.space.to_string(arch))
        return math.nan if i is None else float(self.latencies[i])

    def subset(self, rows: Sequence[int]) -> DeviceTable:
        return DeviceTable(
            self.space,
            [self.archs[i] for i in rows],
            self.latencies[list(rows)],
            self.path,
            [self.lines[i] for i in rows] if self.lines else [],
        )

    def extended(self, archs: Sequence[Arch], latencies: Sequence[float]) -> DeviceTable:
        """This table plus new measurements (architectures it already has are skipped)."""
        new = [(a, float(v)) for a, v in zip(archs, latencies) if a not in self]
        return DeviceTable(
            self.space,
            [*self.archs, *(a for a, _ in new)],
            np.concatenate([self.latencies, [v for _, v in new]]),
            self.path,
        )


def read_latency_rows(file: Path) -> list[tuple[int, str, float]]:
    """``(line, arch string, latency)`` per data row of an ``arch,latency`` CSV (line numbers
    count the header as 1; blank rows skipped; other columns ignored)."""
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


def read_device_table(path: str | Path, space: SearchSpace, min_rows: int = MIN_ROWS) -> DeviceTable:
    """Read and check a device table (see the module docstring)."""
    file = Path(path).expanduser()
    example = f"{ARCH_COLUMN},{LATENCY_COLUMN}"
    if not file.is_file():
        raise DataFileError(
            f"--device_table {str(file)!r}: no such file; pass a CSV with header '{example}' "
            "and one row per architecture measured on your device"
        )
    archs: list[Arch] = []
    values: list[float] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line, text, value in read_latency_rows(file):
        try:
            arch = space.from_string(text)
        except InvalidArchitecture as e:
            raise DataFileError(
                f"{file}: row {line}: arch {text!r} does not parse ({_line(e)}); write it in the "
                f"space's string form, e.g. {space.to_string(space.sample(1, np.random.default_rng(0))[0])!r}"
            ) from None
        canonical = space.to_string(arch)
        if canonical in seen:
            raise DataFileError(
                f"{file}: rows {seen[canonical]} and {line} give the same architecture {text!r}; "
                "keep one row per architecture (average repeated measurements first)"
            )
        seen[canonical] = line
        archs.append(arch)
        values.append(value)
        lines.append(line)
    if len(archs) < min_rows:
        last = f" (the last data row is line {lines[-1]})" if lines else ""
        raise DataFileError(
            f"{file}: {len(archs)} measured architecture(s){last}, fewer than the {min_rows} needed; "
            f"measure at least {min_rows} architectures on the device and add a row for each"
        )
    return DeviceTable(space, archs, np.array(values), file, lines)


@dataclass(frozen=True)
class Budget:
    """``metric <= value`` (the device table's unit)."""

    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}<={self.value:g}"


_BUDGET = re.compile(r"^\s*(?:(?P<metric>[A-Za-z_][\w.-]*)\s*(?P<op><=|<)\s*)?(?P<value>[^<>=\s]+)\s*$")


def parse_budget(text: str | float) -> Budget:
    """``"latency<=5.0"`` (``<`` reads as ``<=``; a bare number means ``latency<=number``)."""
    if isinstance(text, (int, float)):
        value, metric = float(text), LATENCY_COLUMN
    else:
        m = _BUDGET.match(str(text))
        try:
            value = float(m.group("value")) if m else math.nan
        except ValueError:
            value = math.nan
        metric = (m.group("metric") if m else None) or LATENCY_COLUMN
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"--budget {str(text)!r}: expected 'latency<=<positive number>' in the device table's unit, "
            "e.g. --budget 'latency<=5.0'"
        )
    if metric != LATENCY_COLUMN:
        raise ConfigError(
            f"--budget {str(text)!r}: a device table gives '{LATENCY_COLUMN}'; write 'latency<={value:g}'"
        )
    return Budget(metric, value)
