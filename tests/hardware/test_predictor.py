"""The few-shot latency predictor: it adapts (more measurements rank a new device better),
its intervals are calibrated-ish, and the baselines and files work."""

from __future__ import annotations

import numpy as np
import pytest

from nag.errors import ConfigError
from nag.hardware import ArchFeatures, CostFit, LatencyMetaPredictor, NearestDevice, live_labels, spearman
from nag.hardware.bayes import Block, fit_bayes_linear, student_t_cdf, student_t_quantile
from nag.hardware.predictor import POWERS, LatencyPrediction, box_cox, inverse_box_cox


def held_out_scores(meta, synthetic, k: int, draws: int = 4) -> tuple[float, float]:
    """Mean Spearman and 90 %-interval coverage on the cells not measured."""
    archs, y = synthetic["archs"], synthetic["target"]
    rhos, covers = [], []
    for draw in range(draws):
        rows = np.random.default_rng([k, draw]).choice(len(archs), k, replace=False)
        model = meta.adapt([archs[i] for i in rows], y[rows])
        test = np.setdiff1d(np.arange(len(archs)), rows)
        prediction = model.predict([archs[i] for i in test])
        low, high = prediction.interval(0.9)
        rhos.append(spearman(prediction.mean, y[test]))
        covers.append(np.mean((y[test] >= low) & (y[test] <= high)))
    return float(np.mean(rhos)), float(np.mean(covers))


def test_the_predictor_adapts_more_measurements_rank_better(meta, synthetic):
    rho5, _ = held_out_scores(meta, synthetic, 5)
    rho50, _ = held_out_scores(meta, synthetic, 50)
    assert rho50 > rho5
    assert rho50 > 0.9, rho50


def test_the_90_percent_interval_covers_about_90_percent(meta, synthetic):
    _, coverage = held_out_scores(meta, synthetic, 20)
    assert 0.75 <= coverage <= 0.99, coverage


def test_it_beats_a_constant_and_predicts_in_the_tables_unit(meta, synthetic):
    archs, y = synthetic["archs"], synthetic["target"]
    model = meta.adapt(archs[:20], y[:20])
    median = model.predict(archs[20:]).median
    assert 0.3 < np.median(median / y[20:]) < 3  # same unit as the measurements
    assert model.num_measured == 20
    p = model.prob_within(archs[20:40], float(np.median(y)))
    assert ((p >= 0) & (p <= 1)).all()


def test_the_transform_follows_how_latency_composes(meta, synthetic):
    """Op times that add up (a kernel per op, a 170x range) are fitted in a power space, op
    factors that multiply (exp of the same sum) in log space: the evidence picks the power."""
    archs = synthetic["archs"]
    times = 0.2 + synthetic["ops"].sum(1)[:50] @ np.array([0.0, 0.1, 2.0, 6.0, 1.0])
    times *= 1.0 + 0.02 * np.random.default_rng(1).standard_normal(50)
    assert meta.adapt(archs[:50], times).power > 0
    assert meta.adapt(archs[:50], np.exp(3.0 * times / times.max())).power == 0


@pytest.mark.parametrize("power", POWERS)
def test_a_prediction_reads_the_same_at_every_power(power):
    """Median, interval and P(within) agree with each other whatever the transform."""
    latency = np.array([2.0, 5.0, 11.0])
    prediction = LatencyPrediction(box_cox(latency, power), np.full(3, 0.2), 8.0, power)
    np.testing.assert_allclose(prediction.median, latency)
    np.testing.assert_allclose(inverse_box_cox(box_cox(latency, power), power), latency)
    low, high = prediction.interval(0.9)
    assert (low < latency).all() and (latency < high).all()
    for i in range(3):
        np.testing.assert_allclose(prediction.prob_within(float(high[i]))[i], 0.95, atol=1e-6)
        np.testing.assert_allclose(prediction.prob_within(float(latency[i]))[i], 0.5, atol=1e-6)
    assert (prediction.std > 0).all()


def test_adapt_refuses_too_few_or_bad_measurements(meta, synthetic):
    archs = synthetic["archs"]
    with pytest.raises(ConfigError, match="at least 3"):
        meta.adapt(archs[:2], [1.0, 2.0])
    with pytest.raises(ConfigError, match="positive"):
        meta.adapt(archs[:4], [1.0, 2.0, -1.0, 3.0])
    with pytest.raises(ConfigError, match="one latency each"):
        meta.adapt(archs[:4], [1.0, 2.0])


