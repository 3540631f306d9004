"""Quality of generated architectures: validity, uniqueness, novelty and benchmark truth.

Every state is a torchmetrics state with a ``dist_reduce_fx``, so DDP ranks are synced
before ``compute``. Canonical keys are strings, which cannot be all-gathered; they travel
as 64-bit stable hashes instead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from nag.benchmarks.base import Benchmark
from nag.errors import ArchitectureNotInBenchmark, ConfigError
from nag.spaces.base import Arch


def stable_key_hash(keys: Sequence[str]) -> Tensor:
    """Canonical keys as int64 (8-byte BLAKE2b digests), equal in every process.

    Python's ``hash`` is salted per process, so DDP ranks would disagree on it. With 64
    bits, a collision among a million keys has probability below 1e-7.
    """
    if isinstance(keys, str):
        raise TypeError("stable_key_hash expects a sequence of keys, not a single string")
    digests = (hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest() for k in keys)
    return torch.tensor([int.from_bytes(d, "little", signed=True) for d in digests], dtype=torch.int64)


def _cat_state(state: Tensor | list[Tensor], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A ``cat`` state as one tensor; empty when nothing was ever appended."""
    if isinstance(state, list) and not state:
        return torch.empty(0, dtype=dtype, device=device)
    return dim_zero_cat(state).to(dtype)


def _nan(device: torch.device) -> Tensor:
    return torch.tensor(math.nan, device=device)


class Validity(Metric):
    """Share of generated samples that decode to a member of the search space.

    Every sample counts in the denominator: invalid samples are counted, never dropped.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    num_valid: Tensor
    num_total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("num_valid", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_total", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, valid: Tensor | int, num_total: int | None = None) -> None:
        """Either a mask over the samples (non-zero = valid), or ``(num_valid, num_total)`` counts."""
        is_mask = isinstance(valid, Tensor) and valid.dim() > 0
        if num_total is None:
            if not is_mask:
                raise ValueError("Validity.update: counts need num_total; or pass a mask of valid samples")
            self.num_valid += valid.bool().sum()
            self.num_total += valid.numel()
            return
        if is_mask:
            raise ValueError("Validity.update: pass a mask or (num_valid, num_total), not both")
        n_valid, n_total = int(valid), int(num_total)
        if not 0 <= n_valid <= n_total:
            raise ValueError(f"Validity.update: need 0 <= num_valid <= num_total, got {n_valid} and {n_total}")
        self.num_valid += n_valid
        self.num_total += n_total

    def compute(self) -> Tensor:
        """NaN before any sample was seen."""
        if self.num_total == 0:
            return _nan(self.device)
        return self.num_valid / self.num_total


class Uniqueness(Metric):
    """Distinct canonical keys per valid sample: isomorphic architectures are duplicates."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    hashes: list[Tensor] | Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("hashes", [], dist_reduce_fx="cat")

    def update(self, keys: Sequence[str]) -> None:
        """``keys``: canonical keys (``space.key``) of the valid samples only."""
        self.hashes.append(stable_key_hash(keys).to(self.device))

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """Give a rank that saw no sample an int64 empty tensor to gather.

        torchmetrics substitutes an empty tensor of the metric's float dtype for an empty
        ``cat`` state, which would all-gather float32 against the other ranks' int64.
        """
        if isinstance(self.hashes, list) and not self.hashes:
            self.hashes.append(torch.empty(0, dtype=torch.int64, device=self.device))
        super().sync(*args, **kwargs)

    def compute(self) -> Tensor:
        """NaN before any valid sample was seen."""
        hashes = _cat_state(self.hashes, torch.int64, self.device)
        if hashes.numel() == 0:
            return _nan(self.device)
        return torch.tensor(torch.unique(hashes).numel() / hashes.numel(), device=self.device)


