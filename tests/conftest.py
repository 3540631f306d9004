"""Shared fixtures: the real benchmark tables beside the checkout (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need the real tables skip with a reason without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark tables not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models: with 2 intra-op threads on a busy 2-core box each op waits on the other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nb201_table(tmp_path_factory) -> Path:
    """A made-up ``nb201.csv``: 300 real cells with seeded accuracies and an empty column.
    Configs that read a table from a path then instantiate in a fraction of a second and
    need no ``../shared/data`` (split [0.6, 0.2, 0.2], seed 0: 188/56/56 cells)."""
    import csv

    import numpy as np

    from nag.spaces.nb201 import NB201Space

    space, rng = NB201Space(), np.random.default_rng(0)
    archs = list(dict.fromkeys(space.sample(400, rng)))[:300]
    path = tmp_path_factory.mktemp("nb201_table") / "nb201.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "arch_str", "cifar10_test_200ep", "empty_metric"])
        for i, arch in enumerate(archs):
            writer.writerow([i, space.to_string(arch), round(float(rng.uniform(80, 94)), 2), ""])
    return path
