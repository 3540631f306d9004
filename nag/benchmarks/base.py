"""Tabular benchmarks: the ground truth every model, search loop and metric is scored against."""

from __future__ import annotations

import copy
from abc import ABC
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Generic

import numpy as np

from nag.errors import ArchitectureNotInBenchmark, ConfigError, DataFileError, UnknownMetric
from nag.spaces.base import Arch, SearchSpace


def require_file(path: str | Path, key: str) -> Path:
    """Resolve a benchmark's data path, failing with one line that names the config key.

    ``key`` is the benchmark's init argument; under the CLI it sits at
    ``data.init_args.benchmark.init_args.<key>``.
    """
    p = Path(path).expanduser()
    flag = f"data.init_args.benchmark.init_args.{key}"
    if p.is_dir():
        raise DataFileError(f"{flag}: {str(p)!r} is a folder; pass the data file inside it")
    if not p.is_file():
        raise DataFileError(
            f"{flag}: data file {str(p)!r} not found; pass --{flag} /path/to/{p.name} "
            "(see ../shared/data/README.md for the benchmark tables)"
        )
    if p.stat().st_size == 0:
        raise DataFileError(f"{flag}: data file {str(p)!r} is empty; re-copy {p.name}")
    return p


class Benchmark(ABC, Generic[Arch]):
    """A table of measured metrics for the architectures of one :class:`SearchSpace`.

    Subclasses load their files and call :meth:`_set_table`; look-ups go through
    :meth:`row_key`, which by default is the space's canonical key (tables that store one
    row per isomorphism class) and is overridden where every cell has its own row.
    """

    space: SearchSpace
    #: Metrics where smaller is better (latency, energy, size); everything else is maximised.
    minimize: frozenset[str] = frozenset()
    #: False where metrics are computed for any architecture of the space (a released predictor,
    #: a device model) and there is no table to list: searches then draw candidates from the space.
    tabular: bool = True
    #: The data each metric was measured on, where the table's config declares it
    #: (:meth:`declare_datasets`); other metrics fall back to :meth:`_dataset_by_name`.
    datasets: Mapping[str, str] = MappingProxyType({})

    def _set_table(
        self, archs: Sequence[Arch], columns: Mapping[str, np.ndarray], keys: Sequence[Hashable] | None = None
    ) -> None:
        """Install the table; ``keys`` (the archs' row keys) may be passed when already known."""
        self._archs = list(archs)
        self._columns = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
        keys = keys if keys is not None else [self.row_key(a) for a in self._archs]
        self._rows = {k: i for i, k in enumerate(keys)}

    def row_key(self, arch: Arch) -> Hashable:
        return self.space.key(arch)

    @property
    def name(self) -> str:
        """Short label used to name tasks (a dataset for multi-dataset benchmarks)."""
        return self.space.name

    def dataset_of(self, metric: str) -> str:
        """Which data ``metric`` was measured on: two tasks on one dataset share labels in
        all but name (CIFAR-10 validation and test accuracy), so leakage checks compare this.
        A declaration wins over the table's naming rule: a column a user added (a 12-epoch
        CIFAR-10 run named ``lowfid``) is what they say it is, whatever its name."""
        return self.datasets.get(metric) or self._dataset_by_name(metric)

    def _dataset_by_name(self, metric: str) -> str:
        """The table's rule where nothing is declared: one dataset per table by default."""
        return self.name

    def declare_datasets(self, datasets: Mapping[str, str] | None) -> None:
        """Record ``{metric: dataset}`` (the init argument ``datasets``), refusing metrics the
        table lacks."""
        datasets = dict(datasets or {})
        unknown = sorted(set(datasets) - set(self.metrics))
        if unknown:
            raise ConfigError(
                f"benchmark.init_args.datasets: {unknown[0]!r} is not a column of this table; "
                f"declare datasets for its metrics ({', '.join(self.metrics[:4])}, ...)"
            )
        self.datasets = MappingProxyType({m: str(d).lower() for m, d in datasets.items()})

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self._columns)

    def without(self, metrics: Iterable[str]) -> Benchmark[Arch]:
        """This table without ``metrics``: a device's columns held out of meta-training, as for
        a user whose device no table has measured."""
        dropped = set(metrics)
        held = copy.copy(self)
        held._columns = {k: v for k, v in self._columns.items() if k not in dropped}
        return held

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: Arch) -> bool:
        return self.row_key(arch) in self._rows

    def archs(self) -> list[Arch]:
        """The benchmarked architectures, in table order."""
        return list(self._archs)

    def check_metric(self, metric: str) -> None:
        """Refuse an unknown ``metric`` in one line naming the available ones (before a search starts)."""
        if metric not in self.metrics:
            raise UnknownMetric(
                f"unknown metric {metric!r} for {type(self).__name__}; available: {', '.join(self.metrics)}"
            )

    def column(self, metric: str) -> np.ndarray:
        """All values of ``metric`` in table order (NaN where the table has none)."""
        self.check_metric(metric)
        return self._columns[metric]

    def index(self, arch: Arch) -> int:
        try:
            return self._rows[self.row_key(arch)]
        except KeyError:
            raise ArchitectureNotInBenchmark(
                f"{self.space.to_string(arch)!r} is not in {type(self).__name__} "
                f"({len(self)} architectures); only benchmarked architectures can be queried"
            ) from None

    def query(self, arch: Arch, metric: str) -> float:
        """The measured ``metric`` of ``arch``."""
        return float(self.column(metric)[self.index(arch)])

    def values(self, archs: Sequence[Arch], metric: str) -> np.ndarray:
        """``metric`` of each of ``archs``, NaN for those the table has no row for (one row
        lookup per arch, where ``in`` then :meth:`query` would make two)."""
        column = self.column(metric)
        rows = np.array([self._rows.get(self.row_key(a), -1) for a in archs], dtype=np.int64)
        return np.where(rows >= 0, column[rows], np.nan) if len(rows) else np.zeros(0)

    def higher_is_better(self, metric: str) -> bool:
        return metric not in self.minimize

    def best(self, metric: str) -> tuple[Arch, float]:
        """The optimum of ``metric`` over the table (max, or min for cost metrics)."""
        col = self.column(metric)
        if np.isnan(col).all():
            raise UnknownMetric(f"metric {metric!r} of {type(self).__name__} has no values; pick another metric")
        i = int(np.nanargmax(col) if self.higher_is_better(metric) else np.nanargmin(col))
        return self._archs[i], float(col[i])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} archs, metrics={list(self.metrics)})"


class OnDemandBenchmark(Benchmark[Arch]):
    """A benchmark that scores any member of its space when asked (a released predictor, a
    training run) and has no table: what only a table can answer fails in one line."""

    tabular = False

    def _no_table(self, what: str) -> ConfigError:
        return ConfigError(
            f"{type(self).__name__} scores architectures on demand and has no table to {what}; "
            "call values(archs, metric), or pick a tabular benchmark"
        )

    def query(self, arch: Arch, metric: str) -> float:
        return float(self.values([arch], metric)[0])

    def __contains__(self, arch: Arch) -> bool:
        return self.space.is_valid(arch)

    def column(self, metric: str) -> np.ndarray:
        self.check_metric(metric)
        raise self._no_table(f"read column {metric!r} from")

    def archs(self) -> list[Arch]:
        raise self._no_table("list")

    def index(self, arch: Arch) -> int:
        raise self._no_table("index")

    def best(self, metric: str) -> tuple[Arch, float]:
        raise self._no_table(f"take the best {metric!r} of")

    def __len__(self) -> int:
        raise self._no_table("count")

    def __bool__(self) -> bool:
        """Always true: ``if benchmark`` must not fall back to the table size, which does not exist."""
        return True
