"""Named conditions (accuracy, latency, size, ...) as one vector, with a null token per condition.

Classifier-free guidance needs the model to know both ``p(G | c_i)`` and ``p(G)``: each
condition is replaced by its own learned null token with probability ``drop_prob`` in
training, independently of the others, so any subset of conditions can be asked for at
sampling time. Training and sampling both call :meth:`ConditionEncoder.forward` with
``(values, keep)``; only how ``keep`` is chosen differs (random vs. requested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nag.errors import ConfigError, UnknownMetric

#: One raw value for every sample, or one per sample.
RawValue = float | Sequence[float] | torch.Tensor

#: Knots of each continuous condition's empirical CDF.
QUANTILES = 100


class FourierEmbedding(nn.Module):
    """A normalised scalar and its training-split quantile ``u`` -> ``[dim]``: the value, ``u``
    and sin/cos of ``u`` at octave-spaced frequencies, then an MLP. The quantile spreads
    the crowded top of skewed targets (most NB201 cells sit within 1 pp of the optimum), so
    "the best 0.1 %" is as distinguishable as "the median"."""

    def __init__(self, dim: int, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies + 2, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, value: torch.Tensor, quantile: torch.Tensor) -> torch.Tensor:
        angles = quantile.float().unsqueeze(-1) * self.freqs
        return self.mlp(
            torch.cat([value.float().unsqueeze(-1), quantile.float().unsqueeze(-1), angles.sin(), angles.cos()], dim=-1)
        )


def empirical_cdf(values: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear CDF through ``knots`` (quantiles at evenly spaced levels 0..1)."""
    q = knots.shape[-1] - 1
    i = torch.bucketize(values, knots[1:-1].contiguous())
    lo, hi = knots[i], knots[i + 1]
    return (i + ((values - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)) / q


class ConditionEncoder(nn.Module):
    """Sum of per-condition embeddings; a dropped (or not requested) condition contributes
    its own learned null token instead.

    Args:
        names: the conditions, in the column order of the values passed to :meth:`forward`.
        dim: embedding size.
        binned: names embedded by bin (a table over ``bins`` quantile bins of the training
            values); the others are continuous (value and training quantile, Fourier + MLP).
            Quantiles come from :meth:`fit`, called on the training split before training.
        bins: bins per binned condition.
        drop_prob: probability of dropping each condition in training.
        uncond_prob: probability of dropping every condition of an example at once. With
            independent drops alone, the unconditional path (all null tokens, what sampling
            without conditions runs) trains on ``drop_prob ** C`` of the examples: 0.1 % for
            three conditions at 0.1, and its samples drift off the training distribution.
    """

    def __init__(
        self,
        names: Sequence[str],
        dim: int,
        binned: Sequence[str] = (),
        bins: int = 10,
        drop_prob: float = 0.1,
        uncond_prob: float = 0.0,
    ) -> None:
        super().__init__()
        unknown = [b for b in binned if b not in names]
        if unknown:
            raise ConfigError(f"binned conditions {unknown} are not among the conditions {list(names)}")
        for name, p in (("condition drop probability", drop_prob), ("unconditional drop probability", uncond_prob)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} {p} must lie in [0, 1]")
        if bins < 2:
            raise ConfigError(f"bins={bins}: a binned condition needs at least 2 bins")
        self.names, self.binned, self.drop_prob, self.dim = list(names), set(binned), drop_prob, dim
        self.uncond_prob = uncond_prob
        self.embed = nn.ModuleList(
            nn.Embedding(bins, dim) if n in self.binned else FourierEmbedding(dim) for n in self.names
        )
        self.null = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.register_buffer("bin_edges", torch.linspace(-2.0, 2.0, bins + 1)[1:-1].repeat(len(self.names), 1))
        self.register_buffer("cdf_knots", torch.linspace(-3.0, 3.0, QUANTILES + 1).repeat(len(self.names), 1))

    def fit(self, values: torch.Tensor) -> None:
        """Quantiles of the training values ``[n, C]``: bin edges (equally filled bins) and
        the knots of the empirical CDF."""
        values = values.float()
        bins = self.bin_edges.shape[1] + 1
        self.bin_edges.copy_(
            torch.quantile(values, torch.linspace(0, 1, bins + 1, device=values.device)[1:-1], dim=0).T
        )
        self.cdf_knots.copy_(torch.quantile(values, torch.linspace(0, 1, QUANTILES + 1, device=values.device), dim=0).T)

    def sample_keep(
        self, batch: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training dropout: ``[B, C]`` True where a condition is kept (each with ``1 - p``;
        none of an example's with ``uncond_prob``)."""
        u = torch.rand(batch, len(self.names), device=device, generator=generator)
        keep = u >= self.drop_prob
        if self.uncond_prob > 0:  # no extra draw otherwise: runs without it stay bit-identical
            keep &= torch.rand(batch, 1, device=device, generator=generator) >= self.uncond_prob
        return keep

    def forward(self, values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``values [B, C]`` (normalised; ignored where dropped, NaN allowed there) and
        ``keep [B, C]`` -> ``[B, dim]``."""
        out = torch.zeros(keep.shape[0], self.dim, device=keep.device)
        values = torch.where(keep, values.float(), torch.zeros_like(values, dtype=torch.float32))
        for c, (name, embed) in enumerate(zip(self.names, self.embed)):
            v = values[:, c].contiguous()
            if name in self.binned:
                emb = embed(torch.bucketize(v, self.bin_edges[c]))
            else:
                emb = embed(v, empirical_cdf(v, self.cdf_knots[c]))
            out = out + torch.where(keep[:, c, None], emb.to(out.dtype), self.null[c].to(out.dtype))
        return out


def check_conditions(
    conditions: Mapping[str, RawValue] | None,
    names: Sequence[str],
    ranges: Mapping[str, tuple[float, float]],
    num_samples: int,
    extrapolate: bool = False,
) -> torch.Tensor:
    """Raw values ``[S, C]`` over a model's condition ``names`` (NaN where not asked), after
    the checks every generator needs: known names, one finite value or one per sample, and
    each inside its training ``ranges[name] = (min, max)`` unless ``extrapolate``."""
    conditions = conditions or {}
    unknown = [name for name in conditions if name not in names]
    if unknown:
        raise UnknownMetric(
            f"conditions {unknown}: this model was trained with conditions "
            f"{', '.join(names) or 'none'}; use those names"
        )
    values = torch.full((num_samples, len(names)), math.nan, dtype=torch.float64)
    for c, name in enumerate(names):
        if name not in conditions:
            continue
        raw = torch.as_tensor(conditions[name], dtype=torch.float64).flatten()
        if raw.numel() not in (1, num_samples) or not torch.isfinite(raw).all():
            raise ConfigError(f"conditions[{name!r}]: give one finite value or {num_samples} (one per sample)")
        lo, hi = ranges.get(name, (-math.inf, math.inf))
        outside = (raw < lo) | (raw > hi)
        if not extrapolate and outside.any():
            raise ConfigError(
                f"conditions[{name!r}] = {float(raw[outside][0]):g} lies outside the training range "
                f"[{lo:g}, {hi:g}]; ask within it, or allow it with --extrapolate"
            )
        values[:, c] = raw
    return values


def normalize_conditions(
    conditions: Mapping[str, RawValue] | None,
    names: Sequence[str],
    stats: Mapping[str, Mapping[str, float]],
    num_samples: int,
    extrapolate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one place asked values become model inputs: ``values [S, C]`` z-scored with the
    training ``stats`` a checkpoint stores (zero where not asked) and ``given [C]`` over the
    model's condition ``names``, so sampling encodes a condition exactly as training did."""
    ranges = {n: (s.get("min", -math.inf), s.get("max", math.inf)) for n, s in stats.items()}
    raw = check_conditions(conditions, names, ranges, num_samples, extrapolate)
    given = ~raw.isnan().all(0)
    mean = torch.tensor([stats[n]["mean"] if g else 0.0 for n, g in zip(names, given)], dtype=torch.float64)
    std = torch.tensor([stats[n]["std"] if g else 1.0 for n, g in zip(names, given)], dtype=torch.float64)
    return ((raw - mean) / std).nan_to_num(0.0).float(), given
