"""Result rows as CSV or JSON files, written atomically: what ``nag generate``, ``nag search``
and the hierarchical pipeline write."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nag.errors import ConfigError
from nag.io.atomic import atomic_write


def check_output(path: str | Path) -> Path:
    """Refuse an output name :func:`write_rows` cannot write before any work is done."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ConfigError(f"--output {str(path)!r}: expected a .csv or .json file name")
    return path


def write_rows(
    rows: list[dict[str, Any]] | dict[str, Any], path: str | Path, empty_columns: Sequence[str] = ("sample",)
) -> Path:
    """CSV (a list of rows) or JSON (any JSON value) by suffix, written to a temporary file and
    renamed, so a killed run never leaves a half-written output behind. A CSV of no rows is
    the header ``empty_columns``, so a reader finds the columns it expects and no row."""
    path = check_output(path)
    with atomic_write(path, newline="") as f:
        if path.suffix == ".json":
            json.dump(rows, f, indent=1, default=float)
        else:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(empty_columns))
            writer.writeheader()
            writer.writerows(rows)
    return path
