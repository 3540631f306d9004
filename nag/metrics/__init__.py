"""Metrics for generated architectures, DDP-safe torchmetrics with syncable states."""

from nag.metrics.generation import (
    BenchmarkTruth,
    Novelty,
    Uniqueness,
    Validity,
    op_kl_divergence,
    stable_key_hash,
)
from nag.metrics.pareto import (
    ParetoFront,
    hypervolume,
    non_dominated,
    pareto_front,
    true_front,
)

__all__ = [
    "BenchmarkTruth",
    "Novelty",
    "ParetoFront",
    "Uniqueness",
    "Validity",
    "hypervolume",
    "non_dominated",
    "op_kl_divergence",
    "pareto_front",
    "stable_key_hash",
    "true_front",
]
