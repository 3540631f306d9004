"""``benchmarks/gpu_check.py``: without CUDA it refuses in one line (exit 2); ``--device cpu
--smoke`` runs every step of the check on the CPU at toy size and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_refuses_in_one_line_without_cuda(tmp_path: Path, capsys, benchmark_script) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark_script("gpu_check").main(["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and "--device cpu --smoke" in err[0]
    assert not list(tmp_path.iterdir())


def test_cpu_smoke_runs_every_step_and_passes(tmp_path: Path, single_thread: None, benchmark_script) -> None:
    out = tmp_path / "out"
    code = benchmark_script("gpu_check").main(
        ["--device", "cpu", "--smoke", "--out", str(out), "--run-dir", str(tmp_path / "runs")]
    )
    report = json.loads((out / "gpu.json").read_text())
    assert code == 0 and report["pass"], report["failures"]
    assert set(report["fits"]) == {"score", "discrete", "predictor"}
    assert all(f["finite"] for f in report["fits"].values())
    assert {(g["generator"].split()[0], g["precision"]) for g in report["generation"]} == {
        (kind, precision) for kind in ("score", "discrete") for precision in ("fp32", "bf16 autocast")
    }
    assert all(g["finite"] and g["validity"] == 1.0 for g in report["generation"])
    assert report["score_vs_cpu"]["same_architecture"] == 1.0
    assert report["predictor"]["finite"]
    md = (out / "gpu.md").read_text()
    assert md.startswith("<!-- python benchmarks/gpu_check.py") and "**PASS**" in md
