"""Predictor guidance: exact on an analytic case, calibrated (norm ratio, same strength in PC and
ODE), and it moves real samples where asked."""

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.diffusion import ode_sample, pc_sample
from nag.diffusion.guidance import (
    GuidanceTerm,
    check_same_state,
    guided_score,
    parse_objective,
    predictor_term,
    signal_fraction,
)
from nag.diffusion.sde import VESDE, VPSDE
from nag.errors import ConfigError
from nag.generation import decode_samples
from nag.lightning_modules import PredictorModule
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.spaces import NB201Space


class OpCountTable(Benchmark):
    """A made-up table over NB201 cells whose truth is exact: conv and pool edge counts."""

    def __init__(self, n: int = 3000) -> None:
        self.space = NB201Space()
        archs = list(dict.fromkeys(self.space.sample(n, np.random.default_rng(0))))
        self._set_table(
            archs,
            {
                "convs": np.array([count(a, "conv") for a in archs], dtype=float),
                "pools": np.array([count(a, "pool") for a in archs], dtype=float),
            },
            keys=archs,
        )


def count(arch, word: str) -> int:
    return sum(word in op for op in arch)


def test_guided_score_adds_the_weighted_gradient():
    target = torch.tensor([1.0, -2.0, 0.5])
    term = GuidanceTerm(lambda s, t: (s["x"] * target).sum(-1), scale=3.0, schedule="late")
    score = guided_score(lambda s, t: {"x": -s["x"]}, [term], horizon=1.0)
    x = torch.randn(4, 3)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    out = score({"x": x}, t)["x"]
    expected = -x + 3.0 * (1 - t).unsqueeze(-1) * target
    assert torch.allclose(out, expected)


def test_guidance_differs_only_in_the_gradient_of_unused_parts():
    term = GuidanceTerm(lambda s, t: s["x"].sum(-1))
    out = guided_score(lambda s, t: {k: torch.zeros_like(v) for k, v in s.items()}, [term])(
        {"x": torch.zeros(2, 3), "adj": torch.zeros(2, 3, 3)}, torch.ones(2)
    )
    assert torch.equal(out["adj"], torch.zeros(2, 3, 3)) and torch.equal(out["x"], torch.ones(2, 3))


def per_sample_norm(v):
    return torch.linalg.vector_norm(v.flatten(1), dim=-1)


def random_score(seed=0):
    """Random scores whose size differs from sample to sample."""
    gen = torch.Generator().manual_seed(seed)

    def score(s, t):
        return {
            k: torch.randn(v.shape, generator=gen) * torch.arange(1.0, len(v) + 1).view(-1, *[1] * (v.dim() - 1))
            for k, v in s.items()
        }

    return score


def graph_state(b=4):
    gen = torch.Generator().manual_seed(1)
    return {"x": torch.randn(b, 5, 3, generator=gen), "adj": torch.randn(b, 5, 5, generator=gen)}


def test_norm_ratio_sets_the_added_norm_per_sample_and_key():
    state, t = graph_state(), torch.tensor([0.0, 0.25, 0.5, 1.0])
    on_x = GuidanceTerm(lambda s, t: 1000.0 * (s["x"] ** 2).sum((1, 2)), scale=0.3)
    on_adj = GuidanceTerm(lambda s, t: s["adj"].sum((1, 2)), scale=0.5, schedule="late")
    base = random_score()(state, t)
    out = guided_score(lambda s, t: base, [on_x, on_adj], normalize=True)(state, t)
    added = {k: out[k] - base[k] for k in state}
    torch.testing.assert_close(per_sample_norm(added["x"]), 0.3 * per_sample_norm(base["x"]))
    torch.testing.assert_close(per_sample_norm(added["adj"]), 0.5 * (1 - t) * per_sample_norm(base["adj"]))
    torch.testing.assert_close(
        added["x"] / per_sample_norm(added["x"]).view(-1, 1, 1), state["x"] / per_sample_norm(state["x"]).view(-1, 1, 1)
    )


def test_norm_ratio_normalises_each_term_before_weighting():
    """A predictor with steep gradients does not set the direction alone."""
    state, t = {"x": torch.randn(3, 4)}, torch.ones(3)
    steep = GuidanceTerm(lambda s, t: 1e4 * s["x"][:, 0], scale=0.2)
    flat = GuidanceTerm(lambda s, t: 1e-3 * s["x"][:, 1], scale=0.1)
    base = random_score()(state, t)
    out = guided_score(lambda s, t: base, [steep, flat], normalize=True)(state, t)
    expected = torch.zeros(3, 4)
    expected[:, 0], expected[:, 1] = 0.2, 0.1
    torch.testing.assert_close(out["x"] - base["x"], expected * per_sample_norm(base["x"]).unsqueeze(-1))


