"""Synthetic devices on NB201 cells: latency = a device's base cost + the summed cost of the
ops that run (live ops), each device with its own op costs and edge weights, times
measurement noise. Sources and the held-out device share that structure, as real devices
share "convolutions cost more than pooling", so a meta-learned predictor has something to
transfer."""

from __future__ import annotations

import numpy as np
import pytest

from nag.hardware.features import live_labels
from nag.spaces.nb201 import EDGE_OPS, NB201Space

SPACE = NB201Space()


def op_matrix(archs) -> np.ndarray:
    """``[n, 6, 5]`` one-hot of the live op on each edge."""
    out = np.zeros((len(archs), 6, len(EDGE_OPS)))
    for i, arch in enumerate(archs):
        labels, adjacency = SPACE.to_graph(arch)
        for e, op in enumerate(live_labels(labels, adjacency)[1:-1]):
            out[i, e, EDGE_OPS.index(op)] = 1.0
    return out


def synthetic_device(seed: int, ops: np.ndarray, noise: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cost = np.array([0.0, 0.05, 0.4, 1.2, 0.3]) * rng.lognormal(0.0, 0.4, len(EDGE_OPS))
    cost[0] = 0.0
    edge = rng.lognormal(0.0, 0.3, 6)
    base, unit = rng.uniform(0.2, 1.0), rng.uniform(0.5, 20.0)
    latency = (base + np.einsum("neo,o,e->n", ops, cost, edge)) * unit
    return latency * rng.lognormal(0.0, noise, len(latency))


@pytest.fixture(scope="session")
def synthetic():
    """2,000 distinct NB201 cells, 8 source devices and a held-out one."""
    archs = list(dict.fromkeys(SPACE.sample(2600, np.random.default_rng(0))))[:2000]
    ops = op_matrix(archs)
    sources = {f"dev{d}_latency": synthetic_device(d, ops) for d in range(8)}
    return {"space": SPACE, "archs": archs, "ops": ops, "sources": sources, "target": synthetic_device(100, ops)}


@pytest.fixture(scope="session")
def meta(synthetic):
    """A small meta-predictor trained on the synthetic sources (seconds on one CPU thread)."""
    import torch

    from nag.hardware import ArchFeatures, LatencyMetaPredictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return LatencyMetaPredictor(ArchFeatures(synthetic["space"]), hidden=64, dim=16, steps=150, seed=0).fit(
            synthetic["archs"], synthetic["sources"]
        )
    finally:
        torch.set_num_threads(threads)
