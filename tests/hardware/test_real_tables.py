"""On the real HW-NAS-Bench tables (skipped without ../shared/data): a device held out with
all its dataset variants is predicted from K of its cells, better with more."""

from __future__ import annotations

import numpy as np
import pytest

from nag.hardware import ArchFeatures, LatencyMetaPredictor, TableCosts, spearman
from nag.hardware.sources import cost_columns, device_family, source_values


@pytest.fixture(scope="module")
def nb201(shared_data):
    from nag.benchmarks import NB201Benchmark

    return NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))


def test_the_sources_and_their_families(nb201):
    columns = cost_columns(nb201)
    assert len([c for c in columns if c.endswith("_latency")]) == 18
    assert {device_family(c) for c in columns} == {"edgegpu", "raspi4", "edgetpu", "pixel3", "eyeriss", "fpga"}
    assert not any("flops" in c or "params" in c for c in columns)
    edgetpu = source_values(nb201, ["hwnb_cifar10_edgetpu_latency"])["hwnb_cifar10_edgetpu_latency"]
    assert np.isnan(edgetpu).sum() == 4699  # -1 = not measured


def test_a_held_out_fpga_is_ranked_from_twenty_cells(nb201, single_thread):
    values = source_values(nb201, cost_columns(nb201))
    sources = {c: v for c, v in values.items() if device_family(c) != "fpga"}
    costs = TableCosts(nb201, ["cifar10_flops_M", "cifar10_params_M"])
    meta = LatencyMetaPredictor(ArchFeatures(nb201.space, costs), steps=200, max_rows=3000, seed=0)
    meta.fit(nb201.archs(), sources)
    archs, y = nb201.archs(), values["hwnb_cifar10_fpga_latency"]
    scores = {}
    for k in (5, 50):
        rhos = []
        for draw in range(3):
            rows = np.random.default_rng([k, draw]).choice(len(archs), k, replace=False)
            test = np.setdiff1d(np.arange(len(archs)), rows)[::5]
            model = meta.adapt([archs[i] for i in rows], y[rows])
            rhos.append(spearman(model.predict([archs[i] for i in test]).mean, y[test]))
        scores[k] = float(np.mean(rhos))
    assert scores[50] > scores[5]
    assert scores[50] > 0.9, scores
