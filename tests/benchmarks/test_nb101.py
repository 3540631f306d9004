"""NAS-Bench-101 table: look-ups by graph hash, optima, and one-line errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.nb101 import NB101Benchmark
from nag.errors import ArchitectureNotInBenchmark, DataFileError, UnknownMetric
from nag.spaces.nb101 import NB101Cell, NB101Space

SPACE = NB101Space()
METRICS = ("val_acc_4ep", "val_acc_12ep", "val_acc_36ep", "val_acc_108ep", "params", "train_time")


@pytest.fixture(scope="module")
def table_path(shared_data: Path) -> Path:
    return shared_data / "nb101" / "nb101_1k.json"


@pytest.fixture(scope="module")
def table(table_path: Path) -> dict:
    return json.loads(table_path.read_text())


@pytest.fixture(scope="module")
def bench(table_path: Path) -> NB101Benchmark:
    return NB101Benchmark(str(table_path))


def small_table(**overrides: object) -> dict:
    """Two real-format rows (7x7 padded adjacency, op codes, hash) with made-up metrics."""
    cells = [
        SPACE.from_string("input,conv3x3-bn-relu,output|011,001,000"),
        SPACE.from_string("input,maxpool3x3,conv1x1-bn-relu,output|0100,0011,0001,0000"),
    ]
    adjacency, operations = [], []
    for cell in cells:
        n = len(cell.ops)
        padded = np.zeros((7, 7))
        padded[:n, :n] = cell.adjacency
        adjacency.append(padded.tolist())
        codes = {"input": -1, "output": -2, "conv3x3-bn-relu": 0, "conv1x1-bn-relu": 1, "maxpool3x3": 2}
        operations.append([codes[op] for op in cell.ops] + [-3] * (7 - n))
    data = {
        "adjacency": adjacency,
        "operations": operations,
        "key": [SPACE.key(c) for c in cells],
        "4_final_validation_accuracy": [0.25, 0.5],
        "12_final_validation_accuracy": [0.5, 0.625],
        "36_final_validation_accuracy": [0.75, 0.875],
        "108_final_validation_accuracy": [0.875, 0.75],
        "trainable_parameters": [1000, 500],
        "final_training_time": [10.0, 20.0],
    }
    data.update(overrides)
    return data


def write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "nb101.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_loads_every_row(bench: NB101Benchmark) -> None:
    assert len(bench) == 1000
    assert bench.metrics == METRICS
    assert bench.minimize == frozenset({"params", "train_time"})
    assert isinstance(bench.space, NB101Space)


def test_query_returns_the_file_values(bench: NB101Benchmark, table: dict) -> None:
    for i in (0, 1, 500, 999):
        cell = NB101Space.from_benchmark_record(table["adjacency"][i], table["operations"][i])
        assert bench.index(cell) == i
        for epochs in (4, 12, 36, 108):
            expected = 100 * table[f"{epochs}_final_validation_accuracy"][i]
            assert bench.query(cell, f"val_acc_{epochs}ep") == pytest.approx(expected)
        assert bench.query(cell, "params") == table["trainable_parameters"][i]
        assert bench.query(cell, "train_time") == pytest.approx(table["final_training_time"][i])


def test_query_accepts_any_form_of_the_same_cell(bench: NB101Benchmark) -> None:
    cell = next(c for c in bench.archs() if len(c.ops) == 6)
    # an extra dead-end node fed by the input is pruned away, so it is the same cell
    adjacency = [list(row[:-1]) + [0] + [row[-1]] for row in cell.adjacency]
    adjacency[0][5] = 1
    adjacency.insert(5, [0] * 7)
    padded = NB101Cell(tuple(map(tuple, adjacency)), (*cell.ops[:-1], "maxpool3x3", "output"))
    assert padded != cell and SPACE.prune(padded) == cell
    assert padded in bench
    assert bench.query(padded, "val_acc_108ep") == bench.query(cell, "val_acc_108ep")


def test_best_maximises_accuracy_and_minimises_costs(bench: NB101Benchmark, table: dict) -> None:
    arch, value = bench.best("val_acc_108ep")
    assert value == pytest.approx(100 * max(table["108_final_validation_accuracy"]))
    assert bench.query(arch, "val_acc_108ep") == value
    assert bench.best("params")[1] == min(table["trainable_parameters"])
    assert bench.best("train_time")[1] == pytest.approx(min(table["final_training_time"]))
    assert bench.higher_is_better("val_acc_4ep") and not bench.higher_is_better("params")


def test_unknown_metric(bench: NB101Benchmark) -> None:
    with pytest.raises(UnknownMetric, match="unknown metric 'test_acc'.*available: val_acc_4ep"):
        bench.best("test_acc")


def test_cell_outside_the_table(bench: NB101Benchmark) -> None:
    outside = next(c for c in SPACE.sample(100, np.random.default_rng(0)) if c not in bench)
    with pytest.raises(ArchitectureNotInBenchmark, match="only benchmarked architectures can be queried"):
        bench.query(outside, "val_acc_108ep")


def test_small_table_in_percent(tmp_path: Path) -> None:
    bench = NB101Benchmark(write(tmp_path, small_table()))
    assert len(bench) == 2
    assert bench.best("val_acc_108ep") == (SPACE.from_string("input,conv3x3-bn-relu,output|011,001,000"), 87.5)
    assert bench.best("params")[1] == 500


def test_missing_file_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="path.*nb101_1k.json' not found") as info:
        NB101Benchmark(str(tmp_path / "nb101_1k.json"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list; expected an object"),
        (small_table(key=None), "has no list field 'key'"),
        ({k: v for k, v in small_table().items() if k != "final_training_time"}, "no list field 'final_training_time'"),
        (small_table(trainable_parameters=[1]), "field 'trainable_parameters' has 1 entries but 'adjacency' has 2"),
        (small_table(key=["0" * 32, "1" * 32]), "row 0, field 'key' is '0{32}' but the cell hashes to"),
        (
            small_table(operations=[[-1, 7, -2, -3, -3, -3, -3]] * 2),
            "row 0, fields 'adjacency'/'operations'.*unknown codes",
        ),
        (small_table(final_training_time=["fast", 1.0]), "field 'final_training_time' holds non-numeric entries"),
    ],
)
def test_malformed_files_raise_one_line_naming_file_and_field(tmp_path: Path, content: object, match: str) -> None:
    path = tmp_path / "nb101.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataFileError, match=match) as info:
        NB101Benchmark(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_duplicate_cells_are_rejected(tmp_path: Path) -> None:
    data = small_table()
    data = {k: [v[0], v[0]] for k, v in data.items()}
    with pytest.raises(DataFileError, match="rows 0 and 1 hold the same cell"):
        NB101Benchmark(write(tmp_path, data))
