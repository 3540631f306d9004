"""Meta-learning tasks: leave-one-task-out over NB-Graph datasets (and NB201 metrics), episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nag.benchmarks.nb201 import NB201Benchmark
from nag.benchmarks.nbgraph import DATASETS, NBGraphBenchmark
from nag.datamodules.task import TaskDataModule
from nag.errors import ConfigError
from nag.spaces.nb201 import NB201Space
from nag.spaces.nbgraph import PROTEINS_OPS, NBGraphSpace

K, Q, B = 8, 6, 4
NB201_METRICS = ["cifar10_test_200ep", "cifar100_test_200ep", "imagenet16_test_200ep"]


@pytest.fixture(scope="module")
def benches() -> list[NBGraphBenchmark]:
    return [NBGraphBenchmark(d) for d in DATASETS]


@pytest.fixture(scope="module")
def dm(benches: list[NBGraphBenchmark]) -> TaskDataModule:
    dm = TaskDataModule(
        benches,
        ["test_acc"],
        held_out="cora",
        context_size=K,
        query_size=Q,
        train_episodes=24,
        eval_episodes=8,
        batch_size=B,
        seed=0,
    )
    _ = dm.tasks  # build once (encodes every dataset)
    return dm


def rows(task_bench: NBGraphBenchmark | NB201Benchmark, x: torch.Tensor, adj: torch.Tensor) -> list[int]:
    """Benchmark rows of the encoded archs ``[N, nodes, ops]`` (decoded, then looked up)."""
    space = task_bench.space
    return [task_bench.index(space.decode(x[i], adj[i])) for i in range(x.shape[0])]


def encodings(x: torch.Tensor, adj: torch.Tensor) -> set[tuple]:
    return {(tuple(x[i].flatten().tolist()), tuple(adj[i].flatten().tolist())) for i in range(x.shape[0])}


# --- NB-Graph, one task per dataset --------------------------------------------------------


def test_tasks_are_the_datasets(dm: TaskDataModule) -> None:
    assert dm.task_names == list(DATASETS)
    assert [t.name for t in dm.tasks] == list(DATASETS)
    assert dm.train_task_ids == list(range(1, 9))
    assert DATASETS.index("cora") not in dm.train_task_ids


def test_task_splits_partition_each_table(dm: TaskDataModule, benches: list[NBGraphBenchmark]) -> None:
    for task, bench in zip(dm.tasks, benches):
        parts = [task.splits[s] for s in ("train", "val", "test")]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(bench)))
        train = bench.column("test_acc")[task.splits["train"]]
        assert task.mean == pytest.approx(train.mean(), rel=1e-9)
        assert task.std == pytest.approx(train.std(), rel=1e-9)
        assert task.x.shape == (len(bench), 6, 11)


def test_episode_shapes(dm: TaskDataModule) -> None:
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert batch["ctx_x"].shape == (B, K, 6, 11)
        assert batch["ctx_adj"].shape == (B, K, 6, 6)
        assert batch["ctx_mask"].shape == (B, K, 6)
        assert batch["x"].shape == (B, Q, 6, 11)
        assert batch["adj"].shape == (B, Q, 6, 6)
        assert batch["ctx_y"].shape == (B, K)
        assert batch["y"].shape == (B, Q)
        assert batch["task"].shape == (B,)


def test_train_and_val_episodes_avoid_the_held_out_task(dm: TaskDataModule) -> None:
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        tasks = torch.cat([b["task"] for b in loader])
        assert set(tasks.tolist()) <= set(dm.train_task_ids)
        assert len(set(tasks.tolist())) > 1


def test_test_episodes_hold_only_the_held_out_task(dm: TaskDataModule) -> None:
    tasks = torch.cat([b["task"] for b in dm.test_dataloader()])
    assert len(tasks) == 8
    assert set(tasks.tolist()) == {DATASETS.index("cora")}


@pytest.mark.parametrize("split", ["train", "test"])
def test_context_and_queries_are_disjoint_and_from_the_right_splits(
    dm: TaskDataModule, benches: list[NBGraphBenchmark], split: str
) -> None:
    loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
    batch = next(iter(loader))
    for e in range(B):
        tid = int(batch["task"][e])
        bench, task = benches[tid], dm.tasks[tid]
        ctx = rows(bench, batch["ctx_x"][e], batch["ctx_adj"][e])
        query = rows(bench, batch["x"][e], batch["adj"][e])
        assert len(set(ctx)) == K and len(set(query)) == Q
        assert not set(ctx) & set(query)
        # one row per canonical key, so distinct rows are distinct (non-isomorphic) archs
        assert not encodings(batch["ctx_x"][e], batch["ctx_adj"][e]) & encodings(batch["x"][e], batch["adj"][e])
        assert set(ctx) <= set(task.splits["train"].tolist())
        assert set(query) <= set(task.splits[split].tolist())


def test_episode_targets_are_the_task_normalised_scores(dm: TaskDataModule, benches: list[NBGraphBenchmark]) -> None:
    batch = next(iter(dm.val_dataloader()))
    for e in range(B):
        tid = int(batch["task"][e])
        bench, task = benches[tid], dm.tasks[tid]
        for prefix in ("ctx_", ""):
            idx = rows(bench, batch[prefix + "x"][e], batch[prefix + "adj"][e])
            expected = (bench.column("test_acc")[idx] - task.mean) / task.std
            assert batch[prefix + "y"][e].numpy() == pytest.approx(expected, abs=1e-5)


def test_episodes_are_deterministic(dm: TaskDataModule) -> None:
    for make in (dm.train_dataloader, dm.test_dataloader):
        first, second = list(make()), list(make())
        assert len(first) == len(second) > 1
        for a, b in zip(first, second):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
    # different episodes differ
    batches = list(dm.test_dataloader())
    assert not torch.equal(batches[0]["x"], batches[1]["x"])


def test_spec_leaves_the_held_out_task_statistics_out(dm: TaskDataModule) -> None:
    """The held-out task's labels must not reach a meta-trained checkpoint via the spec."""
    spec = dm.spec()
    assert spec["held_out"] == "cora" and spec["tasks"] == list(DATASETS)
    assert set(spec["target_stats"]) == set(DATASETS) - {"cora"}
    held = dm.tasks[DATASETS.index("cora")]
    assert held.mean not in [s["mean"] for s in spec["target_stats"].values()]


