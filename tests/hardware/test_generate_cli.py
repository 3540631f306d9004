"""``nag generate --device_table my.csv --budget "latency<=B"`` end to end on NAS-Bench-Graph
(embedded in its package: no files needed), and its one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from nag.cli import main
from nag.generation.request import FEASIBLE_PROB

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
            "--select=10",
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
    assert all(float(r["p_within_budget"]) >= FEASIBLE_PROB for r in rows)
    assert len(rows) <= 10 and len({r["arch"] for r in rows}) == len(rows)
    assert "ranked by a ridge model of valid_acc" in printed, "the config's accuracy target ranks by default"
    predicted = [float(r["predicted_accuracy"]) for r in rows]
    assert predicted == sorted(predicted, reverse=True)


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


# --- a score generator on NB201 cells: the budget also guides sampling ----------------------

NB201_CONFIG = str(ROOT / "configs" / "nb201" / "diffusion.yaml")


@pytest.fixture(scope="module")
def nb201_devices(tmp_path_factory) -> dict:
    """A made-up NB201 table with FLOPs, parameters and four synthetic devices' latencies, a
    fifth device's table of 15 measured cells, and a tiny score model fitted on the table."""
    from nag.spaces.nb201 import NB201Space

    from .conftest import op_matrix, synthetic_device

    space = NB201Space()
    archs = list(dict.fromkeys(space.sample(800, np.random.default_rng(0))))[:600]
    ops = op_matrix(archs).sum(1)
    columns = {
        "cifar10_test_200ep": 85 + ops @ np.array([-3.0, 0.5, 1.0, 2.0, 0.2]),
        "cifar10_flops_M": 10 + ops @ np.array([0.0, 0.0, 4.0, 9.0, 0.5]),
        "cifar10_params_M": 0.1 + ops @ np.array([0.0, 0.0, 0.05, 0.15, 0.0]),
        **{f"hwnb_cifar10_dev{d}_latency": synthetic_device(d, op_matrix(archs)) for d in range(4)},
    }
    root = tmp_path_factory.mktemp("nb201_devices")
    table = root / "nb201.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "arch_str", *columns])
        for i, arch in enumerate(archs):
            writer.writerow([i, space.to_string(arch), *(f"{columns[c][i]:.5g}" for c in columns)])
    target = synthetic_device(100, op_matrix(archs))
    device = root / "my_device.csv"
    with device.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "latency"])
        for i in range(15):
            writer.writerow([space.to_string(archs[i]), f"{target[i]:.5g}"])
    fit = root / "fit"
    main(
        [
            "fit",
            "--config",
            NB201_CONFIG,
            *TINY,
            f"--data.init_args.benchmark.init_args.path={table}",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={fit}",
        ]
    )
    return {
        "table": table,
        "device": device,
        "budget": float(np.quantile(target, 0.3)),
        "ckpt": next(fit.rglob("last.ckpt")),
    }


def generate_nb201(setup, out, *extra):
    main(
        [
            "generate",
            "--config",
            NB201_CONFIG,
            f"--data.init_args.benchmark.init_args.path={setup['table']}",
            f"--ckpt_path={setup['ckpt']}",
            "--select=10",
            "--steps=3",
            f"--output={out}",
            f"--device_table={setup['device']}",
            f"--budget=latency<={setup['budget']:.4f}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]
    )


def test_a_score_generator_is_guided_by_the_budget(nb201_devices, tmp_path, capsys):
    out = tmp_path / "guided.csv"
    generate_nb201(nb201_devices, out)
    printed = capsys.readouterr().out
    assert "the budget guides sampling (strength 2)" in printed, printed
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["p_within_budget"]) >= FEASIBLE_PROB for r in rows)
    generate_nb201(nb201_devices, tmp_path / "filtered.csv", "--latency_guidance=0")
    assert "guides sampling" not in capsys.readouterr().out


def test_a_negative_latency_guidance_fails_in_one_line(nb201_devices, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_nb201(nb201_devices, tmp_path / "o.csv", "--latency_guidance=-1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "latency_guidance=-1" in err and err.count("\n") == 1


def test_five_measurements_are_enough_and_the_output_says_they_are_few(checkpoint, device_table, tmp_path, capsys):
    table, budget = device_table
    five = tmp_path / "five.csv"
    five.write_text("\n".join(table.read_text().splitlines()[:6]) + "\n")
    generate(checkpoint, tmp_path / "out.csv", f"--device_table={five}", f"--budget=latency<={budget:.4f}")
    printed = capsys.readouterr().out
    assert "only 5 measured" in printed and "measure more" in printed


def test_a_budget_nothing_meets_says_why_and_what_to_measure_next(checkpoint, device_table, tmp_path, capsys):
    table, budget = device_table
    out = tmp_path / "out.csv"
    generate(checkpoint, out, f"--device_table={table}", f"--budget=latency<={budget / 1000:.6f}")
    printed = capsys.readouterr().out
    assert "none of" in printed and "measure these next" in printed
    with out.open() as f:
        reader = csv.DictReader(f)
        assert list(reader) == [], "an empty selection writes no row"
        assert {"rank", "arch", "p_within_budget", "valid_acc"} <= set(reader.fieldnames or ())
