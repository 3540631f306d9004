"""The naive transfer baseline: ranks by source tasks' labels only, never the target's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.cli import main
from nag.errors import ConfigError
from nag.search import OtherTasksRanking, QueryOracle, SourceTask


@pytest.fixture(scope="module")
def graphs() -> dict[str, NBGraphBenchmark]:
    return {d: NBGraphBenchmark(d) for d in ("cora", "citeseer", "pubmed")}


def test_queries_in_the_order_of_the_sources_mean_z_score(graphs):
    sources = [SourceTask(graphs["citeseer"], "valid_acc"), SourceTask(graphs["pubmed"], "valid_acc")]
    strategy = OtherTasksRanking(sources)
    oracle = QueryOracle(graphs["cora"], "valid_acc", budget=20)
    result = strategy.run(oracle, 20, seed=0)
    archs = oracle.candidates()
    expected = np.mean(
        [
            (b.column("valid_acc") - b.column("valid_acc").mean()) / b.column("valid_acc").std()
            for b in (graphs["citeseer"], graphs["pubmed"])
        ],
        axis=0,
    )  # the embedded datasets share one architecture list, in one order
    assert [graphs["cora"].space.to_string(a) for a in archs] == [
        graphs["citeseer"].space.to_string(a) for a in graphs["citeseer"].archs()
    ]
    ranked = np.argsort(-expected, kind="stable")[:20]
    assert result.num_queries == 20
    assert {a for a, _ in result.history} == {graphs["cora"].space.to_string(archs[i]) for i in ranked}
    assert strategy.run(QueryOracle(graphs["cora"], "valid_acc"), 20, seed=0).history == result.history


def test_the_target_labels_are_never_read(graphs, monkeypatch):
    """The only reads of cora's labels are the oracle's paid queries."""
    reads = []
    query, values = NBGraphBenchmark.query, NBGraphBenchmark.values

    def spy_query(self, arch, metric):
        if self is graphs["cora"]:
            reads.append(arch)
        return query(self, arch, metric)

    def spy_values(self, archs, metric):
        if self is graphs["cora"]:
            reads.extend(archs)
        return values(self, archs, metric)

    monkeypatch.setattr(NBGraphBenchmark, "query", spy_query)
    monkeypatch.setattr(NBGraphBenchmark, "values", spy_values)
    oracle = QueryOracle(graphs["cora"], "valid_acc")
    OtherTasksRanking([SourceTask(graphs["citeseer"], "valid_acc")]).run(oracle, 7, seed=0)
    assert len(reads) == oracle.num_queries == 7


def test_a_source_on_the_targets_data_is_refused(shared_data: Path):
    """CIFAR-10's validation accuracy is its test accuracy's twin: not an *other* task."""
    bench = NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))
    strategy = OtherTasksRanking([SourceTask(bench, "cifar10_valid_200ep_1seed")])
    with pytest.raises(ConfigError, match="measured on 'cifar10', the target's data"):
        strategy.run(QueryOracle(bench, "cifar10_test_200ep"), 5, seed=0)
    assert bench.dataset_of("hwnb_ImageNet16-120_fpga_latency") == "imagenet16"
    assert bench.dataset_of("imagenet16_test_200ep") == "imagenet16"
    assert bench.dataset_of("cifar100_test_200ep") == "cifar100"


def test_a_declared_dataset_wins_over_the_column_name(nb201_table: Path):
    """A column a user added is measured on what the table's config declares, so a CIFAR-10
    run under another name is refused as a source for a CIFAR-10 target; undeclared, its
    name would pass it."""
    undeclared = NB201Benchmark(str(nb201_table))
    assert undeclared.dataset_of("empty_metric") == "empty"
    bench = NB201Benchmark(str(nb201_table), datasets={"empty_metric": "CIFAR10"})
    assert bench.dataset_of("empty_metric") == "cifar10"
    assert bench.dataset_of("cifar10_test_200ep") == "cifar10"  # undeclared: by its name
    strategy = OtherTasksRanking([SourceTask(bench, "empty_metric")])
    with pytest.raises(ConfigError, match="measured on 'cifar10', the target's data"):
        strategy.run(QueryOracle(bench, "cifar10_test_200ep"), 5, seed=0)
    with pytest.raises(ConfigError, match=r"benchmark.init_args.datasets: 'lowfid' is not a column"):
        NB201Benchmark(str(nb201_table), datasets={"lowfid": "cifar10"})


def test_needs_a_source():
    with pytest.raises(ConfigError, match="at least one source task"):
        OtherTasksRanking([])


def test_shipped_config_runs_through_nag_search(tmp_path):
    config = Path(__file__).resolve().parents[2] / "configs" / "nbgraph" / "search_other_tasks.yaml"
    out = tmp_path / "s.json"
    main(["search", "--config", str(config), "--budget", "5", "--seeds", "[0, 1]", "--output", str(out), "--quiet"])
    summary = json.loads(out.read_text())["summary"]
    assert summary["method"] == "other_tasks_ranking" and summary["budget"] == 5 and summary["distinct_runs"] == 1
