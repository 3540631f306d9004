"""The query oracle: the one door through which a search loop sees a benchmark's labels.

Search strategies are compared by how many architectures they had to *train* to find a
good one, so the oracle counts queries the way a real NAS would pay for them: once per
distinct architecture (a repeated query is free, it would not be retrained), with an
optional hard budget.

A constrained search (e.g. "the most accurate subnet within 25 ms on this phone") names its
``constraints``: metrics of a known cost model (a latency table, FLOPs) that are free to ask,
each with a bound. Only architectures within every bound are candidates and count as found.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError, InvalidArchitecture, NagError
from nag.spaces.base import Arch, SearchSpace

#: Architectures drawn at a time where candidates come from the space, not a table.
SAMPLE_BATCH = 256


class BudgetExhausted(NagError):
    """A new architecture was queried after the oracle's query budget was spent."""


class QueryOracle(Generic[Arch]):
    """Answers ``metric`` for benchmarked architectures, counting each distinct one once.

    Distinct means a distinct benchmark row (``benchmark.row_key``): the canonical key for
    tables with one row per isomorphism class, the exact cell where every cell has its own row.
    """

    def __init__(
        self,
        benchmark: Benchmark[Arch],
        metric: str,
        budget: int | None = None,
        constraints: Mapping[str, float] | None = None,
    ) -> None:
        benchmark.check_metric(metric)  # fail now, naming the available metrics, not mid-search
        if budget is not None and budget < 0:
            raise ConfigError(f"query budget must be a non-negative number of queries, got {budget}")
        self.constraints = dict(constraints or {})
        for name, bound in self.constraints.items():
            benchmark.check_metric(name)
            if name == metric or not math.isfinite(bound):
                raise ConfigError(
                    f"constraint {name}={bound!r}: bound a free cost metric other than {metric!r} by a finite number"
                )
        self._benchmark = benchmark
        self.metric = metric
        self.budget = budget
        self._feasible: dict[Hashable, bool] = {}
        self._values: dict[Hashable, float] = {}
        self._history: list[tuple[Arch, float]] = []
        self._curve: list[float] = []
        self._best: tuple[Arch, float] | None = None
        self._candidates: list[Arch] | None = None

    # --- what a search loop may see --------------------------------------------------
    @property
    def space(self) -> SearchSpace[Arch]:
        return self._benchmark.space

    @property
    def task(self) -> tuple[str, str]:
        """``(benchmark name, metric)``: which task this is (no labels), so a meta-trained
        model can check it never learned from this task's labels."""
        return self._benchmark.name, self.metric

    @property
    def dataset(self) -> str:
        """The data this task's labels were measured on (``Benchmark.dataset_of``)."""
        return self._benchmark.dataset_of(self.metric)

    @property
    def sign(self) -> int:
        """+1 when the metric is maximised, -1 when minimised: loops maximise ``sign * value``."""
        return 1 if self._benchmark.higher_is_better(self.metric) else -1

    def score(self, value: float) -> float:
        """``sign * value``, with a missing (NaN) measurement ranked below everything."""
        return -math.inf if math.isnan(value) else self.sign * value

    @property
    def tabular(self) -> bool:
        """Whether the benchmark is a table whose architectures :meth:`candidates` lists."""
        return self._benchmark.tabular

    def candidates(self) -> list[Arch]:
        """The architectures a search may query (no labels): the table's where there is one (the
        pool to sample from where the space is larger than the table, e.g. NB101's 1k subset),
        else every member of a finite space (raises for a space too large to list)."""
        if self._candidates is None:
            self._candidates = self._benchmark.archs() if self.tabular else list(self.space.enumerate())
        return list(self._candidates)

    def contains(self, arch: Arch) -> bool:
        """Whether ``arch`` could be queried and meets the constraints (invalid archs are not members)."""
        try:
            return arch in self._benchmark and self.feasible(arch)
        except InvalidArchitecture:
            return False

    def feasible(self, arch: Arch) -> bool:
        """Whether ``arch`` is within every constraint (free: the constraints are a known cost
        model, not labels); remembered per architecture."""
        if not self.constraints:
            return True
        key = self._benchmark.row_key(arch)
        if key not in self._feasible:
            self._feasible[key] = all(
                self.sign_of(name) * self._benchmark.query(arch, name) >= self.sign_of(name) * bound
                for name, bound in self.constraints.items()
            )
        return self._feasible[key]

    def sign_of(self, metric: str) -> int:
        """+1 when ``metric`` is maximised, -1 when minimised."""
        return 1 if self._benchmark.higher_is_better(metric) else -1

    @property
    def feasibility(self) -> tuple[int, int]:
        """``(checked, feasible)``: distinct architectures checked against the constraints so far
        and how many met them (a search's share of proposals within budget)."""
        return len(self._feasible), sum(self._feasible.values())

    def row_key(self, arch: Arch) -> Hashable:
        """What counts as one query: the benchmark row ``arch`` is answered from."""
        return self._benchmark.row_key(arch)

    def queried(self, arch: Arch) -> bool:
        try:
            return self._benchmark.row_key(arch) in self._values
        except InvalidArchitecture:
            return False

    def query(self, arch: Arch) -> float:
        """The measured metric of ``arch``; a new architecture costs one query.

        Raises :class:`ArchitectureNotInBenchmark` (not counted) for unbenchmarked archs and
        :class:`BudgetExhausted` for a new one past the budget.
        """
        return self.query_batch([arch])[0]

    def query_batch(self, archs: Sequence[Arch]) -> list[float]:
        """The measured metric of each of ``archs``, the new ones measured together (a benchmark
        that trains runs them in parallel where its evaluator can); each new distinct architecture
        costs one query. Raises as :meth:`query` does, before measuring any: a batch with more
        new architectures than the budget has left is refused whole."""
        keys = [self._benchmark.row_key(a) for a in archs]
        new: dict[Hashable, Arch] = {}
        for key, arch in zip(keys, archs):
            if key not in self._values and key not in new:
                if self._benchmark.tabular:
                    self._benchmark.index(arch)  # raises ArchitectureNotInBenchmark, uncounted
                new[key] = arch
        if self.budget is not None and len(self._history) + len(new) > self.budget:
            names = ", ".join(repr(self.space.to_string(a)) for a in list(new.values())[:3])
            raise BudgetExhausted(
                f"query budget of {self.budget} distinct architectures is spent; "
                f"{len(new)} new ({names}{', ...' if len(new) > 3 else ''}) were not queried"
            )
        measured = self._benchmark.values(list(new.values()), self.metric) if new else []
        for (key, arch), value in zip(new.items(), measured):
            self._record(key, arch, float(value))
        return [self._values[key] for key in keys]

    def _record(self, key: Hashable, arch: Arch, value: float) -> None:
        self._values[key] = value
        self._history.append((arch, value))
        if self.feasible(arch) and (self._best is None or self.score(value) > self.score(self._best[1])):
            self._best = (arch, value)
        self._curve.append(math.nan if self._best is None else self._best[1])

    # --- bookkeeping -------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        return len(self._history)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - len(self._history)

    def target(self, budget: int) -> int:
        """The :attr:`num_queries` at which ``budget`` more queries are spent, capped by the
        oracle's own budget so strategies stop instead of raising :class:`BudgetExhausted`."""
        if budget < 1:
            raise ConfigError(f"search budget must be at least 1 query, got {budget}")
        remaining = self.remaining
        return self.num_queries + (budget if remaining is None else min(budget, remaining))

    @property
    def history(self) -> list[tuple[Arch, float]]:
        """``(arch, value)`` of each distinct architecture, in query order."""
        return list(self._history)

    @property
    def best(self) -> tuple[Arch, float] | None:
        """The best feasible ``(arch, value)`` so far (the first of ties), or None before any."""
        return self._best

    def best_curve(self) -> list[float]:
        """Best feasible value so far after each query (NaN before the first feasible one)."""
        return list(self._curve)

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f"/{self.budget}"
        return f"QueryOracle({self._benchmark!r}, metric={self.metric!r}, queries={self.num_queries}{budget})"


