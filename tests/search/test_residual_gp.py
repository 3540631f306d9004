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


def test_corrects_only_where_the_residual_predicts() -> None:
    """Measurements the rescaled prior explains up to noise seldom earn a correction (a
    leave-one-out check passes noise by chance only); ones that depend on a feature the
    prior ignores always do."""
    noise_only = structure = 0
    for s in range(20):
        h = _pool(s)
        prior, seen = h[:, 0], torch.arange(0, 400, 20)
        noise = 0.01 * torch.randn(len(seen), generator=torch.Generator().manual_seed(100 + s))
        gp = ResidualGP(h)
        noise_only += gp.corrects(prior, prior[seen], h[seen], 2.0 * prior[seen] + noise)
        structure += gp.corrects(prior, prior[seen], h[seen], prior[seen] + 2.0 * h[seen, 1])
    assert noise_only <= 6
    assert structure == 20


def test_measurements_against_the_prior_do_not_lift_the_unmeasured() -> None:
    """Three top-of-prior measurements that order themselves against it clip its slope to
    zero; candidates far from them then sit at the measurements' mean, not above the best."""
    h = _pool(4)
    prior = h[:, 0]
    seen = prior.argsort(descending=True)[:3]
    y = torch.tensor([1.0, 2.0, 3.0])  # the prior's best measured worst
    mean, _ = ResidualGP(h).posterior(prior, prior[seen], h[seen], y)
    distance = torch.cdist(h, h[seen]).min(1).values
    far = distance > distance.quantile(0.9)
    assert bool((mean[far] < mean[seen[2]]).all())
