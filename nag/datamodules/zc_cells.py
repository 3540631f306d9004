"""Cells with their zero-cost-proxy (ZC) vectors: the data of the ZC-metric cell encoder and
the conditional flow over its latent space."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from nag.datamodules.architecture import SPLITS, GraphDataset, space_spec, split_by_key
from nag.datamodules.split_datamodule import SplitDataModule
from nag.errors import ConfigError, DataFileError, InvalidArchitecture
from nag.spaces.base import Arch, SearchSpace

Normalization = Literal["rank", "log"]
#: Quantile knots kept per proxy for rank normalisation: enough to place a value within
#: ~1% of its training rank, small enough to live in a checkpoint's hyper-parameters.
RANK_KNOTS = 129
#: Column names tried, in order, when ``arch_column`` is not given.
ARCH_COLUMNS = ("arch_str", "arch", "net_str")


def fit_proxy_stats(values: np.ndarray, names: Sequence[str], kind: Normalization) -> dict[str, dict]:
    """Per-proxy statistics of the training rows ``values [n, P]``.

    ``rank``: quantile knots of the empirical CDF (ties share their mid-rank), so that
    :class:`ProxyNormalizer` maps each proxy through its CDF and the normal quantile
    function to ~N(0, 1); robust to the heavy tails and failure sentinels (-1e8) that
    published proxies contain. ``log``: mean/std of ``sign(x) log(1 + |x|)``.
    """
    stats: dict[str, dict] = {}
    for j, name in enumerate(names):
        col = values[:, j].astype(np.float64)
        if kind == "rank":
            knots = np.quantile(col, np.linspace(0.0, 1.0, RANK_KNOTS))
            # the extremes sit half a sample inside (0, 1), where the normal quantile is finite
            probs = np.linspace(0.5 / len(col), 1.0 - 0.5 / len(col), RANK_KNOTS)
            unique, inverse = np.unique(knots, return_inverse=True)
            mid = np.bincount(inverse, weights=probs) / np.bincount(inverse)
            stats[name] = {"values": unique.tolist(), "probs": mid.tolist()}
        elif kind == "log":
            t = np.sign(col) * np.log1p(np.abs(col))
            std = float(t.std())
            stats[name] = {
                "mean": float(t.mean()),
                "std": std if std > 0 and math.isfinite(std) else 1.0,
                "min": float(col.min()),
                "max": float(col.max()),
            }
        else:
            raise ConfigError(f"data.normalization {kind!r}: expected 'rank' or 'log'")
    return stats


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``np.interp`` in torch (constant beyond the ends)."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + ((x - x0) / (x1 - x0)).clamp(0.0, 1.0) * (f1 - f0)


class ProxyNormalizer:
    """Raw proxy vectors ``[..., P]`` <-> normalised ones, from stats stored in a ``spec()``,
    so conditions given at sampling time are encoded exactly as in training."""

    def __init__(self, names: Sequence[str], stats: Mapping[str, Mapping], kind: Normalization) -> None:
        self.names, self.kind = list(names), kind
        missing = [n for n in self.names if n not in stats]
        if missing:
            raise ConfigError(f"proxy statistics lack {missing}; retrain with these data.proxies")
        self.stats = {n: stats[n] for n in self.names}

    def _columns(self, fn, values: torch.Tensor) -> torch.Tensor:
        v = values.double()
        return torch.stack([fn(v[..., j], self.stats[n]) for j, n in enumerate(self.names)], -1).to(values.dtype)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Each proxy's training range in raw units (unbounded where old statistics lack it)."""
        return {
            n: (s["values"][0], s["values"][-1]) if "values" in s else (s.get("min", -math.inf), s.get("max", math.inf))
            for n, s in self.stats.items()
        }

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        def one(x: torch.Tensor, s: Mapping) -> torch.Tensor:
            if self.kind == "log":
                return (torch.sign(x) * torch.log1p(x.abs()) - s["mean"]) / s["std"]
            return torch.special.ndtri(
                _interp(
                    x,
                    torch.tensor(s["values"], dtype=x.dtype, device=x.device),
                    torch.tensor(s["probs"], dtype=x.dtype, device=x.device),
                )
            )

        return self._columns(one, raw)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        def one(x: torch.Tensor, s: Mapping) -> torch.Tensor:
            if self.kind == "log":
                t = x * s["std"] + s["mean"]
                return torch.sign(t) * torch.expm1(t.abs())
            return _interp(
                torch.special.ndtr(x),
                torch.tensor(s["probs"], dtype=x.dtype, device=x.device),
                torch.tensor(s["values"], dtype=x.dtype, device=x.device),
            )

        return self._columns(one, z)

    @classmethod
    def from_spec(cls, spec: Mapping) -> ProxyNormalizer:
        return cls(spec["proxies"], spec["proxy_stats"], spec["normalization"])


