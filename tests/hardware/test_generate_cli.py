"""``nag generate --device_table my.csv --budget "latency<=B"`` end to end on NAS-Bench-Graph
(embedded in its package: no files needed), and its one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from nag.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "nbgraph" / "diffusion.yaml")
TINY = ["--model.init_args.dim=16", "--model.init_args.layers=1", "--model.init_args.heads=2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    main(
        [
            "fit",
            "--config",
            CONFIG,
            *TINY,
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={root}",
        ]
    )
    return next(root.rglob("last.ckpt"))


@pytest.fixture(scope="module")
def device_table(tmp_path_factory) -> tuple[Path, float]:
    """15 cora architectures "measured" on a device 3x slower than the table, in ms."""
    from nag.benchmarks import NBGraphBenchmark

    bench = NBGraphBenchmark("cora")
    rng = np.random.default_rng(0)
    rows = rng.choice(len(bench), 15, replace=False)
    archs = bench.archs()
    latency = bench.column("latency")
    path = tmp_path_factory.mktemp("device") / "my_device.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "latency"])
        for i in rows:
            writer.writerow([bench.space.to_string(archs[i]), f"{3000 * latency[i]:.4f}"])
    return path, float(np.median(3000 * latency[rows]))


def generate(ckpt, out, *extra):
    main(
        [
            "generate",
            "--config",
            CONFIG,
            "--ckpt_path",
            str(ckpt),
            "--num_samples=10",
            "--steps=3",
            f"--output={out}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]
    )


def test_generate_for_a_device_writes_predicted_feasible_rows(checkpoint, device_table, tmp_path, capsys):
    table, budget = device_table
    out = tmp_path / "out.csv"
    generate(checkpoint, out, f"--device_table={table}", f"--budget=latency<={budget:.4f}")
    printed = capsys.readouterr().out
    assert "meta-trained on" in printed and "p_within_budget" in printed
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows, printed
    columns = {"predicted_latency", "latency_std", "p_within_budget", "measured_latency", "measured", "arch"}
    assert columns <= set(rows[0])
    assert all(float(r["p_within_budget"]) >= 0.9 for r in rows)
    assert len(rows) <= 10 and len({r["arch"] for r in rows}) == len(rows)


def run_expecting_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def test_bad_device_tables_and_budgets_fail_in_one_line(checkpoint, device_table, tmp_path, capsys):
    table, _ = device_table
    lines = table.read_text().splitlines()
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("\n".join([*lines, lines[3]]) + "\n")
    base = ["generate", "--config", CONFIG, "--ckpt_path", str(checkpoint), f"--output={tmp_path / 'o.csv'}"]
    err = run_expecting_error([*base, f"--device_table={duplicate}", "--budget=latency<=1"], capsys)
    assert "dup.csv" in err and "rows 4 and 17" in err
    err = run_expecting_error([*base, f"--device_table={table}", "--budget=fast"], capsys)
    assert "--budget" in err and "latency<=" in err
    err = run_expecting_error([*base, f"--device_table={table}"], capsys)
    assert "--device_table and --budget go together" in err
