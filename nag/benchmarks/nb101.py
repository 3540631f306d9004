"""NAS-Bench-101 on CIFAR-10: accuracy at four training budgets, size and training time per cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nag.benchmarks.base import Benchmark, require_file
from nag.errors import DataFileError, InvalidArchitecture
from nag.spaces.nb101 import NB101Cell, NB101Space

#: Our metric name -> field of ``nb101_1k.json``.
ACCURACY_FIELDS = {f"val_acc_{e}ep": f"{e}_final_validation_accuracy" for e in (4, 12, 36, 108)}
OTHER_FIELDS = {"params": "trainable_parameters", "train_time": "final_training_time"}


class NB101Benchmark(Benchmark[NB101Cell]):
    """The ``nb101_1k.json`` subset (see ``../shared/data/README.md``), one row per cell, looked
    up by the NAS-Bench-101 graph hash so any isomorphic or unpruned form of a cell finds it.

    Metrics: ``val_acc_4ep``, ``val_acc_12ep``, ``val_acc_36ep``, ``val_acc_108ep`` (validation
    accuracy after that many training epochs, in percent like the other benchmarks; the file
    stores fractions), ``params`` (trainable parameters) and ``train_time`` (seconds).
    """

    minimize = frozenset({"params", "train_time"})

    def __init__(self, path: str | Path, space: NB101Space | None = None) -> None:
        self.space = space if space is not None else NB101Space()
        file = require_file(path, "path")
        where = str(file)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFileError(f"{where} is not valid JSON ({e}); re-copy nb101_1k.json") from None
        fields = ["adjacency", "operations", "key", *ACCURACY_FIELDS.values(), *OTHER_FIELDS.values()]
        if not isinstance(data, dict):
            raise DataFileError(f"{where} holds a JSON {type(data).__name__}; expected an object of lists {fields}")
        for field in fields:
            if not isinstance(data.get(field), list):
                raise DataFileError(f"{where} has no list field {field!r}; expected nb101_1k.json's fields {fields}")
            if len(data[field]) != len(data["adjacency"]):
                raise DataFileError(
                    f"{where}: field {field!r} has {len(data[field])} entries but 'adjacency' has "
                    f"{len(data['adjacency'])}; the file is truncated or mixed up"
                )
        self._set_table(self._cells(data, where), self._columns_of(data, where))

    def _cells(self, data: dict, where: str) -> list[NB101Cell]:
        """The cells, each checked against its stored hash so look-ups by key cannot drift."""
        cells: list[NB101Cell] = []
        rows: dict[str, int] = {}
        for i, (adjacency, operations, stored) in enumerate(zip(data["adjacency"], data["operations"], data["key"])):
            try:
                cell = NB101Space.from_benchmark_record(adjacency, operations)
            except InvalidArchitecture as e:
                raise DataFileError(f"{where}: row {i}, fields 'adjacency'/'operations': {e}") from None
            key = self.space.key(cell)
            if key != stored:
                raise DataFileError(
                    f"{where}: row {i}, field 'key' is {stored!r} but the cell hashes to {key!r}; "
                    "the table is corrupt or not NAS-Bench-101"
                )
            if key in rows:
                raise DataFileError(f"{where}: rows {rows[key]} and {i} hold the same cell {key!r}")
            rows[key] = i
            cells.append(cell)
        return cells

    @staticmethod
    def _columns_of(data: dict, where: str) -> dict[str, np.ndarray]:
        columns: dict[str, np.ndarray] = {}
        for name, field in {**ACCURACY_FIELDS, **OTHER_FIELDS}.items():
            try:
                values = np.asarray(data[field], dtype=np.float64)
            except (TypeError, ValueError):
                raise DataFileError(f"{where}: field {field!r} holds non-numeric entries") from None
            columns[name] = values * 100.0 if name in ACCURACY_FIELDS else values
        return columns