class Novelty(Metric):
    """Share of valid samples whose canonical key is absent from the training split.

    The reference is a non-persistent buffer, not a state: it is the same on every rank,
    is rebuilt from the init argument, and so stays out of checkpoints.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    reference: Tensor
    num_novel: Tensor
    num_valid: Tensor

    def __init__(self, reference_keys: Iterable[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("reference", torch.unique(stable_key_hash(list(reference_keys))), persistent=False)
        self.add_state("num_novel", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_valid", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, keys: Sequence[str]) -> None:
        """``keys``: canonical keys (``space.key``) of the valid samples only."""
        hashes = stable_key_hash(keys).to(self.reference.device)
        self.num_novel += (~torch.isin(hashes, self.reference)).sum()
        self.num_valid += hashes.numel()

    def compute(self) -> Tensor:
        """NaN before any valid sample was seen."""
        if self.num_valid == 0:
            return _nan(self.device)
        return self.num_novel / self.num_valid


class BenchmarkTruth(Metric):
    """True benchmark value of the generated architectures, looked up in a tabular benchmark.

    ``compute`` returns a dict over the valid samples that have a measured value:
    ``mean``; ``best`` (max, or min where the benchmark minimises the metric);
    ``top_share``, the share of them inside the table's best ``top_fraction``; and
    ``in_table``, the share of valid samples that have a value at all. Values are NaN when
    no valid sample was seen (``in_table``) or none was found (the others).
    """

    is_differentiable = False
    full_state_update = False

    values: list[Tensor] | Tensor
    num_missing: Tensor

    def __init__(self, benchmark: Benchmark, metric: str, top_fraction: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < top_fraction <= 1.0:
            raise ConfigError(f"BenchmarkTruth: top_fraction must be in (0, 1], got {top_fraction}")
        column = benchmark.column(metric)
        measured = np.sort(column[~np.isnan(column)])
        if measured.size == 0:
            raise ConfigError(f"BenchmarkTruth: {type(benchmark).__name__} has no measured {metric!r} values")
        self.benchmark = benchmark
        self.metric = metric
        self.top_fraction = top_fraction
        self.maximize = benchmark.higher_is_better(metric)
        k = max(1, math.ceil(top_fraction * measured.size))
        #: Value of the k-th best architecture: the table's top ``top_fraction`` reach it.
        self.threshold = float(measured[-k] if self.maximize else measured[k - 1])
        self.add_state("values", [], dist_reduce_fx="cat")
        self.add_state("num_missing", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, archs: Sequence[Arch | None]) -> None:
        """``archs``: generated samples; ``None`` or invalid ones are skipped (see :class:`Validity`).

        A valid architecture absent from the table, or with a NaN entry, counts as missing.
        """
        column = self.benchmark.column(self.metric)
        space = self.benchmark.space
        found: list[float] = []
        missing = 0
        for arch in archs:
            if arch is None or not space.is_valid(arch):
                continue
            try:
                value = float(column[self.benchmark.index(arch)])
            except ArchitectureNotInBenchmark:
                missing += 1
                continue
            if math.isnan(value):
                missing += 1
            else:
                found.append(value)
        self.values.append(torch.tensor(found, dtype=self.dtype, device=self.device))
        self.num_missing += missing

    def compute(self) -> dict[str, Tensor]:
        values = _cat_state(self.values, self.dtype, self.device)
        total = values.numel() + self.num_missing
        in_table = values.numel() / total if total > 0 else _nan(self.device)
        if values.numel() == 0:
            nan = _nan(self.device)
            return {"mean": nan, "best": nan, "top_share": nan, "in_table": in_table}
        threshold = torch.tensor(self.threshold, dtype=values.dtype, device=values.device)
        if self.maximize:
            best, top = values.max(), values >= threshold
        else:
            best, top = values.min(), values <= threshold
        return {"mean": values.mean(), "best": best, "top_share": top.float().mean(), "in_table": in_table}


def _op_marginal(x: Tensor, mask: Tensor | None, eps: float) -> Tensor:
    """Smoothed op distribution over the real nodes of a one-hot (or soft) ``[B, N, V]`` batch."""
    if x.dim() != 3:
        raise ValueError(f"op_kl_divergence: expected X of shape [B, N, V], got {tuple(x.shape)}")
    x = x.detach().double().cpu()
    mask = (x.abs().sum(-1) > 0) if mask is None else mask.detach().cpu().bool()
    if mask.shape != x.shape[:2]:
        raise ValueError(f"op_kl_divergence: node mask {tuple(mask.shape)} does not match X {tuple(x.shape)}")
    counts = x[mask].sum(0)
    if counts.sum() <= 0:
        raise ValueError("op_kl_divergence: no real nodes to count ops over")
    p = counts / counts.sum()
    return (p + eps) / (1.0 + eps * p.numel())


def op_kl_divergence(
    generated_x: Tensor,
    reference_x: Tensor,
    mask_gen: Tensor | None = None,
    mask_ref: Tensor | None = None,
    eps: float = 1e-6,
) -> float:
    """``KL(reference || generated)`` between op marginals over real nodes, in nats.

    The reference (training split) comes first so that ops the training data uses but the
    generator never emits cost the most (mode dropping); ``eps`` smoothing keeps that finite.
    Masks default to the rows of X that are not all zero. 0 means identical marginals.
    """
    if generated_x.shape[-1] != reference_x.shape[-1]:
        raise ValueError(
            f"op_kl_divergence: op vocabularies differ ({generated_x.shape[-1]} vs {reference_x.shape[-1]} ops)"
        )
    p = _op_marginal(reference_x, mask_ref, eps)
    q = _op_marginal(generated_x, mask_gen, eps)
    return float((p * (p / q).log()).sum())
