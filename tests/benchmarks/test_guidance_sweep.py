"""``benchmarks/guidance_sweep.py`` end to end at toy size: three tiny fits, two scales per
generator, 8 samples a row; the report has every column in every row and its three files."""

from __future__ import annotations

import json
from pathlib import Path


def test_smoke_sweep(tmp_path: Path, single_thread: None, benchmark_script) -> None:
    script = benchmark_script("guidance_sweep")
    out, runs = tmp_path / "out", tmp_path / "runs"
    script.main(
        [
            "--epochs",
            "1",
            "--predictor-epochs",
            "1",
            "--max-steps",
            "3",
            "--samples",
            "8",
            "--pc-steps",
            "2",
            "--score-scales",
            "0",
            "1",
            "--cfg-scales",
            "0",
            "2",
            "--run-dir",
            str(runs),
            "--out",
            str(out),
        ]
    )
    assert {p.name for p in out.iterdir()} == {"guidance_sweep.json", "guidance_sweep.md", "guidance_sweep.png"}
    assert (out / "guidance_sweep.md").read_text().startswith("<!-- python benchmarks/guidance_sweep.py --epochs 1")
    assert len(list(runs.glob("*/done-*.json"))) == 3  # what a rerun reuses (nag.io.fit_cache's records)
    report = json.loads((out / "guidance_sweep.json").read_text())
    rows = report["rows"]
    assert [(r["method"], r["scale"]) for r in rows] == [
        ("uniform random", None),
        ("score, ode", 0),
        ("score, ode", 1),
        ("score, pc (2 steps)", 0),
        ("score, pc (2 steps)", 1),
        (f"discrete, cfg valid_acc={report['table_p95']:.4g}", 0),
        (f"discrete, cfg valid_acc={report['table_p95']:.4g}", 2),
        (f"discrete, cfg valid_acc={report['table_p95']:.4g} + regressor 10", 0),  # the config's regressor
        (f"discrete, cfg valid_acc={report['table_p95']:.4g} + regressor 10", 2),
    ]
    columns = {*script.COLUMNS, "uniqueness_string", "distinct_share", "samples"}
    for r in rows:
        assert columns <= r.keys(), columns - r.keys()
        assert r["samples"] == 8 and r["validity"] == 1.0  # projected onto the space
        assert 0 < r["valid_acc/mean"] <= r["valid_acc/best"] <= report["table_best"]
    random = rows[0]
    assert random["raw_validity"] == 1.0 and random["time_vs_random"] == 1.0
