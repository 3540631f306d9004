"""``nag search`` output: the per-query CSV, the report JSON, and quiet/verbose terminal output."""

import csv
import json

import numpy as np
import pytest

from nag.benchmarks.base import Benchmark
from nag.cli import main
from nag.errors import ConfigError
from nag.search import RandomSearch
from nag.search.runner import run_search
from nag.spaces import NB201Space


class OpCounts(Benchmark):
    """300 cells with metrics anyone can recompute: conv edges (maximised) and non-zero edges,
    standing in for a latency (minimised)."""

    minimize = frozenset({"latency"})

    def __init__(self) -> None:
        self.space = NB201Space()
        by_key = {self.space.key(a): a for a in self.space.sample(400, np.random.default_rng(0))}
        archs = list(by_key.values())[:300]
        self._set_table(
            archs,
            {
                "convs": [sum(op.startswith("nor_conv") for op in a) for a in archs],
                "latency": [sum(op != "none" for op in a) for a in archs],
            },
            keys=list(by_key)[:300],
        )


@pytest.fixture(scope="module")
def bench() -> OpCounts:
    return OpCounts()


def test_csv_has_one_row_per_query_with_a_monotone_best(bench, tmp_path, capsys):
    run_search(bench, "convs", RandomSearch(), budget=12, seeds=[0, 1], output=str(tmp_path / "s.csv"), quiet=True)
    assert capsys.readouterr().out == ""
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [(int(r["seed"]), int(r["query"])) for r in rows] == [(s, q) for s in (0, 1) for q in range(1, 13)]
    space = bench.space
    for seed in ("0", "1"):
        values = [float(r["convs"]) for r in rows if r["seed"] == seed]
        assert values == [bench.query(space.from_string(r["arch"]), "convs") for r in rows if r["seed"] == seed]
        assert [float(r["best_so_far"]) for r in rows if r["seed"] == seed] == list(np.maximum.accumulate(values))


def test_a_killed_search_resumes_from_its_finished_seeds(bench, tmp_path, monkeypatch):
    """Seeds are saved as they finish; the same command after a kill searches only the rest,
    and the final output equals an uninterrupted run's."""
    output = str(tmp_path / "s.json")
    calls = []
    original = RandomSearch.run

    def killed_after_two(self, oracle, budget, seed):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(seed)
        return original(self, oracle, budget, seed)

    monkeypatch.setattr(RandomSearch, "run", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_search(bench, "convs", RandomSearch(), budget=6, seeds=[0, 1, 2], output=output, quiet=True)
    assert not (tmp_path / "s.json").exists() and (tmp_path / "s.json.partial.json").exists()
    monkeypatch.setattr(RandomSearch, "run", lambda self, *a: calls.append(a[-1]) or original(self, *a))
    resumed = run_search(bench, "convs", RandomSearch(), budget=6, seeds=[0, 1, 2], output=output, quiet=True)
    assert calls == [0, 1, 2] and not (tmp_path / "s.json.partial.json").exists()
    fresh = run_search(
        bench, "convs", RandomSearch(), budget=6, seeds=[0, 1, 2], output=str(tmp_path / "f.json"), quiet=True
    )
    assert resumed["runs"] == fresh["runs"]
    # a different search does not pick up those seeds
    (tmp_path / "s.json.partial.json").write_text(json.dumps({"budget": 99, "runs": resumed["runs"]}))
    calls.clear()
    run_search(bench, "convs", RandomSearch(), budget=6, seeds=[0], output=output, quiet=True)
    assert calls == [0]


def test_table_ranks_what_was_found_with_latency(bench, tmp_path, capsys):
    report = run_search(
        bench, "convs", RandomSearch(), budget=10, seeds=[0, 1, 2], show=2, output=str(tmp_path / "s.json")
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rank", "convs", "latency", "seeds", "first_query", "arch"]
    best = max(v for run in report["runs"] for _, v in run["history"])
    assert float(out[1].split()[1]) == best
    arch = bench.space.from_string(out[1].split()[-1])
    assert float(out[1].split()[2]) == bench.query(arch, "latency")
    assert out[3].startswith("... ") and "1 more seeds" in "\n".join(out)
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["seeds"] == 3


def test_verbose_shows_every_seed_and_architecture(bench, tmp_path, capsys):
    run_search(
        bench, "convs", RandomSearch(), budget=5, seeds=[0, 1, 2], show=1, verbose=True, output=str(tmp_path / "s.json")
    )
    out = capsys.readouterr().out
    assert "more seeds" not in out and "more architectures" not in out
    assert sum(line.split()[0] in ("0", "1", "2") for line in out.splitlines()) >= 3


def test_bare_switches_mean_true(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "search",
                "--benchmark",
                "nag.benchmarks.NBGraphBenchmark",
                "--metric",
                "valid_acc",
                "--strategy",
                "nag.search.RandomSearch",
                "--quiet",
                "--verbose",
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "quiet: true" in out and "verbose: true" in out


def test_bad_output_name_fails_before_searching(bench, tmp_path):
    with pytest.raises(ConfigError, match="expected a .csv or .json file name"):
        run_search(bench, "convs", RandomSearch(), output=str(tmp_path / "s.txt"))
    assert list(tmp_path.iterdir()) == []


def test_constraints_bound_the_search_and_its_optimum(bench, tmp_path):
    """``constraints`` bound a free cost metric: every architecture searched is within it, and
    the optimum runs are scored against is the best within it, not the table's best."""
    report = run_search(
        bench,
        "convs",
        RandomSearch(),
        budget=20,
        seeds=[0, 1],
        output=str(tmp_path / "s.json"),
        quiet=True,
        constraints={"latency": 3},
    )
    space = bench.space
    for run in report["runs"]:
        assert all(bench.query(space.from_string(arch), "latency") <= 3 for arch, _ in run["history"])
    feasible = [v for a, v in zip(bench.archs(), bench.column("convs")) if bench.query(a, "latency") <= 3]
    assert report["summary"]["optimum"] == max(feasible) < bench.best("convs")[1]
    assert report["constraints"] == {"latency": 3}
    with pytest.raises(ConfigError, match="other than 'convs'"):
        run_search(bench, "convs", RandomSearch(), output=str(tmp_path / "t.json"), constraints={"convs": 1})
