"""NAS-Bench-Graph tables embedded in the ``nas-bench-graph`` package: sizes, look-ups, optima."""

from __future__ import annotations

import numpy as np
import pytest
from nas_bench_graph import light_read

from nag.benchmarks.nbgraph import DATASETS, NBGraphBenchmark
from nag.errors import ArchitectureNotInBenchmark, ConfigError, UnknownMetric
from nag.spaces.nbgraph import PROTEINS_OPS, NBGraphSpace

SPACE = NBGraphSpace()
METRICS = ("valid_acc", "test_acc", "latency", "params")
FIELDS = {"valid_acc": "valid_perf", "test_acc": "perf", "latency": "latency", "params": "para"}
ARCHS = [
    "gcn~0|gat~1|skip~1|sage~2",
    "gcn~0|gcn~1|gcn~2|gcn~3",
    "fc~0|arma~0|sage~0|skip~0",
    "sage~0|fc~1|arma~2|gcn~3",
]


@pytest.fixture(scope="module")
def benches() -> dict[str, NBGraphBenchmark]:
    return {d: NBGraphBenchmark(d) for d in DATASETS}


@pytest.fixture(scope="module")
def tables() -> dict[str, dict]:
    return {d: light_read(d) for d in DATASETS}


def test_nine_datasets() -> None:
    assert DATASETS == ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_loads(benches: dict[str, NBGraphBenchmark], tables: dict[str, dict], dataset: str) -> None:
    bench = benches[dataset]
    expected = 2021 if dataset == "proteins" else 26206
    assert len(bench) == expected == len(tables[dataset])
    assert len({SPACE.key(a) for a in bench.archs()[::50]}) == len(bench.archs()[::50])
    assert bench.metrics == METRICS
    assert bench.name == dataset
    assert bench.minimize == frozenset({"latency", "params"})
    for metric in METRICS:
        assert not np.isnan(bench.column(metric)).any(), metric


@pytest.mark.parametrize("dataset", ["cora", "arxiv", "proteins"])
def test_query_agrees_with_the_package(
    benches: dict[str, NBGraphBenchmark], tables: dict[str, dict], dataset: str
) -> None:
    bench, table = benches[dataset], tables[dataset]
    archs = bench.archs()
    for arch in archs[:: len(archs) // 40]:
        record = table[int(SPACE.key(arch))]
        for metric, field in FIELDS.items():
            assert bench.query(arch, metric) == pytest.approx(float(record[field]), rel=1e-12), (arch, metric)


@pytest.mark.parametrize("text", ARCHS)
def test_query_parsed_strings(benches: dict[str, NBGraphBenchmark], tables: dict[str, dict], text: str) -> None:
    arch = SPACE.from_string(text)
    for dataset in ("cora", "pubmed"):
        assert benches[dataset].query(arch, "test_acc") == pytest.approx(tables[dataset][int(SPACE.key(arch))]["perf"])


@pytest.mark.parametrize("dataset", DATASETS)
def test_best_is_the_package_optimum(
    benches: dict[str, NBGraphBenchmark], tables: dict[str, dict], dataset: str
) -> None:
    bench, records = benches[dataset], tables[dataset].values()
    arch, value = bench.best("test_acc")
    assert value == pytest.approx(max(float(r["perf"]) for r in records), rel=1e-12)
    assert bench.query(arch, "test_acc") == value
    assert bench.best("valid_acc")[1] == pytest.approx(max(float(r["valid_perf"]) for r in records), rel=1e-12)
    # costs are minimised
    assert bench.best("latency")[1] == pytest.approx(min(float(r["latency"]) for r in records), rel=1e-12)
    assert bench.best("params")[1] == pytest.approx(min(float(r["para"]) for r in records), rel=1e-12)
    assert bench.higher_is_better("test_acc") and not bench.higher_is_better("latency")


def test_isomorphic_rewiring_returns_the_same_row(benches: dict[str, NBGraphBenchmark]) -> None:
    # two parallel branches from the input swapped, each keeping what reads it
    a = SPACE.from_string("gcn~0|gat~0|sage~1|fc~2")
    b = SPACE.from_string("gat~0|gcn~0|fc~1|sage~2")
    assert a != b
    bench = benches["cora"]
    assert a in bench and b in bench
    assert bench.index(a) == bench.index(b)
    for metric in METRICS:
        assert bench.query(a, metric) == bench.query(b, metric)
    # a different wiring of the same ops is another row
    c = SPACE.from_string("gcn~0|gat~0|fc~1|sage~2")
    assert bench.index(c) != bench.index(a)


def test_proteins_only_holds_its_five_ops(benches: dict[str, NBGraphBenchmark]) -> None:
    proteins = benches["proteins"]
    assert {op for _, ops in proteins.archs() for op in ops} == set(PROTEINS_OPS)
    arch = SPACE.from_string("gat~0|gcn~1|gcn~2|gcn~3")
    assert arch in benches["cora"] and arch not in proteins
    with pytest.raises(ArchitectureNotInBenchmark, match="only benchmarked architectures") as info:
        proteins.query(arch, "test_acc")
    assert "gat~0|gcn~1|gcn~2|gcn~3" in str(info.value)
    # the same wiring with proteins' ops is there
    assert proteins.query(SPACE.from_string("sage~0|gcn~1|gcn~2|gcn~3"), "test_acc") > 0


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'") as info:
        NBGraphBenchmark("mnist")
    assert "cora" in str(info.value) and "proteins" in str(info.value)


def test_unknown_metric(benches: dict[str, NBGraphBenchmark]) -> None:
    with pytest.raises(UnknownMetric, match="'accuracy'.*available: valid_acc, test_acc, latency, params"):
        benches["cora"].best("accuracy")


def test_space_without_benchmarked_ops() -> None:
    with pytest.raises(ConfigError, match="proteins"):
        NBGraphBenchmark("proteins", space=NBGraphSpace(["gat", "gin", "skip"]))


def test_restricted_space_restricts_the_table(benches: dict[str, NBGraphBenchmark]) -> None:
    space = NBGraphSpace(PROTEINS_OPS)
    bench = NBGraphBenchmark("cora", space=space)
    assert len(bench) == len(benches["proteins"]) == 2021
    arch = SPACE.from_string("sage~0|fc~1|arma~2|gcn~3")
    assert bench.query(arch, "test_acc") == benches["cora"].query(arch, "test_acc")


def test_values_reads_many_archs_at_once_with_nan_where_the_table_has_no_row(
    benches: dict[str, NBGraphBenchmark],
) -> None:
    bench = benches["proteins"]
    archs = [SPACE.from_string(a) for a in ARCHS]
    expected = [bench.query(a, "valid_acc") if a in bench else np.nan for a in archs]
    assert np.isnan(expected).any() and not np.isnan(expected).all()  # both kinds of rows are exercised
    np.testing.assert_array_equal(bench.values(archs, "valid_acc"), expected)
    assert bench.values([], "valid_acc").shape == (0,)
    with pytest.raises(UnknownMetric):
        bench.values(archs, "flops")


def test_without_holds_columns_out_and_leaves_the_table_whole():
    bench = NBGraphBenchmark("cora")
    held = bench.without(["latency"])
    assert "latency" not in held.metrics and "latency" in bench.metrics
    assert held.archs() == bench.archs()
    np.testing.assert_array_equal(held.column("valid_acc"), bench.column("valid_acc"))
    with pytest.raises(UnknownMetric):
        held.column("latency")
