"""Closed-form Bayesian linear regression with calibrated predictive intervals.

The model (in transformed latency, e.g. its log, standardised by the K measured points' mean
and spread)::

    z = F w + e,   e ~ N(0, s2 I),   w | s2 ~ N(0, s2 V0),   s2 ~ InvGamma(a0, b0)

with ``V0 = 10 (intercept) + sum_b scale_b * C_b`` over blocks of feature columns, each with
its own base covariance ``C_b`` (the meta-learned basis gets the second moment of the source
devices' heads; raw encoding features get an isotropic prior). The block scales are chosen
by maximising the marginal likelihood (empirical Bayes) over a small grid; everything else is
exact. Integrating out the noise level makes the predictive distribution a Student-t with
``2 a0 + K`` degrees of freedom: wide when K is small, which is what keeps the 90 % interval
honest with five measurements.

Everything here is numpy; the Student-t CDF and quantile are computed here as well (regularised
incomplete beta by continued fractions), so nag needs no scipy.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef

#: Prior variance of the intercept, in standardised units (the K points' spread is 1).
INTERCEPT_VARIANCE = 10.0
#: Inverse-gamma prior on the noise variance (standardised units): weak (a0 = 2, worth four
#: measurements), with prior mean b0 / (a0 - 1) = 20 % of the K points' variance.
NOISE_A0, NOISE_B0 = 2.0, 0.2


@dataclass(frozen=True)
class Block:
    """Feature columns ``columns`` whose weights share the prior ``scale * cov``; ``scales``
    is the grid empirical Bayes picks the scale from (0 switches the block off)."""

    columns: np.ndarray
    cov: np.ndarray
    scales: tuple[float, ...]


@dataclass
class BayesLinear:
    """A fitted model: predicts the mean, scale and degrees of freedom of a Student-t."""

    v0_ft: np.ndarray  # V0 F^T  [p, K]
    s_inv_z: np.ndarray  # S^-1 z  [K]
    s_inv: np.ndarray  # S^-1    [K, K]
    v0: np.ndarray  # [p, p]
    train: np.ndarray  # F       [K, p]
    an: float
    bn: float
    y_mean: float
    y_scale: float
    scales: tuple[float, ...]
    evidence: float = float("nan")

    @property
    def dof(self) -> float:
        return 2.0 * self.an

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, scale)`` of the predictive Student-t (``dof`` degrees of freedom) in the
        units of ``y`` (the transformed latency)."""
        f = _with_intercept(features)
        mean = f @ (self.v0_ft @ self.s_inv_z)
        # f Vn f^T with Vn = V0 - V0 F^T S^-1 F V0 (Woodbury: V0 may be singular)
        fv0 = f @ self.v0
        cross = f @ self.v0_ft
        quad = np.einsum("ij,ij->i", fv0, f) - np.einsum("ij,jk,ik->i", cross, self.s_inv, cross)
        var = self.bn / self.an * (1.0 + np.maximum(quad, 0.0))
        return mean * self.y_scale + self.y_mean, np.sqrt(var) * self.y_scale


