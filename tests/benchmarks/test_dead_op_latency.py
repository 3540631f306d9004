"""``benchmarks/dead_op_latency.py`` at toy size, and ``device_flow.py``'s join of its table onto
NB201: the table has one row per timed cell, and the joined file reads as an NB201 benchmark whose
new device column is missing (NaN) exactly where the cell was not timed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from nag.benchmarks import NB201Benchmark

CELLS = (
    "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|",
)


def test_smoke_table_and_report(tmp_path: Path, single_thread: None, benchmark_script) -> None:
    script = benchmark_script("dead_op_latency")
    script.main(
        [
            "--cells",
            "6",
            "--repeats",
            "2",
            "--rounds",
            "2",
            "--chunk",
            "4",
            "--warmup",
            "1",
            "--retest",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    with (tmp_path / "dead_op_latency.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len({r["arch_str"] for r in rows}) == 6
    assert all(float(r[script.COLUMN]) > 0 for r in rows)
    report = json.loads((tmp_path / "dead_op_latency.json").read_text())
    assert report["cells"] == 6 and 0 <= report["share_with_dead_ops"] <= 1
    header = (tmp_path / "dead_op_latency.md").read_text().splitlines()[0]
    assert header.startswith("<!-- python benchmarks/dead_op_latency.py --cells 6")


def test_extra_table_joins_on_the_cell(tmp_path: Path, benchmark_script) -> None:
    nb201 = tmp_path / "nb201.csv"
    with nb201.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "arch_str", "cifar10_test_200ep"])
        writer.writerows([i, cell, 90 + i] for i, cell in enumerate(CELLS))
    extra = tmp_path / "timed.csv"
    with extra.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "eager_cpu_cifar10_latency"])
        writer.writerows([[CELLS[2], 7.5], [CELLS[0], 3.25]])
    merged = benchmark_script("device_flow").with_extra_table(nb201, extra, tmp_path)
    bench = NB201Benchmark(str(merged))
    latency = bench.column("eager_cpu_cifar10_latency")
    assert latency[0] == 3.25 and latency[2] == 7.5 and math.isnan(latency[1])
    assert list(bench.column("cifar10_test_200ep")) == [90, 91, 92]
    assert "eager_cpu_cifar10_latency" in bench.minimize
