"""Once-for-all's own evolutionary search as the peer baseline, under an accuracy-query budget.

A practitioner specialising OFA-MobileNetV3 to a Note10 latency budget would run the
``EvolutionFinder`` that ships with OFA (``ofa/tutorial/evolution_finder.py``, the finder OFA's
tutorial runs with a Note10 latency constraint over ks {3,5,7}, e {3,4,6}, d {2,3,4} and
r {160..224}), so that is the peer: OFA's own class driven through thin adaptors, not a copy.

Its cost is counted the way nag's ``QueryOracle`` counts: one query per *distinct* subnet sent
to the accuracy predictor, and a subnet OFA re-evaluates in a later generation is answered from
a cache for free. The network ignores ``ks``/``e`` slots past a stage's depth, so they are
zeroed before a subnet is keyed or scored.

The finder is loaded from its file: importing ``ofa.tutorial`` runs helpers that need
torchvision, which the finder itself never uses.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAGES, MAX_DEPTH = 5, 4
SETTINGS = frozenset({"population_size", "max_time_budget", "mutate_prob", "parent_ratio", "mutation_ratio"})


@dataclass
class PeerRun:
    """One OFA run: each distinct subnet queried with its top-1 in order, the best feasible top-1
    after each query (nan before the first), and whether the budget cut OFA short."""

    history: list[tuple[dict, float]]
    best_curve: list[float]
    num_queries: int
    best: tuple[dict, float] | None
    truncated: bool


class _BudgetSpent(Exception):
    """Raised inside OFA's loop when it asks for a subnet beyond ``max_queries``."""


@functools.cache
def _finder_class() -> type:
    """OFA's tutorial ``EvolutionFinder``, loaded by path with its progress bar silenced."""
    spec = importlib.util.find_spec("ofa")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the OFA peer needs the once-for-all package: pip install ofa")
    path = Path(next(iter(spec.submodule_search_locations))) / "tutorial" / "evolution_finder.py"
    file_spec = importlib.util.spec_from_file_location("_ofa_evolution_finder", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    module.tqdm = functools.partial(module.tqdm, disable=True)
    return module.EvolutionFinder


def canonical(sample: dict) -> dict:
    """An OFA sample as ``{"ks", "e", "d", "r": int}`` with ``ks``/``e`` zeroed past each depth."""
    d = [int(v) for v in sample["d"]]
    live = [i % MAX_DEPTH < d[i // MAX_DEPTH] for i in range(STAGES * MAX_DEPTH)]
    r = sample["r"]
    return {
        "ks": [int(v) if on else 0 for v, on in zip(sample["ks"], live)],
        "e": [int(v) if on else 0 for v, on in zip(sample["e"], live)],
        "d": d,
        "r": int(r[0] if isinstance(r, list) else r),
    }


def _key(arch: dict) -> tuple:
    return tuple(arch["ks"]), tuple(arch["e"]), tuple(arch["d"]), arch["r"]


class _Efficiency:
    """OFA's efficiency predictor: the free latency model."""

    def __init__(self, latency: Callable[[dict], float]) -> None:
        self.latency = latency

    def predict_efficiency(self, sample: dict) -> float:
        return self.latency(canonical(sample))


class _Accuracy:
    """OFA's accuracy predictor: pays ``top1`` once per distinct subnet and records the run."""

    def __init__(self, top1: Callable, latency: Callable, budget_ms: float, max_queries: int | None) -> None:
        self.top1, self.latency, self.budget_ms, self.max_queries = top1, latency, budget_ms, max_queries
        self.cache: dict[tuple, float] = {}
        self.history: list[tuple[dict, float]] = []
        self.best_curve: list[float] = []
        self.best: tuple[dict, float] | None = None

    def predict_accuracy(self, samples: list[dict]) -> np.ndarray:
        archs = [canonical(s) for s in samples]
        keys = [_key(a) for a in archs]
        new = list({k: a for k, a in zip(keys, archs) if k not in self.cache}.items())
        paid = new if self.max_queries is None else new[: self.max_queries - len(self.cache)]
        if paid:
            values = np.asarray(self.top1([a for _, a in paid]), dtype=float)
            if values.shape != (len(paid),):
                raise ValueError(f"top1 returned shape {values.shape} for {len(paid)} subnets")
            for (key, arch), value in zip(paid, values.tolist()):
                self.cache[key] = value
                self.history.append((arch, value))
                if self.latency(arch) <= self.budget_ms and (self.best is None or value > self.best[1]):
                    self.best = (arch, value)
                self.best_curve.append(math.nan if self.best is None else self.best[1])
        if len(paid) < len(new):
            raise _BudgetSpent
        return np.array([self.cache[k] for k in keys])


def run_evolution_finder(
    top1: Callable[[list[dict]], np.ndarray],
    latency: Callable[[dict], float],
    budget_ms: float,
    seed: int,
    max_queries: int | None = None,
    **settings,
) -> PeerRun:
    """Run OFA's ``EvolutionFinder`` under ``latency <= budget_ms``, stopping after ``max_queries``
    distinct subnets; ``settings`` go to the finder (omitted ones keep OFA's defaults)."""
    if unknown := sorted(set(settings) - SETTINGS):
        raise TypeError(f"unknown EvolutionFinder setting(s) {unknown}; expected some of {sorted(SETTINGS)}")
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"max_queries must be at least 1 or None, got {max_queries}")
    smallest = canonical({"ks": [3] * STAGES * MAX_DEPTH, "e": [3] * STAGES * MAX_DEPTH, "d": [2] * STAGES, "r": 160})
    if latency(smallest) > budget_ms:
        raise ValueError(f"even the smallest subnet exceeds {budget_ms} ms; OFA would rejection-sample forever")
    finder_class = _finder_class()
    accuracy = _Accuracy(top1, latency, budget_ms, max_queries)
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    truncated = False
    try:
        # Built at an in-range constraint, then set: the constructor prompts on stdin outside 15-60 ms.
        low = finder_class.valid_constraint_range["note10"][0]
        finder = finder_class("note10", low, _Efficiency(latency), accuracy, **settings)
        finder.set_efficiency_constraint(budget_ms)
        finder.run_evolution_search()
    except _BudgetSpent:
        truncated = True
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return PeerRun(accuracy.history, accuracy.best_curve, len(accuracy.history), accuracy.best, truncated)