def _with_intercept(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return np.concatenate([np.ones((len(features), 1)), features], axis=1)


def fit_bayes_linear(features: np.ndarray, y: np.ndarray, blocks: Sequence[Block]) -> BayesLinear:
    """Fit :class:`BayesLinear` on ``features`` ``[K, p]`` and targets ``y`` ``[K]``; the block
    scales maximise the marginal likelihood over the product of the blocks' grids."""
    y = np.asarray(y, dtype=np.float64)
    k = len(y)
    y_mean = float(y.mean())
    y_scale = float(y.std()) if k > 1 and y.std() > 1e-12 else 1.0
    z = (y - y_mean) / y_scale
    f = _with_intercept(features)
    p = f.shape[1]
    base = np.zeros((p, p))
    base[0, 0] = INTERCEPT_VARIANCE
    grams = []
    covs = []
    for block in blocks:
        cols = np.asarray(block.columns) + 1
        c = np.zeros((p, p))
        c[np.ix_(cols, cols)] = block.cov
        covs.append(c)
        grams.append(f @ c @ f.T)
    combos = list(itertools.product(*[b.scales for b in blocks])) or [()]
    weights = np.asarray(combos, dtype=np.float64).reshape(len(combos), len(blocks))
    grams = np.asarray(grams).reshape(len(blocks), k, k)
    fixed = np.eye(k) * (1.0 + 1e-9) + INTERCEPT_VARIANCE * np.ones((k, k))
    # the marginal likelihood of every grid point, in chunks of about 32 MB of K x K matrices
    chunk = max(1, (1 << 22) // (k * k))
    evidence = np.empty(len(weights))
    for at in range(0, len(weights), chunk):
        s_chunk = fixed[None] + (weights[at : at + chunk] @ grams.reshape(len(blocks), k * k)).reshape(-1, k, k)
        _, logdet = np.linalg.slogdet(s_chunk)
        quad = np.linalg.solve(s_chunk, np.broadcast_to(z[:, None], (len(s_chunk), k, 1)))[..., 0] @ z
        evidence[at : at + chunk] = -0.5 * logdet - (NOISE_A0 + k / 2) * np.log(NOISE_B0 + quad / 2)
    best = int(np.nanargmax(evidence))
    scales = tuple(float(s) for s in combos[best])
    v0 = base + sum((s * c for s, c in zip(scales, covs)), np.zeros((p, p)))
    s_inv = np.linalg.inv(fixed + np.einsum("b,bij->ij", weights[best], grams))
    s_inv_z = s_inv @ z
    return BayesLinear(
        v0_ft=v0 @ f.T,
        s_inv_z=s_inv_z,
        s_inv=s_inv,
        v0=v0,
        train=f,
        an=NOISE_A0 + k / 2,
        bn=NOISE_B0 + 0.5 * float(z @ s_inv_z),
        y_mean=y_mean,
        y_scale=y_scale,
        scales=scales,
        evidence=float(evidence[best]),
    )


# --- Student-t distribution without scipy -------------------------------------------------


def _betacf(a: float, b: float, x: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, iterations + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h *= delta
        if np.all(np.abs(delta - 1.0) < 1e-12):
            break
    return h


def _betainc(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """Regularised incomplete beta ``I_x(a, b)`` for ``x`` in [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    out = np.empty_like(x)
    inner = (x > 0) & (x < 1)
    out[x <= 0], out[x >= 1] = 0.0, 1.0
    xi = x[inner]
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * np.log(xi) + b * np.log1p(-xi)
    front = np.exp(log_front)
    direct = xi < (a + 1.0) / (a + b + 2.0)
    res = np.empty_like(xi)
    res[direct] = front[direct] * _betacf(a, b, xi[direct]) / a
    res[~direct] = 1.0 - front[~direct] * _betacf(b, a, 1.0 - xi[~direct]) / b
    out[inner] = res
    return out


def student_t_cdf(t: np.ndarray, dof: float) -> np.ndarray:
    """CDF of Student's t with ``dof`` degrees of freedom (``inf`` values allowed)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.where(t > 0, 1.0, 0.0)
    finite = np.isfinite(t)
    tf = t[finite]
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + tf * tf))
    out[finite] = np.where(tf > 0, 1.0 - tail, tail)
    return out


@functools.lru_cache(maxsize=1024)
def student_t_quantile(q: float, dof: float) -> float:
    """Inverse of :func:`student_t_cdf` (bisection; ``q`` in (0, 1))."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level {q} is not in (0, 1)")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(np.array([mid]), dof)[0] < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return 0.5 * (lo + hi)


# --- ranking --------------------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (torchmetrics; average ranks for ties) of the finite pairs;
    NaN with fewer than 3 of them or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    return float(spearman_corrcoef(torch.from_numpy(a[keep]), torch.from_numpy(b[keep])))
