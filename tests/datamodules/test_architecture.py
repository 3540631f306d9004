"""Architecture splits (by isomorphism class), train-only normalisation, batches and config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import NBGraphBenchmark
from nag.datamodules.architecture import SPLITS, ArchitectureDataModule
from nag.errors import ConfigError, UnknownMetric
from nag.spaces.mbv3 import MBV3Space
from nag.spaces.nb201 import NB201Space
from nag.spaces.nbgraph import NBGraphSpace

ACC = ["cifar10_test_200ep", "cifar100_test_200ep"]


@pytest.fixture(scope="module")
def bench(shared_data: Path) -> NB201Benchmark:
    return NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))


@pytest.fixture(scope="module")
def dm(bench: NB201Benchmark) -> ArchitectureDataModule:
    dm = ArchitectureDataModule(benchmark=bench, targets=ACC, seed=0, batch_size=64)
    dm.setup()
    return dm


def keys_of(dm: ArchitectureDataModule, split: str) -> set[str]:
    return {dm.space.key(a) for a in dm.archs(split)}


# --- splits -----------------------------------------------------------------------------


def test_splits_are_disjoint_in_iso_classes_and_cover_all_rows(
    dm: ArchitectureDataModule, bench: NB201Benchmark
) -> None:
    idx = dm.split_indices
    assert set(idx) == set(SPLITS)
    assert np.array_equal(np.sort(np.concatenate([idx[s] for s in SPLITS])), np.arange(len(bench)))
    keys = {s: keys_of(dm, s) for s in SPLITS}
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert sum(len(k) for k in keys.values()) == 6466
    # fractions are of iso classes: roughly 80/10/10
    assert len(keys["train"]) == pytest.approx(0.8 * 6466, abs=1)
    assert len(keys["val"]) == pytest.approx(0.1 * 6466, abs=1)
    assert dm.train_keys() == keys["train"]


def test_same_seed_same_split_other_seed_other_split(bench: NB201Benchmark, dm: ArchitectureDataModule) -> None:
    again = ArchitectureDataModule(benchmark=bench, targets=ACC, seed=0)
    other = ArchitectureDataModule(benchmark=bench, targets=ACC, seed=1)
    for s in SPLITS:
        assert np.array_equal(again.split_indices[s], dm.split_indices[s])
    assert not np.array_equal(other.split_indices["train"], dm.split_indices["train"])
    assert keys_of(other, "test") != keys_of(dm, "test")


def test_target_stats_come_from_the_train_split_only(dm: ArchitectureDataModule, bench: NB201Benchmark) -> None:
    for t in ACC:
        train = np.array([bench.query(a, t) for a in dm.archs("train")])
        assert dm.target_stats[t]["mean"] == pytest.approx(train.mean(), rel=1e-9)
        assert dm.target_stats[t]["std"] == pytest.approx(train.std(), rel=1e-9)


@pytest.fixture(scope="module")
def few_shot(bench: NB201Benchmark) -> ArchitectureDataModule:
    return ArchitectureDataModule(benchmark=bench, targets=ACC, train_size=100, seed=0)


def test_train_size_keeps_a_subset_of_the_train_split(
    few_shot: ArchitectureDataModule, dm: ArchitectureDataModule
) -> None:
    assert len(few_shot.archs("train")) == 100
    assert set(few_shot.split_indices["train"]) <= set(dm.split_indices["train"])
    # val/test are untouched by the subsample
    for s in ("val", "test"):
        assert np.array_equal(few_shot.split_indices[s], dm.split_indices[s])


def test_few_shot_stats_differ_from_the_whole_table(few_shot: ArchitectureDataModule, bench: NB201Benchmark) -> None:
    train = np.array([bench.query(a, ACC[0]) for a in few_shot.archs("train")])
    full = bench.column(ACC[0])
    assert few_shot.target_stats[ACC[0]]["mean"] == pytest.approx(train.mean(), rel=1e-9)
    assert few_shot.target_stats[ACC[0]]["std"] == pytest.approx(train.std(), rel=1e-9)
    assert abs(train.mean() - full.mean()) > 1e-3  # so the check above can tell them apart


def test_train_size_subsample_is_seeded(bench: NB201Benchmark, few_shot: ArchitectureDataModule) -> None:
    again = ArchitectureDataModule(benchmark=bench, train_size=100, seed=0).split_indices["train"]
    assert np.array_equal(again, few_shot.split_indices["train"])
    other = ArchitectureDataModule(benchmark=bench, train_size=100, seed=5).split_indices["train"]
    assert not np.array_equal(other, few_shot.split_indices["train"])


# --- batches ----------------------------------------------------------------------------


def test_batches_have_graph_shapes(dm: ArchitectureDataModule) -> None:
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert batch["x"].shape == (64, 8, 7)
        assert batch["adj"].shape == (64, 8, 8)
        assert batch["mask"].shape == (64, 8) and batch["mask"].dtype == torch.bool and batch["mask"].all()
        assert batch["y"].shape == (64, 2)
        assert torch.all(batch["x"].sum(-1) == 1)  # one op per node


def test_batches_decode_to_their_rows_with_normalised_targets(
    dm: ArchitectureDataModule, bench: NB201Benchmark
) -> None:
    batch = next(iter(dm.val_dataloader()))  # unshuffled: the first val archs in order
    for i, arch in enumerate(dm.archs("val")[:64]):
        assert dm.space.decode(batch["x"][i], batch["adj"][i]) == arch
        for j, t in enumerate(ACC):
            expected = (bench.query(arch, t) - dm.target_stats[t]["mean"]) / dm.target_stats[t]["std"]
            assert batch["y"][i, j].item() == pytest.approx(expected, abs=1e-5)


def test_train_targets_are_normalised(dm: ArchitectureDataModule) -> None:
    y = dm.datasets["train"].y
    assert y.shape == (len(dm.archs("train")), 2)
    assert torch.allclose(y.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    # every train row shows up once per epoch, and shuffling is seeded
    epoch = torch.cat([b["y"] for b in dm.train_dataloader()])
    assert epoch.shape == y.shape
    assert torch.equal(epoch, torch.cat([b["y"] for b in dm.train_dataloader()]))
    assert not torch.equal(epoch, y)


def test_rows_with_nan_targets_are_dropped(bench: NB201Benchmark) -> None:
    dm = ArchitectureDataModule(benchmark=bench, targets=["cifar10_flops_M", "cifar10_test_200ep"])
    dm.setup()
    assert sum(len(dm.archs(s)) for s in SPLITS) == 9445
    for s in SPLITS:
        assert not torch.isnan(dm.datasets[s].y).any()
    assert all(not np.isnan(bench.query(a, "cifar10_flops_M")) for a in dm.archs("test"))


# --- bad config -------------------------------------------------------------------------


@pytest.mark.parametrize("split", [(1, 0, 0), (0.9, 0.0, 0.1)])
def test_split_leaving_val_empty(bench: NB201Benchmark, split: tuple) -> None:
    dm = ArchitectureDataModule(benchmark=bench, split=split)
    with pytest.raises(ConfigError, match=r"data\.split.*val split empty"):
        dm.setup()


@pytest.mark.parametrize("split", [(0.8, 0.2), (0.8, -0.1, 0.3), (0, 0, 0)])
def test_split_must_be_three_non_negative_fractions(split: tuple) -> None:
    with pytest.raises(ConfigError, match=r"data\.split"):
        ArchitectureDataModule(space=NB201Space(), split=split)


def test_empty_test_split_fails_only_when_used(bench: NB201Benchmark) -> None:
    dm = ArchitectureDataModule(benchmark=bench, split=(0.9, 0.1, 0))
    dm.setup()
    assert len(dm.train_dataloader().dataset) > 0
    with pytest.raises(ConfigError, match=r"data\.split.*test split empty"):
        dm.test_dataloader()


@pytest.mark.parametrize("size", [100_000, 0])
def test_train_size_outside_the_train_split(bench: NB201Benchmark, dm: ArchitectureDataModule, size: int) -> None:
    bad = ArchitectureDataModule(benchmark=bench, targets=ACC, train_size=size, seed=0)
    with pytest.raises(ConfigError, match=rf"data\.train_size={size}") as info:
        bad.setup()
    assert str(len(dm.archs("train"))) in str(info.value)


def test_targets_need_a_benchmark() -> None:
    with pytest.raises(ConfigError, match=r"data\.targets.*data\.benchmark"):
        ArchitectureDataModule(space=NB201Space(), targets=["cifar10_test_200ep"])


def test_benchmark_or_space_is_required() -> None:
    with pytest.raises(ConfigError, match="benchmark.*space"):
        ArchitectureDataModule()


def test_unknown_target_names_it(bench: NB201Benchmark) -> None:
    with pytest.raises(UnknownMetric, match="'cifar10_acc'") as info:
        ArchitectureDataModule(benchmark=bench, targets=["cifar10_test_200ep", "cifar10_acc"])
    assert str(info.value).startswith("data.targets: ")
    assert "cifar10_test_200ep" in str(info.value)  # the available metrics are listed


def test_space_must_match_the_benchmark(bench: NB201Benchmark) -> None:
    with pytest.raises(ConfigError, match=r"data\.space"):
        ArchitectureDataModule(benchmark=bench, space=NBGraphSpace())
    # the benchmark's own space is fine
    assert ArchitectureDataModule(benchmark=bench, space=NB201Space()).space is bench.space


# --- without a benchmark ----------------------------------------------------------------


def test_bare_finite_space_is_enumerated() -> None:
    dm = ArchitectureDataModule(space=NB201Space(), batch_size=32)
    dm.setup()
    archs = [a for s in SPLITS for a in dm.archs(s)]
    assert len(archs) == len(set(archs)) == 15625
    keys = {s: keys_of(dm, s) for s in SPLITS}
    assert not (keys["train"] & keys["val"]) and not (keys["train"] & keys["test"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (32, 8, 7) and batch["y"].shape == (32, 0)


def test_infinite_space_needs_num_archs() -> None:
    dm = ArchitectureDataModule(space=MBV3Space())
    with pytest.raises(ConfigError, match=r"data\.num_archs"):
        dm.setup()


def test_infinite_space_is_sampled_deterministically() -> None:
    space = MBV3Space()
    a = ArchitectureDataModule(space=space, num_archs=60, seed=3)
    b = ArchitectureDataModule(space=space, num_archs=60, seed=3)
    c = ArchitectureDataModule(space=space, num_archs=60, seed=4)
    all_a = [x for s in SPLITS for x in a.archs(s)]
    assert len(all_a) == 60
    assert all(space.is_valid(x) for x in all_a)
    assert len({x.resolution for x in all_a}) > 1  # the resolution is drawn with the layers
    for s in SPLITS:
        assert a.archs(s) == b.archs(s)
    assert set(all_a) != {x for s in SPLITS for x in c.archs(s)}
    a.setup()
    batch = next(iter(a.train_dataloader()))
    assert batch["x"].shape[1:] == (space.max_nodes, space.num_ops)
    assert batch["y"].shape == (batch["x"].shape[0], 0)


# --- without shared data ----------------------------------------------------------------


def test_nbgraph_cora() -> None:
    bench = NBGraphBenchmark("cora")
    dm = ArchitectureDataModule(benchmark=bench, targets=["test_acc", "latency"], batch_size=16, seed=0)
    dm.setup()
    assert sum(len(dm.archs(s)) for s in SPLITS) == 26206
    # one row per canonical key, so disjoint rows are disjoint classes
    assert not set(dm.split_indices["train"]) & set(dm.split_indices["test"])
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (16, 6, 11) and batch["adj"].shape == (16, 6, 6) and batch["y"].shape == (16, 2)
    arch = dm.archs("val")[0]
    assert dm.space.decode(batch["x"][0], batch["adj"][0], batch["mask"][0]) == arch
    stats = dm.target_stats["test_acc"]
    assert batch["y"][0, 0].item() == pytest.approx(
        (bench.query(arch, "test_acc") - stats["mean"]) / stats["std"], abs=1e-5
    )
    assert dm.datasets["train"].y.mean(0).abs().max() < 1e-4


def test_a_benchmark_without_a_table_scores_sampled_architectures(shared_data: Path) -> None:
    """OFA-MobileNetV3 has no table: ``num_archs`` subnets are sampled from its space and scored
    on demand (the free Note10 latency here), and leaving ``num_archs`` out fails in one line."""
    from nag.benchmarks import OFAMBV3Benchmark

    root = shared_data / "mbv3"
    bench = OFAMBV3Benchmark(root / "ofa_acc_predictor.pth", root / "note10_lut")
    dm = ArchitectureDataModule(bench, targets=["note10_latency"], num_archs=60, seed=0)
    archs, y = dm._rows
    assert len(archs) == 60 and np.allclose(y[:, 0], bench.values(archs, "note10_latency"))
    assert dm.target_stats["note10_latency"]["min"] > 10
    with pytest.raises(ConfigError, match="data.num_archs"):
        ArchitectureDataModule(bench, targets=["note10_latency"])
