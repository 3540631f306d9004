"""ResidualGP: corrects a meta-predictor's ranking where measurements disagree with it."""

from __future__ import annotations

import torch

from nag.search.residual_gp import ResidualGP


def _pool(seed: int = 0) -> torch.Tensor:
    return torch.randn(400, 8, generator=torch.Generator().manual_seed(seed))


def test_learns_what_the_prior_misses() -> None:
    """The truth depends on a feature the prior ignores: after 30 measurements the
    posterior mean ranks the pool far better than the prior does."""
    h = _pool()
    truth = h[:, 0] + 2.0 * h[:, 1]
    prior = h[:, 0]
    seen = torch.arange(0, 400, 13)
    gp = ResidualGP(h)
    mean, std = gp.posterior(prior, prior[seen], h[seen], truth[seen])

    def corr(a: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.double(), truth.double()]))[0, 1])

    assert corr(mean) > corr(prior) + 0.2
    assert bool((std[seen] < std.median()).all())  # measured points are the certain ones


def test_agrees_with_the_prior_when_it_is_right() -> None:
    """Measurements that follow the prior leave its order at the top untouched."""
    h = _pool(1)
    prior = h[:, 2]
    seen = torch.arange(5)
    mean, _ = ResidualGP(h).posterior(prior, prior[seen], h[seen], 3.0 * prior[seen] + 7.0)
    assert torch.equal(mean.argsort(descending=True)[:10], prior.argsort(descending=True)[:10])
