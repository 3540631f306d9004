"""NAS-Bench-201 table: published optima, look-ups against the CSV, costs minimised, bad files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.nb201 import NB201Benchmark
from nag.errors import DataFileError, UnknownMetric
from nag.spaces.nb201 import NB201Space

SPACE = NB201Space()
FLAG = "data.init_args.benchmark.init_args.path"
COSTS = ("_latency", "_energy", "_flops_M", "_params_M")
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
OTHER = "|none~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def csv_path(shared_data: Path) -> Path:
    return shared_data / "nb201" / "nb201.csv"


@pytest.fixture(scope="module")
def rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench(csv_path: Path) -> NB201Benchmark:
    return NB201Benchmark(str(csv_path))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "nb201.csv"
    path.write_text(text)
    return str(path)


# --- the real table -------------------------------------------------------------------


def test_loads_every_cell(bench: NB201Benchmark, rows: list[dict[str, str]]) -> None:
    assert len(bench) == 15625
    assert len(set(bench.archs())) == 15625
    assert {"cifar10_test_200ep", "cifar100_test_200ep", "imagenet16_test_200ep"} <= set(bench.metrics)
    assert not {"index", "arch_str", "iso_key"} & set(bench.metrics)
    assert isinstance(bench.space, NB201Space)


@pytest.mark.parametrize(
    ("metric", "value", "index"),
    [
        ("cifar10_test_200ep", 94.3733, 6111),
        ("cifar100_test_200ep", 73.5133, 9930),
        ("imagenet16_test_200ep", 47.3111, 857),
    ],
)
def test_best_gives_the_published_optima(bench: NB201Benchmark, metric: str, value: float, index: int) -> None:
    arch, best = bench.best(metric)
    assert best == pytest.approx(value, abs=1e-4)
    assert bench.official_index[arch] == index
    assert bench.query(arch, metric) == best
    assert bench.higher_is_better(metric)


def test_official_index_follows_the_index_column(bench: NB201Benchmark, rows: list[dict[str, str]]) -> None:
    for r in rows[::997]:
        assert bench.official_index[SPACE.from_string(r["arch_str"])] == int(r["index"])


@pytest.mark.parametrize("i", [0, 857, 6111, 9930, 15624])
def test_query_returns_the_csv_values(bench: NB201Benchmark, rows: list[dict[str, str]], i: int) -> None:
    row = rows[i]
    arch = SPACE.from_string(row["arch_str"])
    assert arch in bench
    for metric in bench.metrics:
        if row[metric]:
            assert bench.query(arch, metric) == pytest.approx(float(row[metric]), rel=1e-12), metric
        else:
            assert math.isnan(bench.query(arch, metric)), metric


def test_isomorphic_cells_keep_their_own_rows(bench: NB201Benchmark, rows: list[dict[str, str]]) -> None:
    """Each of the 15,625 cells was trained separately, so isomorphic cells differ in value."""
    by_key: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_key.setdefault(r["iso_key"], []).append(r)
    twins = next(g for g in by_key.values() if len(g) > 1 and g[0]["cifar10_test_200ep"] != g[1]["cifar10_test_200ep"])
    a, b = (SPACE.from_string(r["arch_str"]) for r in twins[:2])
    assert SPACE.key(a) == SPACE.key(b)
    assert bench.query(a, "cifar10_test_200ep") == pytest.approx(float(twins[0]["cifar10_test_200ep"]))
    assert bench.query(b, "cifar10_test_200ep") == pytest.approx(float(twins[1]["cifar10_test_200ep"]))


def test_cost_columns_are_minimised(bench: NB201Benchmark, rows: list[dict[str, str]]) -> None:
    costs = [m for m in bench.metrics if m.endswith(COSTS)]
    # 4 FLOPs/params columns and, per dataset, 6 device latencies + 3 energies (HW-NAS-Bench)
    assert len(costs) == 4 + 3 * 9
    assert bench.minimize == frozenset(costs)
    for metric in costs:
        arch, value = bench.best(metric)
        assert not bench.higher_is_better(metric)
        assert value == pytest.approx(min(float(r[metric]) for r in rows if r[metric]), rel=1e-12), metric
        assert bench.query(arch, metric) == value
    # arithmetic intensity is not a cost: higher is better
    metric = "hwnb_cifar10_eyeriss_arithmetic_intensity"
    assert bench.higher_is_better(metric)
    assert bench.best(metric)[1] == pytest.approx(max(float(r[metric]) for r in rows if r[metric]))


@pytest.mark.parametrize(
    "metric", ["cifar10_flops_M", "cifar10_params_M", "imagenet16_flops_M", "imagenet16_valid_200ep_1seed"]
)
def test_partial_columns_are_nan_where_the_csv_is_empty(
    bench: NB201Benchmark, rows: list[dict[str, str]], metric: str
) -> None:
    col = bench.column(metric)
    assert np.count_nonzero(~np.isnan(col)) == 9445
    index = {a: i for i, a in enumerate(bench.archs())}
    missing = {index[SPACE.from_string(r["arch_str"])] for r in rows if not r[metric]}
    assert len(missing) == 15625 - 9445
    assert set(np.flatnonzero(np.isnan(col)).tolist()) == missing
    # the optimum ignores the missing entries
    assert not math.isnan(bench.best(metric)[1])


def test_full_columns_have_no_nan(bench: NB201Benchmark) -> None:
    for metric in ("cifar10_test_200ep", "cifar100_test_200ep", "imagenet16_test_200ep", "cifar10_valid_200ep_1seed"):
        assert not np.isnan(bench.column(metric)).any(), metric


def test_unknown_metric_names_it(bench: NB201Benchmark) -> None:
    arch = SPACE.from_string(CELL)
    for call in (lambda: bench.best("cifar10_test_12ep"), lambda: bench.query(arch, "cifar10_test_12ep")):
        with pytest.raises(UnknownMetric, match="'cifar10_test_12ep'") as info:
            call()
        assert "cifar10_test_200ep" in str(info.value)  # lists what is available


# --- small files ------------------------------------------------------------------------


def test_small_table(tmp_path: Path) -> None:
    bench = NB201Benchmark(write(tmp_path, f"index,arch_str,acc,x_latency\n7,{CELL},90.5,3\n3,{OTHER},,1.5\n"))
    a, b = SPACE.from_string(CELL), SPACE.from_string(OTHER)
    assert len(bench) == 2 and bench.metrics == ("acc", "x_latency")
    assert bench.official_index == {a: 7, b: 3}
    assert bench.query(a, "acc") == 90.5 and math.isnan(bench.query(b, "acc"))
    assert bench.best("acc") == (a, 90.5)
    assert bench.best("x_latency") == (b, 1.5)


def test_missing_file_names_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "nb201.csv"
    with pytest.raises(DataFileError, match="not found") as info:
        NB201Benchmark(str(path))
    assert FLAG in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_file_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="is empty") as info:
        NB201Benchmark(write(tmp_path, ""))
    assert FLAG in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"index,arch,acc\n0,{CELL},1\n", "missing column 'arch_str'"),
        ("index,arch_str,acc\n", "no rows"),
        (f"index,arch_str,acc\n0,{CELL},1.5\n1,{OTHER},n/a\n", r"row 3, column 'acc': 'n/a' is not a number"),
    ],
)
def test_malformed_files_raise_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataFileError, match=match) as info:
        NB201Benchmark(path)
    assert path in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "arch_str",
    [
        "|conv7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    ],
)
def test_bad_architecture_string_names_file_and_row(tmp_path: Path, arch_str: str) -> None:
    path = write(tmp_path, f"index,arch_str,acc\n0,{CELL},1\n1,{arch_str},2\n")
    with pytest.raises(DataFileError, match=r"row 3: nb201: ") as info:
        NB201Benchmark(path)
    assert path in str(info.value)


def test_duplicate_cells_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, f"index,arch_str,acc\n0,{CELL},1\n1,{CELL},2\n")
    with pytest.raises(DataFileError, match="row 3 repeats cell"):
        NB201Benchmark(path)


def test_non_utf8_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFileError, match="not a readable CSV"):
        NB201Benchmark(str(path))


def test_best_of_an_empty_column_names_the_metric(tmp_path: Path) -> None:
    bench = NB201Benchmark(write(tmp_path, f"index,arch_str,acc,empty\n0,{CELL},1,\n"))
    with pytest.raises(UnknownMetric, match="'empty' .* has no values"):
        bench.best("empty")
