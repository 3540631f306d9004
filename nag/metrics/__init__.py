"""Metrics for generated architectures, DDP-safe torchmetrics with syncable states."""

from nag.metrics.generation import (
    BenchmarkTruth,
    Novelty,
    Uniqueness,
    Validity,
    op_kl_divergence,
    stable_key_hash,
)

__all__ = ["BenchmarkTruth", "Novelty", "Uniqueness", "Validity", "op_kl_divergence", "stable_key_hash"]
