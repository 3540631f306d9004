"""OFALatencyBenchmark: the HELP latency table loads into queryable metrics keyed by subnet
(its layers and its input resolution ``r``), its space searches the table's resolutions, and a
missing or malformed file fails with one line naming the file and the column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.ofa_latency import OFALatencyBenchmark
from nag.errors import ArchitectureNotInBenchmark, DataFileError, UnknownMetric
from nag.spaces.mbv3 import MBV3Space, MBV3Subnet

GPUS = ("2080ti", "titan_rtx", "titan_xp", "v100")
LATENCY = [f"help_lat_{gpu}_{batch}" for gpu in GPUS for batch in (1, 32, 64)]
HEADER = ["ks", "e", "d", "r", "help_lat_2080ti_1", "help_lat_v100_64"]
ROW_A = ["-".join(["3-5-7-7"] * 5), "-".join(["3-4-6-6"] * 5), "2-2-2-2-2", "160", "5.5", "30.0"]
ROW_B = ["-".join(["7"] * 20), "-".join(["6"] * 20), "4-4-4-4-4", "224", "9.0", "50.0"]


@pytest.fixture(scope="module")
def bench(shared_data: Path) -> OFALatencyBenchmark:
    return OFALatencyBenchmark(str(shared_data / "mbv3" / "ofa_mbv3_latency.csv"))


def write_csv(path: Path, rows: list[list[str]]) -> str:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


def test_loads_every_row_with_all_metrics(bench: OFALatencyBenchmark, shared_data: Path) -> None:
    assert len(bench) == 5000
    assert bench.metrics == (*LATENCY, "resolution")
    assert bench.minimize == frozenset(LATENCY)
    assert not bench.higher_is_better("help_lat_v100_1") and bench.higher_is_better("resolution")
    assert isinstance(bench.space, MBV3Space)
    with (shared_data / "mbv3" / "ofa_mbv3_latency.csv").open(newline="") as f:
        first = next(csv.DictReader(f))
    ks, e, d = ([int(v) for v in first[c].split("-")] for c in ("ks", "e", "d"))
    arch = bench.space.from_ofa(ks, e, d, int(first["r"]))
    assert bench.archs()[0] == arch and arch in bench
    assert bench.query(arch, "resolution") == float(first["r"]) == arch.resolution
    for metric in LATENCY:
        assert bench.query(arch, metric) == pytest.approx(float(first[metric]))


def test_query_ignores_inactive_slot_values(bench: OFALatencyBenchmark) -> None:
    arch = bench.archs()[1]
    ks, e, d, r = bench.space.to_ofa(arch)
    filled = [5 if v == 0 else v for v in ks], [3 if v == 0 else v for v in e], d, r
    same = bench.space.from_ofa(*filled)
    assert same == arch and bench.index(same) == 1


def test_best_is_the_minimum_latency(bench: OFALatencyBenchmark) -> None:
    for metric in ("help_lat_2080ti_1", "help_lat_titan_xp_64"):
        arch, value = bench.best(metric)
        assert value == bench.column(metric).min() == bench.query(arch, metric)
    assert bench.best("resolution")[1] == 224.0


def test_unknown_metric_and_unbenchmarked_arch(bench: OFALatencyBenchmark) -> None:
    with pytest.raises(UnknownMetric, match="unknown metric 'accuracy'.*help_lat_2080ti_1"):
        bench.query(bench.archs()[0], "accuracy")
    absent = next(a for a in bench.space.sample(50, np.random.default_rng(0)) if a not in bench)
    with pytest.raises(ArchitectureNotInBenchmark, match="not in OFALatencyBenchmark"):
        bench.query(absent, "help_lat_2080ti_1")


def test_small_table_and_custom_space(tmp_path: Path) -> None:
    space = MBV3Space()
    bench = OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A, [], ROW_B, []]), space=space)
    assert bench.space is space and bench.metrics == ("help_lat_2080ti_1", "help_lat_v100_64", "resolution")
    arch, value = bench.best("help_lat_v100_64")
    assert len(bench) == 2 and value == 30.0 and arch == MBV3Subnet((((3, 3), (5, 4)),) * 5, 160)


def test_space_searches_the_tables_resolutions(bench: OFALatencyBenchmark) -> None:
    """Without a space, the benchmark's space holds exactly the sides of the CSV's r column
    (HELP's: 128 to 224 in steps of 4), so every row is a member and sampling stays in the table's range."""
    assert bench.space.resolutions == tuple(sorted(set(bench.column("resolution").astype(int))))
    assert bench.space.resolutions == tuple(range(128, 225, 4))
    assert {a.resolution for a in bench.archs()} == set(bench.space.resolutions)
    assert all(bench.query(a, "resolution") == a.resolution for a in bench.archs()[:50])


def test_small_tables_space_has_its_resolutions(tmp_path: Path) -> None:
    third = list(ROW_A)
    third[3] = "136"
    bench = OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_B, ROW_A, third]))
    assert bench.space.resolutions == (136, 160, 224)
    assert [a.resolution for a in bench.archs()] == [224, 160, 136]
    assert bench.archs()[1].stages == bench.archs()[2].stages  # same layers at two sides: two subnets
    assert bench.query(MBV3Subnet(bench.archs()[1].stages, 136), "help_lat_2080ti_1") == 5.5
    assert {a.resolution for a in bench.space.sample(30, np.random.default_rng(0))} == {136, 160, 224}


def test_rows_outside_a_given_space_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"line 3 \(columns ks, e, d, r\) is not a valid subnet: .*resolution 224"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A, ROW_B]), space=MBV3Space(resolutions=[160]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="path: data file .*nope.csv.* not found"):
        OFALatencyBenchmark(str(tmp_path / "nope.csv"))


@pytest.mark.parametrize("column", ["ks", "e", "d", "r"])
def test_missing_column(tmp_path: Path, column: str) -> None:
    i = HEADER.index(column)
    rows = [r[:i] + r[i + 1 :] for r in (HEADER, ROW_A)]
    with pytest.raises(DataFileError, match=rf"t\.csv: missing column\(s\) {column};"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", rows))


def test_no_latency_columns(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no latency columns"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER[:4], ROW_A[:4]]))


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("help_lat_2080ti_1", "fast", "line 3, column help_lat_2080ti_1 is 'fast'"),
        ("help_lat_v100_64", "nan", "line 3, column help_lat_v100_64 is 'nan'"),
        ("help_lat_v100_64", "", "column help_lat_v100_64 is ''"),
        ("r", "inf", "column r is 'inf'"),
        ("ks", "7-x", "line 3, column ks is '7-x'"),
        ("r", "160.5", "line 3, column r is '160.5'; expected a whole number"),
        ("d", "2-2-2-2-5", r"line 3 \(columns ks, e, d, r\) is not a valid subnet: .*depth 5"),
        ("e", "-".join(["5"] * 20), "expand ratio 5"),
    ],
)
def test_malformed_values(tmp_path: Path, column: str, value: str, fragment: str) -> None:
    bad = list(ROW_B)
    bad[HEADER.index(column)] = value
    with pytest.raises(DataFileError, match=rf"t\.csv: .*{fragment}"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A, bad]))


def test_short_row(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="line 2 has 5 fields, the header has 6"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A[:5]]))


def test_duplicate_subnet_is_rejected(tmp_path: Path) -> None:
    dup = list(ROW_A)
    dup[0] = "-".join(["3-5-3-3"] * 5)  # differs from ROW_A only in inactive slots
    dup[4:] = ["1.0", "2.0"]
    with pytest.raises(DataFileError, match="lines 2 and 4 hold the same subnet"):
        OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A, ROW_B, dup]))
    dup[3] = "224"  # the same layers at another resolution: another subnet
    assert len(OFALatencyBenchmark(write_csv(tmp_path / "t.csv", [HEADER, ROW_A, ROW_B, dup]))) == 3


def test_every_value_is_finite(bench: OFALatencyBenchmark) -> None:
    assert all(math.isfinite(v) for m in bench.metrics for v in bench.column(m))
    assert set(np.unique(bench.column("resolution"))) == set(range(128, 225, 4))
