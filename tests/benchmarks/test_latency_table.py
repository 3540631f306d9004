"""Bring-your-own latency table: join onto a base benchmark, and one-line errors naming the row."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks import NB201Benchmark, NBGraphBenchmark
from nag.benchmarks.base import Benchmark
from nag.benchmarks.latency_table import LatencyTableBenchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import ConfigError, DataFileError


@pytest.fixture(scope="module")
def base(request: pytest.FixtureRequest) -> tuple[Benchmark, str]:
    """Real NB201 (with HW-NAS-Bench FPGA latency) where the shared tables exist, else
    NAS-Bench-Graph's proteins table, which ships with the package."""
    try:
        shared = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return NBGraphBenchmark("proteins"), "latency"
    return NB201Benchmark(str(shared / "nb201" / "nb201.csv")), "hwnb_cifar10_fpga_latency"


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("arch", "latency")) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def measured_rows(bench: Benchmark, source: str, n: int, seed: int = 0) -> dict[str, float]:
    """A "new device": ``n`` real rows of the table, latency scaled by 1.7 and shifted, as strings."""
    rng = np.random.default_rng(seed)
    archs = bench.archs()
    picked = rng.choice(len(archs), size=n, replace=False)
    return {bench.space.to_string(archs[i]): 1.7 * bench.query(archs[i], source) + 0.25 for i in picked}


def test_join_adds_one_metric(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    bench, source = base
    table = measured_rows(bench, source, 300)
    path = write_csv(tmp_path / "dev.csv", [(a, repr(v)) for a, v in table.items()])
    joined = LatencyTableBenchmark(bench, str(path), metric="my_device_latency")
    assert joined.metrics == (*bench.metrics, "my_device_latency")
    assert joined.num_measured == 300 and len(joined) == len(bench)
    assert "my_device_latency" in joined.minimize and bench.minimize <= joined.minimize
    for text, value in table.items():
        arch = bench.space.from_string(text)
        assert joined.query(arch, "my_device_latency") == value
        assert joined.query(arch, source) == bench.query(arch, source)
    column = joined.column("my_device_latency")
    assert int((~np.isnan(column)).sum()) == 300
    best_arch, best_value = joined.best("my_device_latency")
    assert best_value == min(table.values())
    assert table[bench.space.to_string(best_arch)] == best_value


def test_joined_metric_is_a_training_target(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    """The condition path: unmeasured rows are dropped, measured ones carry the new metric."""
    bench, source = base
    table = measured_rows(bench, source, 120, seed=1)
    joined = LatencyTableBenchmark(bench, str(write_csv(tmp_path / "dev.csv", [(a, str(v)) for a, v in table.items()])))
    dm = ArchitectureDataModule(joined, targets=["device_latency"], split=(0.8, 0.2, 0.0), seed=0)
    archs = dm.archs("train") + dm.archs("val")
    assert len(archs) == 120
    assert {bench.space.to_string(a) for a in archs} == set(table)
    assert dm.target_stats["device_latency"]["mean"] == pytest.approx(
        np.mean([table[bench.space.to_string(a)] for a in dm.archs("train")])
    )


def first_archs(bench: Benchmark, n: int) -> list[str]:
    return [bench.space.to_string(a) for a in bench.archs()[:n]]


def test_missing_file(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"init_args\.path: latency table .* not found"):
        LatencyTableBenchmark(base[0], str(tmp_path / "nope.csv"))


def test_wrong_columns(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    a = first_archs(base[0], 1)[0]
    path = write_csv(tmp_path / "t.csv", [(a, "1.0")], header=("arch_str", "ms"))
    with pytest.raises(DataFileError, match=r"missing column\(s\) 'arch', 'latency'.*found \['arch_str', 'ms'\]"):
        LatencyTableBenchmark(base[0], str(path))


def test_unparsable_arch_names_the_row(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    a, b = first_archs(base[0], 2)
    path = write_csv(tmp_path / "t.csv", [(a, "1.0"), (b, "2.0"), ("|conv~0|+|what|", "3.0")])
    with pytest.raises(DataFileError, match=r"row 4: arch '\|conv~0\|\+\|what\|' does not parse"):
        LatencyTableBenchmark(base[0], str(path))


@pytest.mark.parametrize("cell", ["nan", "", "fast", "-1", "inf"])
def test_bad_latency_names_the_row(base: tuple[Benchmark, str], tmp_path: Path, cell: str) -> None:
    a, b = first_archs(base[0], 2)
    path = write_csv(tmp_path / "t.csv", [(a, "1.0"), (b, cell)])
    with pytest.raises(DataFileError, match=rf"row 3: latency '{cell}' .*not a positive finite number"):
        LatencyTableBenchmark(base[0], str(path))


def test_duplicate_rows(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    a, b = first_archs(base[0], 2)
    path = write_csv(tmp_path / "t.csv", [(a, "1.0"), (b, "2.0"), (a, "1.1")])
    with pytest.raises(DataFileError, match="rows 2 and 4 give the same architecture"):
        LatencyTableBenchmark(base[0], str(path))


def test_empty_table_and_name_clash(base: tuple[Benchmark, str], tmp_path: Path) -> None:
    bench, source = base
    with pytest.raises(DataFileError, match="no data rows"):
        LatencyTableBenchmark(bench, str(write_csv(tmp_path / "t.csv", [])))
    path = write_csv(tmp_path / "u.csv", [(first_archs(bench, 1)[0], "1.0")])
    with pytest.raises(ConfigError, match=f"{source!r} is already a column"):
        LatencyTableBenchmark(bench, str(path), metric=source)


def test_arch_outside_the_benchmark(tmp_path: Path) -> None:
    """NAS-Bench-Graph's proteins table holds only 5 of the 9 ops: a gat cell is not in it."""
    proteins = NBGraphBenchmark("proteins")
    inside = proteins.space.to_string(proteins.archs()[0])
    path = write_csv(tmp_path / "t.csv", [(inside, "1.0"), ("gat~0|gat~0|gat~0|gat~0", "2.0")])
    with pytest.raises(DataFileError, match=r"row 3: arch 'gat~0\|gat~0\|gat~0\|gat~0' is not in NBGraphBenchmark"):
        LatencyTableBenchmark(proteins, str(path))
    ok = LatencyTableBenchmark(proteins, str(write_csv(tmp_path / "v.csv", [(inside, "1.5")])))
    assert ok.query(proteins.archs()[0], "device_latency") == 1.5
    assert math.isnan(ok.column("device_latency")[1])
