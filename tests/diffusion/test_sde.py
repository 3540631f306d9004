import math

import pytest
import torch

from nag.diffusion import SDE, VESDE, VPSDE, sde_from_config
from nag.errors import ConfigError

SDES = [VESDE(), VPSDE(), VESDE(sigma_min=0.05, sigma_max=10.0), VPSDE(beta_min=0.5, beta_max=5.0)]
IDS = ["ve", "vp", "ve-custom", "vp-custom"]


def closed_form(sde: SDE, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Song et al.'s marginals written out independently, in float64."""
    t = t.double()
    if isinstance(sde, VESDE):
        std = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        return x0.double(), std
    lmc = -0.25 * t**2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
    return torch.exp(lmc)[:, None] * x0.double(), torch.sqrt(1 - torch.exp(2 * lmc))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginals_match_closed_form(sde):
    t = torch.tensor([1e-5, 0.01, 0.3, 0.5, 0.9, 1.0])
    x0 = torch.linspace(-2, 3, 6)[:, None].repeat(1, 3)
    mean, std = sde.marginal_prob(x0, t)
    want_mean, want_std = closed_form(sde, x0, t)
    assert std.shape == (6, 1)
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std[:, 0].double(), want_std, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("sde", SDES[:2], ids=IDS[:2])
def test_forward_sde_simulation_matches_marginal(sde):
    g = torch.Generator().manual_seed(0)
    n, steps, t_end, x_init = 10_000, 200, 0.5, 1.5
    x = torch.full((n, 1), x_init)
    dt = t_end / steps
    for i in range(steps):
        t = torch.full((n,), i * dt)
        drift, diffusion = sde.sde(x, t)
        x = x + drift * dt + diffusion * math.sqrt(dt) * torch.randn(x.shape, generator=g)
    mean, std = sde.marginal_prob(torch.full((1, 1), x_init), torch.tensor([t_end]))
    assert x.mean().item() == pytest.approx(mean.item(), rel=0.05)
    assert x.std().item() == pytest.approx(std.item(), rel=0.05)


def test_time_broadcasts_over_graph_shaped_state():
    sde = VESDE()
    x = torch.randn(4, 5, 5)
    t = torch.tensor([0.1, 0.2, 0.3, 0.4])
    mean, std = sde.marginal_prob(x, t)
    drift, diffusion = sde.sde(x, t)
    assert std.shape == diffusion.shape == (4, 1, 1)
    assert mean.shape == drift.shape == x.shape
    torch.testing.assert_close(std[2, 0, 0], sde.sigma(t[2]))


@pytest.mark.parametrize("sde", SDES[:2], ids=IDS[:2])
def test_perturb_is_mean_plus_std_noise(sde):
    x0, noise, t = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0.2, 0.5, 0.8])
    mean, std = sde.marginal_prob(x0, t)
    torch.testing.assert_close(sde.perturb(x0, t, noise), mean + std * noise)


@pytest.mark.parametrize("sde", SDES[:2], ids=IDS[:2])
def test_reverse_drift_subtracts_g2_score_and_half_for_probability_flow(sde):
    x, score, t = torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0.1, 0.5, 0.9])
    drift, g = sde.sde(x, t)
    torch.testing.assert_close(sde.reverse_drift(x, t, score), drift - g**2 * score)
    torch.testing.assert_close(sde.reverse_drift(x, t, score, probability_flow=True), drift - 0.5 * g**2 * score)


@pytest.mark.parametrize("sde,prior_std", [(VESDE(sigma_max=20.0), 20.0), (VPSDE(), 1.0)], ids=IDS[:2])
def test_prior_sampling_shape_scale_and_seed(sde, prior_std):
    a = sde.prior_sampling((50_000, 2), generator=torch.Generator().manual_seed(1))
    b = sde.prior_sampling((50_000, 2), generator=torch.Generator().manual_seed(1))
    c = sde.prior_sampling((50_000, 2), generator=torch.Generator().manual_seed(2))
    assert a.shape == (50_000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.std().item() == pytest.approx(prior_std, rel=0.02)


@pytest.mark.parametrize("sde", SDES[:2], ids=IDS[:2])
def test_bf16_inputs_give_accurate_fp32_outputs(sde):
    x = torch.randn(4, 3).bfloat16()
    t = torch.tensor([1e-4, 1e-3, 0.3, 1.0])
    outputs = [*sde.marginal_prob(x, t), *sde.sde(x, t), sde.perturb(x, t, x), sde.reverse_drift(x, t, x)]
    assert all(o.dtype == torch.float32 for o in outputs)
    _, want_std = closed_form(sde, x.float(), t)
    # bf16 would round these to ~3 significant digits; fp32 keeps them to ~1e-5.
    torch.testing.assert_close(outputs[1][:, 0].double(), want_std, rtol=1e-4, atol=0)


@pytest.mark.parametrize("sde", SDES[:2], ids=IDS[:2])
def test_autocast_does_not_lower_precision(sde):
    x, t = torch.randn(4, 3), torch.tensor([1e-4, 1e-3, 0.3, 1.0])
    want = [*sde.marginal_prob(x, t), *sde.sde(x, t), sde.reverse_drift(x, t, x)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = [*sde.marginal_prob(x.bfloat16(), t), *sde.sde(x, t), sde.reverse_drift(x, t, x.bfloat16())]
        prior = sde.prior_sampling((2, 3))
    assert all(o.dtype == torch.float32 for o in [*got, prior])
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    torch.testing.assert_close(got[3], want[3], rtol=0, atol=0)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_config_round_trip(sde):
    rebuilt = sde_from_config(sde.config())
    assert type(rebuilt) is type(sde)
    assert rebuilt.config() == sde.config()
    assert vars(rebuilt) == vars(sde)


def test_config_round_trip_keeps_eps():
    assert sde_from_config(VPSDE(eps=1e-3).config()).eps == 1e-3


@pytest.mark.parametrize(
    "config",
    [{"type": "subVPSDE"}, {"sigma_min": 0.1}, {"type": "VESDE", "beta_min": 0.1}, {"type": "VESDE", "sigma_min": 0}],
)
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        sde_from_config(config)


@pytest.mark.parametrize(
    "cls,kwargs", [(VESDE, {"sigma_min": 5, "sigma_max": 1}), (VPSDE, {"beta_min": -1}), (VPSDE, {"eps": 0})]
)
def test_invalid_parameters_are_rejected(cls, kwargs):
    with pytest.raises(ConfigError):
        cls(**kwargs)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_scale_std_and_log_snr_invert(sde):
    t = torch.tensor([1e-5, 0.02, 0.3, 0.7, 1.0], dtype=torch.float64)
    a, std = sde.scale_std(t)
    mean, want_std = sde.marginal_prob(torch.ones(5, 1), t)
    torch.testing.assert_close(a.float(), mean[:, 0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(std.float(), want_std[:, 0], rtol=1e-4, atol=1e-7)
    assert a.dtype == torch.float64
    lam = sde.log_snr(t)
    assert torch.all(lam[1:] < lam[:-1])
    torch.testing.assert_close(sde.t_from_log_snr(lam), t, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(sde.t_from_sigma(std / a), t, rtol=1e-6, atol=1e-9)