def test_unknown_held_out_names_the_tasks(benches: list[NBGraphBenchmark]) -> None:
    with pytest.raises(ConfigError, match=r"data\.held_out='mnist'") as info:
        TaskDataModule(benches, ["test_acc"], held_out="mnist")
    assert all(d in str(info.value) for d in DATASETS)


def test_benchmarks_of_different_spaces(benches: list[NBGraphBenchmark]) -> None:
    small = NBGraphBenchmark("proteins", space=NBGraphSpace(PROTEINS_OPS))
    with pytest.raises(ConfigError, match="one search space"):
        TaskDataModule([benches[0], small], ["test_acc"], held_out="cora")


def test_needs_benchmarks_and_metrics(benches: list[NBGraphBenchmark]) -> None:
    with pytest.raises(ConfigError):
        TaskDataModule([], ["test_acc"], held_out="cora")
    with pytest.raises(ConfigError):
        TaskDataModule(benches[:1], [], held_out="cora")


def test_splits_too_small_for_an_episode(benches: list[NBGraphBenchmark]) -> None:
    dm = TaskDataModule([benches[-1]], ["test_acc"], held_out="proteins", context_size=200, query_size=200)
    with pytest.raises(ConfigError, match="proteins/test_acc.*context_size\\+query_size=400"):
        _ = dm.tasks


# --- NB201, one task per metric ----------------------------------------------------------


@pytest.fixture(scope="module")
def nb201(tmp_path_factory: pytest.TempPathFactory) -> NB201Benchmark:
    """600 real cells with made-up accuracies (the real table is tested in benchmarks/)."""
    space = NB201Space()
    cells = list(dict.fromkeys(space.sample(700, np.random.default_rng(0))))[:600]
    rng = np.random.default_rng(1)
    lines = ["index,arch_str," + ",".join(NB201_METRICS) + ",cifar10_flops_M"]
    for i, cell in enumerate(cells):
        accs = [90 + rng.normal(), 70 + 2 * rng.normal(), 45 + 3 * rng.normal()]
        lines.append(f"{i},{space.to_string(cell)}," + ",".join(f"{a:.4f}" for a in accs) + ",1.5")
    path = tmp_path_factory.mktemp("nb201") / "nb201.csv"
    path.write_text("\n".join(lines) + "\n")
    return NB201Benchmark(str(path))


def test_nb201_tasks_are_the_metrics(nb201: NB201Benchmark) -> None:
    dm = TaskDataModule(
        [nb201],
        NB201_METRICS,
        held_out="imagenet16_test_200ep",
        context_size=K,
        query_size=Q,
        eval_episodes=4,
        batch_size=2,
    )
    assert dm.task_names == NB201_METRICS
    assert dm.train_task_ids == [0, 1]
    with pytest.raises(ConfigError, match="cifar10_test_200ep, cifar100_test_200ep, imagenet16_test_200ep"):
        TaskDataModule([nb201], NB201_METRICS, held_out="nb201")
    # each task is z-scored on its own train split
    for task, metric in zip(dm.tasks, NB201_METRICS):
        assert task.mean == pytest.approx(nb201.column(metric)[task.splits["train"]].mean(), rel=1e-9)
    assert dm.tasks[0].mean != pytest.approx(dm.tasks[2].mean, abs=10)
    batch = next(iter(dm.test_dataloader()))
    assert batch["x"].shape == (2, Q, 8, 7)
    assert set(batch["task"].tolist()) == {2}
    task = dm.tasks[2]
    idx = rows(nb201, batch["x"][0], batch["adj"][0])
    assert batch["y"][0].numpy() == pytest.approx(
        (nb201.column(NB201_METRICS[2])[idx] - task.mean) / task.std, abs=1e-4
    )


def test_one_benchmark_one_metric_is_named_by_the_benchmark(nb201: NB201Benchmark) -> None:
    assert TaskDataModule([nb201], ["cifar10_test_200ep"], held_out="nb201").task_names == ["nb201"]


def test_duplicate_tasks_are_rejected():
    from nag.benchmarks import NBGraphBenchmark

    proteins = NBGraphBenchmark("proteins")
    with pytest.raises(ConfigError, match="tasks must be distinct"):
        TaskDataModule([proteins, proteins], ["test_acc"], held_out="proteins")
