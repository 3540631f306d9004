"""NAS-Bench-Graph tables shipped inside the ``nas-bench-graph`` package (no files needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import nas_bench_graph
import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.spaces.nbgraph import (
    ALL_OPS,
    PROTEINS_OPS,
    ArchGraph,
    NBGraphSpace,
    representatives,
)

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
#: Our metric names for the package's record fields.
_FIELDS = {"valid_acc": "valid_perf", "test_acc": "perf", "latency": "latency", "params": "para"}


#: The only globals the package's table pickles refer to: numpy scalars of the ``para`` column.
_TABLE_GLOBALS = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _TableUnpickler(pickle.Unpickler):
    """Reads the package's ``.bench`` pickles (dicts of numbers) and refuses every other
    global, so a replaced table file cannot run code; ``light_read`` unpickles without limits."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _TABLE_GLOBALS:
            raise pickle.UnpicklingError(f"nbgraph table refers to {module}.{name}, which nag does not load")
        return super().find_class(module, name)


def read_table(dataset: str) -> dict[int, dict[str, float]]:
    """The package's table of ``dataset``: architecture hash -> record."""
    path = Path(nas_bench_graph.__file__).parent / "light" / f"{dataset}.bench"
    with path.open("rb") as f:
        return _TableUnpickler(f).load()


class NBGraphBenchmark(Benchmark[ArchGraph]):
    """One NAS-Bench-Graph dataset: ``valid_acc``, ``test_acc`` (fractions), ``latency`` (s),
    ``params`` (M). Rows are keyed by the benchmark's canonical hash.

    All datasets share the 9-op space, so one model serves every dataset; ``proteins`` was
    benchmarked on 5 ops only, so its table holds the 2,021 architectures using those.
    """

    minimize = frozenset({"latency", "params"})

    def __init__(self, dataset: str = "cora", space: NBGraphSpace | None = None) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"nbgraph: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        self.space = space or NBGraphSpace()
        self.dataset = dataset
        bench_ops = PROTEINS_OPS if dataset == "proteins" else ALL_OPS
        shared = [o for o in self.space.layer_ops if o in bench_ops]
        if all(o == "skip" for o in shared):
            raise ConfigError(
                f"nbgraph: dataset {dataset!r} benchmarks ops {list(bench_ops)}, none of which "
                f"(but skip) the space allows ({list(self.space.layer_ops)}); widen the space's ops"
            )
        table = read_table(dataset)
        rows = representatives(tuple(shared))
        records = [table[int(k)] for k in rows]
        columns = {name: np.array([r[field] for r in records], dtype=np.float64) for name, field in _FIELDS.items()}
        self._set_table(list(rows.values()), columns, keys=list(rows))

    @property
    def name(self) -> str:
        return self.dataset

    def __repr__(self) -> str:
        return f"NBGraphBenchmark(dataset={self.dataset!r}, {len(self)} archs)"
