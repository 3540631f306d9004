"""``benchmarks/generation_speed.py``: parity marks and the report's files, on made-up rows (the
benchmark itself needs trained generators and minutes of sampling)."""

from __future__ import annotations

import math


def row(kind: str, method: str, **kw) -> dict:
    base = {
        "method": method,
        "kind": kind,
        "steps": 5,
        "samples": 1000,
        "seconds": 1.0,
        "nfe_per_batch": 5,
        "valid_per_s": 1000.0,
        "valid_per_cpu_s": 500.0,
        "distinct_valid_per_s": 900.0,
        "validity": 1.0,
        "raw_validity": 0.99,
        "uniqueness": 0.9,
        "op_kl": 0.0005,
        "acc_mean": 90.0,
        "acc_se": 0.1,
        "acc_best": 94.0,
        "peak_mib": 10.0,
        "acc_gap": 0.0,
        "acc_gap_se": 0.05,
        "op_kl_to_today": 0.0,
    }
    return {**base, **kw}


def test_parity_follows_the_issue_definition(benchmark_script):
    script = benchmark_script("generation_speed")
    today = row("today", "today", op_kl=0.002)
    rows = [
        row("random", "uniform random"),
        today,
        row("dpm", "close", acc_gap=-0.15, op_kl=0.0019),
        row("dpm", "too far", acc_gap=-0.3),
        row("dpm", "repaired by projection", raw_validity=0.5),
        row("dpm", "ops drift", op_kl=0.01, op_kl_to_today=0.004),
        row("ancestral", "conditioned", op_kl=0.3, op_kl_to_today=0.0008),
    ]
    script.mark_parity(rows, today, "nb201")
    assert "parity" not in rows[0]
    assert [r["parity"] for r in rows[1:]] == [True, True, False, False, False, True]
    nbgraph = [row("dpm", "fraction units", acc_gap=-0.003)]  # NB-Graph accuracies are fractions: 0.3 pp
    script.mark_parity(nbgraph, today, "nbgraph")
    assert not nbgraph[0]["parity"] and math.isclose(nbgraph[0]["acc_gap_pp"], -0.3)


def test_report_files(tmp_path, benchmark_script):
    script = benchmark_script("generation_speed")
    today = row("today", "today")
    rows = [row("random", "uniform random"), today, row("dpm", "dpm 5")]
    script.mark_parity(rows, today, "nb201")
    section = {"generator": "score (VP)", "metric": ["acc"], "rows": rows}
    report = {
        "command": "python benchmarks/generation_speed.py --samples 1000",
        "samples": 1000,
        "threads": 2,
        "seed": 0,
        "machine": "2 CPU cores",
        "spaces": [
            {
                "space": "nb201",
                "fits": {"score": {"checkpoint": "x.ckpt", "how": "cached"}},
                "conditions": {},
                "sde": {"type": "VPSDE"},
                "sections": [section],
                "memory": [
                    {
                        "generator": "score (VP)",
                        "setting": "dpm 5",
                        "seconds": 3.0,
                        "valid": 10000,
                        "peak_rss_mib": 600.0,
                        "added_mib": 150.0,
                    }
                ],
            }
        ],
    }
    script.write(report, tmp_path)  # what a run writes: the Markdown headed by its command
    md = (tmp_path / "generation_speed.md").read_text()
    assert md.splitlines()[0] == "<!-- python benchmarks/generation_speed.py --samples 1000 -->"
    assert "```\npython benchmarks/generation_speed.py --samples 1000\n```" in md
    assert "| dpm 5 |" in md and "10,000 architectures" in md
    benchmark_script("common").save_figure(script.plot(report), tmp_path / "speed.png")
    assert (tmp_path / "speed.png").stat().st_size > 0