def test_save_and_load_give_the_same_predictions(meta, synthetic, tmp_path):
    archs, y = synthetic["archs"], synthetic["target"]
    path = meta.save(tmp_path / "meta.pt")
    loaded = LatencyMetaPredictor.load(path, ArchFeatures(synthetic["space"]))
    a = meta.adapt(archs[:10], y[:10]).predict(archs[10:50])
    b = loaded.adapt(archs[:10], y[:10]).predict(archs[10:50])
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="not a latency meta-predictor"):
        torch = pytest.importorskip("torch")
        torch.save({"x": 1}, tmp_path / "other.pt")
        LatencyMetaPredictor.load(tmp_path / "other.pt", ArchFeatures(synthetic["space"]))


def test_baselines_fit_and_the_nearest_device_picks_the_closest(synthetic):
    archs, sources = synthetic["archs"], synthetic["sources"]
    near = NearestDevice.from_columns(archs, sources)
    y = sources["dev3_latency"] * 2.0
    model = near.adapt(archs[:20], y[:20])
    assert model.device == "dev3_latency"
    assert spearman(model.predict(archs[20:]).mean, y[20:]) > 0.99
    flops = CostFit(lambda a: np.array([1.0 + sum(op != "none" for op in x) for x in a]))
    fit = flops.adapt(archs[:20], synthetic["target"][:20])
    assert np.isfinite(fit.predict(archs[20:30]).mean).all()


def test_live_labels_drop_ops_that_compute_nothing(synthetic):
    space = synthetic["space"]
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    labels, adjacency = space.to_graph(arch)
    # node 2 only gets none edges: its outgoing conv (2->3) is dead; the rest runs
    assert live_labels(labels, adjacency)[1:-1] == [
        "nor_conv_3x3",
        "none",
        "none",
        "avg_pool_3x3",
        "nor_conv_3x3",
        "none",
    ]


def test_features_count_declared_ops_and_occupied_positions_besides_live_ones(synthetic):
    space = synthetic["space"]
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    features = ArchFeatures(space).fit(synthetic["archs"])
    assert {"counts", "declared", "present"} <= set(features.groups)
    raw = features.raw([arch])[0][features.keep]
    declared = raw[features.groups["declared"]]
    counts = raw[features.groups["counts"]]
    assert declared.sum() == 4 and counts.sum() == 3  # the dead conv on 2->3 is declared, not run
    np.testing.assert_array_equal(raw[features.groups["present"]], [1, 0, 0, 1, 1, 1])
    # a file saved before these columns existed cannot be read with them
    state = features.state()
    del state["layout"]
    with pytest.raises(ConfigError, match="meta-train"):
        ArchFeatures(space).load_state(state)


def test_student_t_and_spearman_helpers():
    assert student_t_cdf(np.array([1.0]), 1.0)[0] == pytest.approx(0.75, abs=1e-9)  # Cauchy
    assert student_t_cdf(np.array([0.0, -np.inf, np.inf]), 5.0).tolist() == [0.5, 0.0, 1.0]
    assert student_t_quantile(0.95, 1e6) == pytest.approx(1.6449, abs=1e-3)
    assert student_t_quantile(0.975, 7) == pytest.approx(2.3646, abs=1e-3)
    assert spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1.0)


def test_bayesian_regression_recovers_a_line_with_honest_intervals():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = 2.0 + x @ np.array([0.5, -1.0, 0.2]) + rng.normal(0, 0.1, 200)
    model = fit_bayes_linear(x[:30], y[:30], [Block(np.arange(3), np.eye(3), (0.1, 1.0, 10.0))])
    mean, scale = model.predict(x[30:])
    q = student_t_quantile(0.95, model.dof)
    coverage = np.mean(np.abs(mean - y[30:]) <= q * scale)
    assert np.corrcoef(mean, y[30:])[0, 1] > 0.99
    assert 0.8 <= coverage <= 1.0


def test_feature_rows_are_cached_up_to_a_bound(monkeypatch):
    """A search of a space too large to enumerate asks for features of ever new subnets: the
    cache stops growing at its bound, and rows past it are computed the same way."""
    import nag.hardware.features as features
    from nag.spaces import MBV3Space

    monkeypatch.setattr(features, "CACHED_ROWS", 3)
    space = MBV3Space()
    archs = space.sample(8, np.random.default_rng(0))
    bounded = ArchFeatures(space)
    first = bounded.raw(archs)
    assert len(bounded._cache) == 3
    np.testing.assert_array_equal(first, bounded.raw(archs))
    monkeypatch.setattr(features, "CACHED_ROWS", 100)
    np.testing.assert_array_equal(first, ArchFeatures(space).raw(archs))