def test_norm_ratio_keeps_a_met_budget_at_zero():
    state, t = {"x": torch.tensor([[2.0, 1.0], [0.0, 0.1]])}, torch.ones(2)
    budget = GuidanceTerm(lambda s, t: -torch.relu(s["x"].sum(-1) - 1.0), scale=0.5)
    base = random_score()(state, t)
    added = guided_score(lambda s, t: base, [budget], normalize=True)(state, t)["x"] - base["x"]
    assert torch.equal(added[1], torch.zeros(2))
    torch.testing.assert_close(per_sample_norm(added[:1]), 0.5 * per_sample_norm(base["x"][:1]))
    assert torch.all(added[0] < 0)


def test_probability_flow_scales_only_norm_ratio_guidance_by_the_signal_fraction():
    sde, state, t = VPSDE(), {"x": torch.randn(3, 4)}, torch.tensor([1e-5, 0.5, 1.0])
    term = GuidanceTerm(lambda s, t: s["x"].sum(-1), scale=0.4)
    base = random_score()(state, t)
    added = {
        flow: guided_score(lambda s, t: base, [term], normalize=True, probability_flow=flow, sde=sde)(state, t)
        for flow in (False, True)
    }
    added = {flow: out["x"] - base["x"] for flow, out in added.items()}
    torch.testing.assert_close(added[True], added[False] * signal_fraction(sde, t).unsqueeze(-1))
    assert signal_fraction(sde, t)[0] == pytest.approx(1.0, abs=1e-2) and signal_fraction(sde, t)[2] < 0.01
    raw = [guided_score(lambda s, t: base, [term], probability_flow=flow, sde=sde)(state, t) for flow in (False, True)]
    assert torch.equal(raw[0]["x"], raw[1]["x"])
    with pytest.raises(ValueError, match="sde"):
        guided_score(lambda s, t: base, [term], normalize=True, probability_flow=True)


def normal_score(sde):
    """Exact score of data N(0, I) under ``sde``: N(0, a^2 + std^2) at time t."""

    def score(state, t):
        a, std = sde.marginal_prob(torch.ones(state["x"].shape[0], 1), t)
        return {"x": -state["x"] / (a**2 + std**2)}

    return score


def mean_shift(sampler, sde, terms, seed=0, **flags):
    """Mean of guided minus unguided samples (same seed, so the sampling noise cancels)."""
    shapes = {"x": (2000, 4)}
    run = {
        "pc": lambda f: pc_sample(sde, f, shapes, num_steps=200, generator=torch.Generator().manual_seed(seed)),
        "ode": lambda f: ode_sample(sde, f, shapes, num_steps=30, generator=torch.Generator().manual_seed(seed)),
    }
    score = normal_score(sde)
    return (
        run[sampler](guided_score(score, terms, sde.T, sde=sde, **flags))["x"].mean() - run[sampler](score)["x"].mean()
    ).item()


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_norm_ratio_guidance_moves_pc_and_ode_samples_equally(sde):
    terms = [GuidanceTerm(lambda s, t: s["x"].sum(-1), scale=0.1)]
    pc = mean_shift("pc", sde, terms, normalize=True)
    ode = mean_shift("ode", sde, terms, normalize=True, probability_flow=True)
    uncorrected = mean_shift("ode", sde, terms, normalize=True)
    assert pc > 0.05 and 0.7 <= ode / pc <= 1.4, (pc, ode)
    assert uncorrected / pc > 2.5, (pc, uncorrected)


