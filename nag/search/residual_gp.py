"""Few-shot adaptation of a meta-predictor's ranking to the scores measured on this task.

A meta-predictor transfers what the training tasks share; where the unseen task differs
(NB201 ImageNet16-120's best cells are not CIFAR's), its context encoding sharpens slowly,
because it was meta-trained on very few tasks. A Gaussian process on the meta-predictor's
own architecture embeddings, fitted to what the prior got wrong on the measured archs,
corrects the ranking from the first few queries on, and falls back to the prior (zero
residual) far from anything measured.
"""

from __future__ import annotations

import torch


class ResidualGP:
    """Posterior of ``y = a * prior + b + g(h)``, ``g ~ GP(0, RBF)`` on embeddings ``h``.

    Scores are read in the candidates' own units: the prior is standardised over the
    candidates and the measurements over themselves, so the affine part ``a >= 0, b``
    (least squares) only rescales the prior, never inverts it. The RBF length scale is the
    median distance between candidates (no hyper-parameter fit on a handful of points).
    :meth:`corrects` says whether the measurements support the residual at all.
    """

    def __init__(self, candidates: torch.Tensor, noise: float = 0.1, max_reference: int = 1000) -> None:
        h = candidates.double()
        self.mean, self.std = h.mean(0), h.std(0).clamp_min(1e-6)
        self.features = self._features(h)  # a search scores the same candidates every round
        self.norms = self.features.square().sum(1)
        ref = self.features[torch.linspace(0, len(h) - 1, min(len(h), max_reference)).long()]
        self.length2 = float(torch.cdist(ref, ref).square().median().clamp_min(1e-6))
        self.noise = noise

    def _features(self, h: torch.Tensor) -> torch.Tensor:
        return (h.double() - self.mean) / self.std

    def _kernel(self, a: torch.Tensor, b: torch.Tensor, a_norms: torch.Tensor | None = None) -> torch.Tensor:
        a_norms = a.square().sum(1) if a_norms is None else a_norms
        d2 = (a_norms.unsqueeze(1) + b.square().sum(1).unsqueeze(0) - 2.0 * a @ b.T).clamp_min(0.0)
        return torch.exp(-d2 / self.length2)

    def posterior(
        self, prior: torch.Tensor, seen_prior: torch.Tensor, seen_h: torch.Tensor, seen_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``[N]`` of the ``N`` candidates the GP was built on,
        whose meta-predictor scores are ``prior``, given measured archs (``seen_*``, at least 3)."""
        m, m_seen, y = self._standardise(prior, seen_prior, seen_y)
        f_seen = self._features(seen_h)
        a, b, chol, weights = self._fit(m_seen, f_seen, y)
        cross = self._kernel(self.features, f_seen, self.norms)
        mean = a * m + b + cross @ weights
        v = torch.linalg.solve_triangular(chol, cross.T, upper=False)
        return mean, (1.0 - v.square().sum(0)).clamp_min(1e-12).sqrt()

    def corrects(
        self, prior: torch.Tensor, seen_prior: torch.Tensor, seen_h: torch.Tensor, seen_y: torch.Tensor
    ) -> bool:
        """Whether the residual predicts each measurement, left out, better than the
        rescaled prior alone (summed squared leave-one-out error). A handful of
        measurements that a better prior already explains would otherwise bend its
        ranking towards noise: the search then keeps the prior's order."""
        _, m_seen, y = self._standardise(prior, seen_prior, seen_y)
        f_seen = self._features(seen_h)
        with_gp = alone = 0.0
        for i in range(len(y)):
            keep = torch.arange(len(y)) != i
            a, b, _, weights = self._fit(m_seen[keep], f_seen[keep], y[keep])
            base = a * float(m_seen[i]) + b
            with_gp += (float(y[i]) - base - float(self._kernel(f_seen[i : i + 1], f_seen[keep]) @ weights)) ** 2
            alone += (float(y[i]) - base) ** 2
        return with_gp < alone

    @staticmethod
    def _standardise(
        prior: torch.Tensor, seen_prior: torch.Tensor, seen_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, sd = prior.double().mean(), prior.double().std().clamp_min(1e-9)
        y = seen_y.double()
        return (prior.double() - mu) / sd, (seen_prior.double() - mu) / sd, (y - y.mean()) / y.std().clamp_min(1e-9)

    @staticmethod
    def _affine(m_seen: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Least-squares ``y ~ a * m + b`` with ``a >= 0``, so the prior is never inverted
        (where the measurements order themselves against it, ``b`` is their mean)."""
        design = torch.stack([m_seen, torch.ones_like(m_seen)], 1)
        a, b = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1).tolist()
        return (a, b) if a >= 0 else (0.0, float(y.mean()))

    def _fit(
        self, m_seen: torch.Tensor, f_seen: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        """Affine part, Cholesky factor of the noisy kernel and GP weights of the residual."""
        a, b = self._affine(m_seen, y)
        residual = y - (a * m_seen + b)
        chol = torch.linalg.cholesky(self._kernel(f_seen, f_seen) + self.noise * torch.eye(len(y), dtype=y.dtype))
        return a, b, chol, torch.cholesky_solve(residual.unsqueeze(1), chol).squeeze(1)
