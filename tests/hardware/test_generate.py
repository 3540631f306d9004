"""Generation for a device: only predicted-feasible rows, measured ones marked, ranked by
predicted accuracy; the active step proposes unmeasured candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nag.errors import ConfigError
from nag.generation import generate_for_device
from nag.generation.baseline import UniformRandom
from nag.hardware import DeviceTable, propose_measurements, select_for_device
from nag.hardware.selection import SELECTION_COLUMNS

from .conftest import op_matrix, synthetic_device


@pytest.fixture(scope="module")
def device(synthetic):
    """20 measured cells of the held-out synthetic device."""
    archs, y = synthetic["archs"], synthetic["target"]
    return DeviceTable(synthetic["space"], archs[:20], y[:20])


def truth(archs) -> np.ndarray:
    return synthetic_device(100, op_matrix(archs), noise=0.0)


def test_generation_returns_only_predicted_feasible_distinct_rows(meta, synthetic, device):
    space = synthetic["space"]
    budget = float(np.quantile(synthetic["target"], 0.3))
    conv3 = lambda archs: np.array([sum(op == "nor_conv_3x3" for op in a) for a in archs], float)  # noqa: E731
    result = generate_for_device(
        UniformRandom(space), device, budget, 30, predictor=meta, accuracy=conv3, threshold=0.8, seed=0
    )
    rows = result.rows
    assert 0 < len(rows) <= 30
    assert all(r["p_within_budget"] >= 0.8 for r in rows)
    assert len({space.key(space.from_string(r["arch"])) for r in rows}) == len(rows)
    assert all(r["latency_low90"] <= r["predicted_latency"] <= r["latency_high90"] for r in rows)
    accuracy = [r["predicted_accuracy"] for r in rows]
    assert accuracy == sorted(accuracy, reverse=True)
    # most of what is predicted feasible is feasible (noise-free truth of the synthetic device)
    within = truth([space.from_string(r["arch"]) for r in rows]) <= budget * 1.05
    assert within.mean() >= 0.7


def test_measured_architectures_are_marked_and_judged_by_their_measurement(meta, synthetic, device):
    space = synthetic["space"]
    budget = float(np.median(device.latencies))
    model = meta.adapt(device.archs, device.latencies)
    selection = select_for_device(
        device.archs + synthetic["archs"][20:200], model, budget, 200, space, threshold=0.9, device=device
    )
    assert list(selection.rows[0]) == list(SELECTION_COLUMNS), "what an empty selection's file names"
    measured = [r for r in selection.rows if r["measured"]]
    assert measured, "the table's fast cells are feasible for sure and must be among the rows"
    assert all(r["measured_latency"] <= budget and r["p_within_budget"] == 1.0 for r in measured)
    assert sum(r["measured"] for r in selection.rows) == sum(device.latencies <= budget)
    assert all(math.isnan(r["measured_latency"]) for r in selection.rows if not r["measured"])


def test_the_active_step_proposes_unmeasured_promising_uncertain_cells(meta, synthetic, device):
    model = meta.adapt(device.archs, device.latencies)
    budget = float(np.quantile(synthetic["target"], 0.3))
    proposed = propose_measurements(model, synthetic["archs"], budget, 5, synthetic["space"], device=device)
    assert len(proposed) == 5 and not any(a in device for a in proposed)
    p = model.prob_within(proposed, budget)
    assert ((p > 0.01) & (p < 0.99)).all()
    grown = device.extended(proposed, truth(proposed))
    assert len(grown) == 25


def test_bad_requests_fail_clearly(meta, synthetic, device):
    model = meta.adapt(device.archs, device.latencies)
    with pytest.raises(ConfigError, match="threshold"):
        select_for_device(synthetic["archs"][:50], model, 1.0, 10, synthetic["space"], threshold=1.5)
    with pytest.raises(ConfigError, match="latency<="):
        generate_for_device(UniformRandom(synthetic["space"]), device, "fast please", 10, predictor=model)