class ZCCellDataModule(SplitDataModule):
    """Cells of a search space with one vector of zero-cost proxies each.

    The table is a CSV at ``path`` (e.g. NAS-Bench-Suite-Zero's ``zc_proxies_cifar10.csv``,
    whose ``net_str`` column is the NB201 string) or an in-memory ``table`` of columns, e.g.
    proxies computed by :mod:`nag.zc` on any space: one column of architecture strings in
    the space's ``from_string`` form and one numeric column per proxy. Rows with a
    non-finite proxy are dropped (counted in ``num_dropped``). Splits are by canonical key,
    so isomorphic cells never straddle train and val/test; normalisation statistics come
    from the training split and travel in :meth:`spec`.

    Args:
        space: the search space the strings belong to.
        path: CSV file; exclusive with ``table``.
        table: column name -> values; exclusive with ``path``.
        proxies: proxy columns in the order of the ZC vector; default every numeric column.
        arch_column: the architecture-string column; default the first of ``arch_str``,
            ``arch``, ``net_str`` present.
        normalization: ``rank`` (empirical CDF -> normal quantiles) or ``log`` (signed log
            then z-score).
    """

    def __init__(
        self,
        space: SearchSpace,
        path: str | None = None,
        table: dict[str, list] | None = None,
        proxies: Sequence[str] | None = None,
        arch_column: str | None = None,
        normalization: Normalization = "rank",
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (path is None) == (table is None):
            raise ConfigError("data: give exactly one of data.path (a CSV of cells and proxies) or data.table")
        if normalization not in ("rank", "log"):
            raise ConfigError(f"data.normalization {normalization!r}: expected 'rank' or 'log'")
        if len(split) != 3 or any(f < 0 for f in split) or sum(split) <= 0:
            raise ConfigError(f"data.split must be three non-negative fractions (train, val, test), got {split}")
        self.space, self.path, self.normalization = space, path, normalization
        self.split, self.seed, self.batch_size, self.num_workers = tuple(split), seed, batch_size, num_workers
        columns = self._read_csv(path) if path is not None else {k: list(v) for k, v in table.items()}
        self.archs_all, self.raw, self.proxies, self.num_dropped = self._parse(columns, proxies, arch_column)

    # --- reading ---------------------------------------------------------------------
    def _where(self) -> str:
        return f"data.path {self.path!r}" if self.path is not None else "data.table"

    @staticmethod
    def _read_csv(path: str) -> dict[str, list]:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataFileError(f"data.path {str(p)!r}: no such file; pass a CSV of architecture strings and proxies")
        try:
            with p.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                columns: dict[str, list] = {c: [] for c in header}
                for row in reader:
                    for c in header:
                        columns[c].append(row[c])
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataFileError(f"data.path {str(p)!r}: not a readable CSV ({type(e).__name__})") from None
        if not header:
            raise DataFileError(f"data.path {str(p)!r}: empty file; expected a header of arch and proxy columns")
        return columns

    def _parse(
        self, columns: dict[str, list], proxies: Sequence[str] | None, arch_column: str | None
    ) -> tuple[list[Arch], np.ndarray, list[str], int]:
        where = self._where()
        if arch_column is None:
            arch_column = next((c for c in ARCH_COLUMNS if c in columns), None)
            if arch_column is None:
                raise DataFileError(
                    f"{where}: no architecture column ({', '.join(ARCH_COLUMNS)}); "
                    f"set data.arch_column to one of {list(columns)}"
                )
        elif arch_column not in columns:
            raise ConfigError(f"data.arch_column {arch_column!r} is not a column of {where}; columns: {list(columns)}")
        n = len(columns[arch_column])
        if n == 0:
            raise DataFileError(f"{where}: no rows")
        if proxies is None:
            proxies = [c for c in columns if c != arch_column and _numeric(columns[c])]
        proxies = list(proxies)
        if not proxies:
            raise ConfigError(f"data.proxies: {where} has no numeric proxy columns besides {arch_column!r}")
        for c in proxies:
            if c not in columns:
                raise ConfigError(f"data.proxies: unknown column {c!r} in {where}; available: {list(columns)}")
        values = np.empty((n, len(proxies)))
        for j, c in enumerate(proxies):
            for i, v in enumerate(columns[c]):
                try:
                    values[i, j] = float(v) if v != "" else math.nan
                except (TypeError, ValueError):
                    raise DataFileError(f"{where}: row {i + 2}, column {c!r}: {v!r} is not a number") from None
        archs, seen = [], set()
        for i, text in enumerate(columns[arch_column]):
            try:
                arch = self.space.from_string(text)
            except InvalidArchitecture as e:
                raise DataFileError(f"{where}: row {i + 2}, column {arch_column!r}: {e}") from None
            if arch in seen:
                raise DataFileError(f"{where}: row {i + 2} repeats cell {text!r}; keep one row per cell")
            seen.add(arch)
            archs.append(arch)
        keep = np.isfinite(values).all(1)
        return [a for a, k in zip(archs, keep) if k], values[keep], proxies, int((~keep).sum())

    # --- splits and statistics -----------------------------------------------------------
    @cached_property
    def split_indices(self) -> dict[str, np.ndarray]:
        parts = dict(zip(SPLITS, split_by_key([self.space.key(a) for a in self.archs_all], self.split, self.seed)))
        for name in ("train", "val"):
            if len(parts[name]) == 0:
                raise ConfigError(
                    f"data.split {self.split} leaves the {name} split empty "
                    f"({len(self.archs_all)} cells); raise its fraction"
                )
        return parts

    def archs(self, split: str) -> list[Arch]:
        return [self.archs_all[i] for i in self.split_indices[split]]

    def raw_proxies(self, split: str) -> np.ndarray:
        """Raw proxy values ``[n, P]`` of a split, in :attr:`proxies` order."""
        return self.raw[self.split_indices[split]]

    def train_keys(self) -> set[str]:
        return self._train_keys

    @cached_property
    def _train_keys(self) -> set[str]:
        return {self.space.key(a) for a in self.archs("train")}

    @cached_property
    def proxy_stats(self) -> dict[str, dict]:
        return fit_proxy_stats(self.raw_proxies("train"), self.proxies, self.normalization)

    @cached_property
    def normalizer(self) -> ProxyNormalizer:
        return ProxyNormalizer(self.proxies, self.proxy_stats, self.normalization)

    def normalized(self, split: str) -> torch.Tensor:
        """Normalised ZC vectors ``[n, P]`` of a split (float32)."""
        return self.normalizer.normalize(torch.as_tensor(self.raw_proxies(split))).float()

    def spec(self) -> dict:
        """Search space, proxy names and their training-split normalisation: what a model
        stores so that its ZC vectors (targets, conditions, clusters) keep their meaning."""
        return {
            **space_spec(self.space),
            "proxies": list(self.proxies),
            "proxy_stats": self.proxy_stats,
            "normalization": self.normalization,
        }

    # --- Lightning hooks -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "datasets"):
            return
        self.datasets = {}
        for name in SPLITS:
            x, adj, mask = self.space.encode_batch(self.archs(name))
            self.datasets[name] = GraphDataset(x, adj, mask, self.normalized(name))

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _numeric(values: list) -> bool:
    try:
        for v in values:
            float(v)
    except (TypeError, ValueError):
        return False
    return True
