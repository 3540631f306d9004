"""The latency meta-predictor of a benchmark's device tables, trained once and reused.

Meta-training takes seconds to minutes; every ``nag generate --device_table`` used to pay it
again. :func:`meta_trained` keys the trained predictor by a digest of what determines it (the
architectures, the source tables' values, the cost columns, the settings and the seed) and
keeps it under ``cache_dir`` through :meth:`LatencyMetaPredictor.save` (an atomic,
weights-only file, read back by :func:`nag.io.checkpoints.read_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.errors import ConfigError
from nag.hardware.features import ArchFeatures, TableCosts
from nag.hardware.predictor import LatencyMetaPredictor
from nag.hardware.sources import cost_columns, source_values

#: Where ``nag generate`` keeps meta-trained latency predictors (relative to the working directory).
CACHE_DIR = Path("runs") / "latency_meta"


def default_costs(benchmark: Benchmark) -> TableCosts | None:
    """FLOPs and parameter columns of ``benchmark`` (the first of each), as cost features."""
    flops = [m for m in benchmark.metrics if "flops" in m.lower()]
    params = [m for m in benchmark.metrics if "params" in m.lower() or m == "para"]
    columns = [c for c in (flops[:1] + params[:1]) if np.isfinite(benchmark.column(c)).any()]
    return TableCosts(benchmark, columns) if columns else None


def _sources(benchmark: Benchmark, sources: Sequence[str] | None) -> list[str]:
    names = list(sources) if sources is not None else cost_columns(benchmark)
    if not names:
        raise ConfigError(
            f"{type(benchmark).__name__} has no latency or energy columns to meta-train a device predictor on; "
            "use a benchmark with device tables (NB201's HW-NAS-Bench columns, OFA latency, NAS-Bench-Graph)"
        )
    return names


def meta_train(
    benchmark: Benchmark,
    sources: Sequence[str] | None = None,
    costs: TableCosts | str | None = "default",
    seed: int = 0,
    **settings: Any,
) -> LatencyMetaPredictor:
    """A :class:`LatencyMetaPredictor` meta-trained on ``benchmark``'s device-cost columns
    (``sources``, default all of :func:`~nag.hardware.sources.cost_columns`)."""
    sources = _sources(benchmark, sources)
    costs = default_costs(benchmark) if costs == "default" else costs
    meta = LatencyMetaPredictor(ArchFeatures(benchmark.space, costs), seed=seed, **settings)
    return meta.fit(benchmark.archs(), source_values(benchmark, sources))


def meta_digest(
    benchmark: Benchmark, sources: Sequence[str], costs: TableCosts | None, seed: int, **settings: Any
) -> str:
    """16 hex digits of everything :func:`meta_train` reads: the same digest, the same predictor."""
    h = hashlib.sha1()
    h.update(json.dumps(benchmark.space.identity, sort_keys=True, default=str).encode())
    h.update("\n".join(benchmark.space.key(a) for a in benchmark.archs()).encode())
    for name, values in source_values(benchmark, sources).items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    for column in getattr(costs, "columns", None) or []:
        h.update(column.encode())
        h.update(np.ascontiguousarray(benchmark.column(column), dtype=np.float64).tobytes())
    h.update(json.dumps({"seed": seed, **settings}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def meta_trained(
    benchmark: Benchmark, seed: int = 0, cache_dir: str | Path = CACHE_DIR, **settings: Any
) -> tuple[LatencyMetaPredictor, bool]:
    """:func:`meta_train` on all of ``benchmark``'s device tables, read from ``cache_dir`` when
    an identical one was trained before; returns the predictor and whether it came from there."""
    sources = _sources(benchmark, None)
    costs = default_costs(benchmark)
    path = Path(cache_dir) / f"latency-{meta_digest(benchmark, sources, costs, seed, **settings)}.pt"
    if path.is_file():
        try:
            return LatencyMetaPredictor.load(path, ArchFeatures(benchmark.space, costs)), True
        except ConfigError:  # written by an older nag whose features differ: train it again
            pass
    meta = meta_train(benchmark, sources, costs, seed=seed, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta.save(path)
    return meta, False