def test_raw_noise_aware_guidance_needs_no_ode_factor():
    """A noise-aware value ``E[sum(x_0) | x_t]`` makes a consistent tilt: both samplers land on
    N(w, I), the data N(0, I) tilted by ``exp(w sum(x))``, with the ODE's own 1/2."""
    sde = VPSDE()

    def noise_aware_sum(s, t):
        a, std = sde.marginal_prob(torch.ones_like(t), t)
        return a / (a**2 + std**2) * s["x"].sum(-1)

    terms = [GuidanceTerm(noise_aware_sum, scale=0.3)]
    pc, ode = mean_shift("pc", sde, terms), mean_shift("ode", sde, terms, probability_flow=True)
    assert pc == pytest.approx(0.3, abs=0.05) and ode == pytest.approx(0.3, abs=0.05), (pc, ode)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max valid_acc", ("valid_acc", "max", None)),
        ("maximize valid_acc", ("valid_acc", "max", None)),
        ("min latency", ("latency", "min", None)),
        ("  Minimize  latency ", ("latency", "min", None)),
        ("latency<=0.004", ("latency", "min", 0.004)),
        ("latency <= 4e-3", ("latency", "min", 0.004)),
        ("valid_acc>=0.8", ("valid_acc", "max", 0.8)),
        ("params_m >= -1.5", ("params_m", "max", -1.5)),
    ],
)
def test_parse_objective(text, expected):
    assert parse_objective(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "valid_acc",
        "max",
        "",
        "best valid_acc",
        "max valid acc",
        "latency<0.004",
        "latency=0.004",
        "latency<=",
        "latency<=fast",
        "latency<=inf",
        "<=0.004",
        "max latency<=0.004",
        "latency<=0.004\nmax x",
    ],
)
def test_bad_objective_is_named_on_one_line(text):
    with pytest.raises(ConfigError) as err:
        parse_objective(text)
    message = str(err.value)
    assert repr(text) in message and "METRIC<=LIMIT" in message and "\n" not in message


def test_predictor_and_generator_must_share_the_sde_and_the_diffused_entries():
    entries = {"x": torch.ones(3, 2, dtype=torch.bool)}
    generator = SimpleNamespace(sde=VPSDE(0.1, 20.0), entries=entries)
    check_same_state(generator, SimpleNamespace(sde=VPSDE(0.1, 20.0), entries=entries))
    with pytest.raises(ConfigError, match="sde"):
        check_same_state(generator, SimpleNamespace(sde=VESDE(0.01, 5.0), entries=entries))
    other = {"x": entries["x"], "adj": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ConfigError, match="entries"):
        check_same_state(generator, SimpleNamespace(sde=VPSDE(0.1, 20.0), entries=other))


@pytest.fixture(scope="module")
def trained(quiet_fit):
    """A small generator and a noise-aware two-target predictor, trained on one SDE."""
    pl.seed_everything(0)
    dm = ArchitectureDataModule(OpCountTable(), targets=["convs", "pools"], batch_size=128, seed=0)
    gen = ScoreDiffusionModule(dm.spec(), dim=32, layers=2, heads=2, warmup_steps=5, ema_decay=0.99, lr=3e-3)
    pred = PredictorModule(dm.spec(), hidden=32, num_layers=2, lr=5e-3, noise_aware=True)
    return dm.space, quiet_fit(gen, dm, 12), quiet_fit(pred, dm, 12)


def true_counts(space, graphs, word: str) -> np.ndarray:
    result = decode_samples(space, graphs)
    return np.array([count(a, word) for a in result.archs if a is not None])


def test_guidance_raises_the_metric_of_samples(trained):
    space, gen, pred = trained
    unguided = gen.sample_graphs(200, steps=20, seed=0)
    guided = gen.sample_graphs(200, steps=20, seed=0, guidance=[predictor_term(pred, "convs", scale=5.0)])
    before, after = true_counts(space, unguided, "conv"), true_counts(space, guided, "conv")
    assert after.mean() > before.mean() + 1.0, (before.mean(), after.mean())


def test_budget_is_respected_while_maximising_another_metric(trained):
    space, gen, pred = trained
    terms = [
        predictor_term(pred, "convs", scale=2.0),
        predictor_term(pred, "pools", direction="min", limit=0.5, scale=5.0),
    ]
    guided = gen.sample_graphs(200, steps=20, seed=1, guidance=terms)
    unguided = gen.sample_graphs(200, steps=20, seed=1)
    pools, base_pools = true_counts(space, guided, "pool"), true_counts(space, unguided, "pool")
    assert (pools <= 0).mean() >= 0.7, (pools <= 0).mean()
    assert (base_pools <= 0).mean() < 0.5
    assert true_counts(space, guided, "conv").mean() > true_counts(space, unguided, "conv").mean()


def test_unknown_target_is_named(trained):
    _, _, pred = trained
    with pytest.raises(ConfigError, match="latency"):
        predictor_term(pred, "latency")
