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
def quiet_fit(tmp_path_factory):
    """``quiet_fit(module, datamodule, epochs)``: a CPU fit with no logger, checkpoints or bars,
    for the small models tests train in their fixtures; returns the module in eval mode."""
    import pytorch_lightning as pl

    def fit(module, datamodule, epochs: int):
        pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path_factory.mktemp("fit"),
        ).fit(module, datamodule)
        return module.eval()

    return fit


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


@pytest.fixture(scope="session")
def image_tasks(tmp_path_factory) -> dict:
    """Made-up image tasks with the names of ``configs/images/meta_predictor.yaml``: two small
    seeded image files (MNIST's 28x28 layout and UCI digits' 8x8, 12 images per label) and a
    scores CSV of 60 real NB201 cells whose accuracies follow a seeded per-task rule (a
    logistic of op counts). Returns ``{"scores": path, "tasks": {name: {images, classes}}}``."""
    import csv

    import numpy as np
    import yaml

    from nag.spaces.nb201 import EDGE_OPS, NB201Space

    root = tmp_path_factory.mktemp("image_tasks")
    rng = np.random.default_rng(0)
    files = {}
    for name, side, top in (("mnist_5k.csv", 28, 255), ("digits.csv", 8, 16)):
        labels = np.repeat(np.arange(10), 12)
        density = 0.2 + labels[:, None] / 15  # labels differ in ink, so class sets differ
        pixels = rng.integers(0, top + 1, (len(labels), side * side)) * (
            rng.random((len(labels), side * side)) < density
        )
        files[name] = root / name
        np.savetxt(files[name], np.column_stack([pixels, labels]), fmt="%d", delimiter=",")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/images/meta_predictor.yaml").read_text())
    tasks = {
        name: {"images": str(files[Path(t["images"]).name.removesuffix(".gz")]), "classes": t["classes"]}
        for name, t in config["data"]["init_args"]["tasks"].items()
    }
    space = NB201Space()
    cells = list(dict.fromkeys(space.sample(80, rng)))[:60]
    weights = rng.normal(size=(len(tasks), len(EDGE_OPS)))
    scores = root / "scores.csv"
    with scores.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", *tasks])
        for cell in cells:
            counts = np.array([cell.count(op) for op in EDGE_OPS], dtype=float)
            writer.writerow([space.to_string(cell), *np.round(1 / (1 + np.exp(-weights @ counts / 2)), 4)])
    return {"scores": str(scores), "tasks": tasks}