def distinct_new(oracle: QueryOracle[Arch], archs: Iterable[Arch], n: int) -> list[Arch]:
    """The first ``n`` of ``archs`` that are new to ``oracle`` and distinct from each other (one
    per benchmark row): a batch that costs exactly its length in queries."""
    batch: dict[Hashable, Arch] = {}
    if n < 1:
        return []
    for arch in archs:  # stops right after the n-th, so an iterator keeps everything after it
        if not oracle.queried(arch):
            batch.setdefault(oracle.row_key(arch), arch)
            if len(batch) >= n:
                break
    return list(batch.values())


def _drawn(space: SearchSpace[Arch], rng: np.random.Generator) -> Iterator[Arch]:
    """Uniform samples of ``space``, without end."""
    while True:
        yield from space.sample(SAMPLE_BATCH, rng)


def candidate_stream(oracle: QueryOracle[Arch], rng: np.random.Generator) -> Iterator[Arch]:
    """Candidates in a random order, one per space key, skipping those queried by the time they
    come up: the "random unqueried architecture" every strategy starts and restarts from. A
    benchmark without a table (:attr:`Benchmark.tabular` False) scores any architecture, so the
    stream runs through a finite space's members, or draws from a larger space without end.
    Only architectures within the oracle's constraints come up."""
    if oracle.tabular or oracle.space.is_finite:
        pool = oracle.candidates()
        order = (pool[i] for i in rng.permutation(len(pool)).tolist())
    else:
        order = _drawn(oracle.space, rng)
    seen: set[str] = set()
    for arch in order:
        if oracle.queried(arch) or not oracle.feasible(arch):
            continue
        key = oracle.space.key(arch)
        if key not in seen:
            seen.add(key)
            yield arch


@dataclass
class SearchResult:
    """One search run in plain values (architecture strings), ready for JSON and plots."""

    method: str
    seed: int
    metric: str
    history: list[tuple[str, float]]
    best_curve: list[float]
    num_queries: int
    best_arch: str
    best_value: float
    #: +1 when ``metric`` is maximised, -1 when minimised.
    sign: int = 1

    @classmethod
    def from_oracle(cls, method: str, seed: int, oracle: QueryOracle[Any]) -> SearchResult:
        if oracle.best is None:
            raise NagError(f"{method}: no architecture was queried, so there is no result")
        to_string = oracle.space.to_string
        best_arch, best_value = oracle.best
        return cls(
            method=method,
            seed=seed,
            metric=oracle.metric,
            history=[(to_string(a), v) for a, v in oracle.history],
            best_curve=oracle.best_curve(),
            num_queries=oracle.num_queries,
            best_arch=to_string(best_arch),
            best_value=best_value,
            sign=oracle.sign,
        )

    def queries_to_reach(self, value: float, tol: float = 1e-9) -> int | None:
        """How many queries it took until the best so far was at least as good as ``value``
        (within ``tol``), or None if it never was: the sample-efficiency number."""
        for i, best in enumerate(self.best_curve, start=1):
            if self.sign * best >= self.sign * value - tol:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [[arch, value] for arch, value in self.history]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        """The inverse of :meth:`to_dict` (a saved run read back to resume a search)."""
        return cls(**{**data, "history": [(arch, value) for arch, value in data["history"]]})
