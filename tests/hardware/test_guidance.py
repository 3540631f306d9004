"""Latency guidance: the adapted predictor on a diffusion state is the adapted predictor (same
numbers on decoded cells, costs included), its hinge pulls only what is over the budget, and it
steers a score model's samples under the budget."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import Benchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import ConfigError
from nag.generation import decode_samples
from nag.hardware import ArchFeatures, LatencyMetaPredictor
from nag.hardware.guidance import LATENCY_GUIDANCE, StateLatency, latency_budget_term
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.spaces import NB201Space, NBGraphSpace

from .conftest import op_matrix, synthetic_device


class OpCosts:
    """FLOPs-like costs: a base plus a cost per live op, as a cell's FLOPs add up."""

    columns = ("flops", "params")

    def __call__(self, archs) -> np.ndarray:
        ops = op_matrix(archs).sum(1)
        return np.stack([10 + ops @ np.array([0.0, 0.0, 0.0, 4.0, 9.0]), 1 + ops @ np.array([0, 0, 0, 1.0, 2.0])], 1)


@pytest.fixture(scope="module")
def costed_meta(synthetic):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        features = ArchFeatures(synthetic["space"], OpCosts())
        return LatencyMetaPredictor(features, hidden=32, dim=8, steps=100, seed=0).fit(
            synthetic["archs"], synthetic["sources"]
        )
    finally:
        torch.set_num_threads(threads)


def signed_states(space, archs) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([space.encode(a)[0] for a in archs]).float() * 2 - 1}


@pytest.mark.parametrize("which", ["meta", "costed_meta"])
def test_on_decoded_cells_it_is_the_adapted_predictor(which, request, synthetic):
    meta = request.getfixturevalue(which)
    archs, y = synthetic["archs"], synthetic["target"]
    model = meta.adapt(archs[:20], y[:20])
    state_latency = StateLatency(model, archs)
    with torch.no_grad():
        mean, scale = state_latency(state_latency.probabilities(signed_states(synthetic["space"], archs[20:300])))
    expected = model.predict(archs[20:300])
    np.testing.assert_allclose(mean.numpy(), expected.mean, atol=1e-4)
    np.testing.assert_allclose(scale.numpy(), expected.scale, rtol=1e-4)
    if which == "costed_meta":
        assert state_latency.cost_r2 > 0.9999


def test_the_hinge_pulls_only_what_is_over_the_budget(meta, synthetic):
    archs, y = synthetic["archs"], synthetic["target"]
    model = meta.adapt(archs[:20], y[:20])
    state_latency = StateLatency(model)
    budget = float(np.quantile(y, 0.4))
    term = latency_budget_term(state_latency, budget, threshold=0.9)
    state = signed_states(synthetic["space"], archs[20:400])
    feasible = model.prob_within(archs[20:400], budget) >= 0.9
    value = term.value(state, torch.zeros(380))
    assert feasible.any() and (~feasible).any()
    assert torch.all(value[torch.as_tensor(feasible)] == 0)
    assert torch.all(value[torch.as_tensor(~feasible)] < 0)
    # a state on its way to the data (clean one-hots saturate the softmax): one step up the
    # hinge's gradient lowers the predicted latency of the samples over the budget
    x = (0.25 * state["x"][torch.as_tensor(~feasible)]).requires_grad_(True)
    before, _ = state_latency(state_latency.probabilities({"x": x}))
    term.value({"x": x}, torch.zeros(len(x))).sum().backward()
    with torch.no_grad():
        after, _ = state_latency(state_latency.probabilities({"x": x + 0.05 * x.grad}))
    assert (after < before).float().mean() > 0.9


class SyntheticTable(Benchmark):
    """The synthetic cells with the held-out device's latency, to train a generator on."""

    def __init__(self, archs, latency) -> None:
        self.space = NB201Space()
        self._set_table(archs, {"latency": np.asarray(latency, dtype=float)}, keys=archs)


@pytest.fixture(scope="module")
def generator(synthetic, quiet_fit):
    """A small score model of the cells (the data's op frequencies, none of the budget)."""
    pl.seed_everything(0)
    dm = ArchitectureDataModule(
        SyntheticTable(synthetic["archs"], synthetic["target"]), targets=["latency"], batch_size=128, seed=0
    )
    gen = ScoreDiffusionModule(dm.spec(), dim=32, layers=2, heads=2, warmup_steps=5, ema_decay=0.99, lr=3e-3)
    return quiet_fit(gen, dm, 8)


def test_it_steers_sampling_under_the_budget(meta, synthetic, generator):
    space, archs, y = synthetic["space"], synthetic["archs"], synthetic["target"]
    model = meta.adapt(archs[:20], y[:20])
    budget = float(np.quantile(y, 0.25))
    term = latency_budget_term(StateLatency(model), budget, threshold=0.9, scale=LATENCY_GUIDANCE)

    def within(guidance) -> float:
        graphs = generator.sample_graphs(300, steps=20, seed=0, guidance=guidance, normalize_guidance=True)
        decoded = [a for a in decode_samples(space, graphs).archs if a is not None]
        return float(np.mean(synthetic_device(100, op_matrix(decoded)) <= budget))

    unguided, guided = within(()), within([term])
    assert guided > unguided + 0.25, (unguided, guided)


def test_bad_budget_threshold_and_space_are_named(meta, synthetic):
    model = meta.adapt(synthetic["archs"][:20], synthetic["target"][:20])
    state_latency = StateLatency(model)
    with pytest.raises(ConfigError, match="budget"):
        latency_budget_term(state_latency, 0.0, 0.9)
    with pytest.raises(ConfigError, match="threshold"):
        latency_budget_term(state_latency, 1.0, threshold=1.0)


def test_generated_topologies_and_missing_cost_archs_are_refused(costed_meta, synthetic):
    model = costed_meta.adapt(synthetic["archs"][:20], synthetic["target"][:20])
    with pytest.raises(ConfigError, match="archs="):
        StateLatency(model)
    graph_meta = LatencyMetaPredictor(ArchFeatures(NBGraphSpace()))
    graph_meta.features.keep = np.zeros(0)
    with pytest.raises(ConfigError, match="topology"):
        StateLatency(type(model)(graph_meta, model.model, 20, True))
