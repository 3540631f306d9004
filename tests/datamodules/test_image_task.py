"""Image-set tasks: leave-one-task-out episodes that carry a seeded sample of the task's images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nag.benchmarks.nb201 import NB201Benchmark
from nag.datamodules.image_task import ImageTaskDataModule
from nag.datamodules.task import TaskDataModule
from nag.errors import ConfigError, DataFileError

Q, N, HELD = 6, 4, "digits_all"


def make_dm(image_tasks: dict, **kwargs) -> ImageTaskDataModule:
    args = {
        "images_per_class": N,
        "image_size": 8,
        "query_size": Q,
        "train_episodes": 24,
        "eval_episodes": 8,
        "batch_size": 4,
        "seed": 0,
    } | kwargs
    return ImageTaskDataModule(image_tasks["scores"], image_tasks["tasks"], HELD, **args)


@pytest.fixture(scope="module")
def dm(image_tasks: dict) -> ImageTaskDataModule:
    return make_dm(image_tasks)


def test_held_out_task_only_in_test_episodes(dm: ImageTaskDataModule) -> None:
    held = dm.task_names.index(HELD)
    train, val = (
        torch.cat([b["task"] for b in loader]).tolist() for loader in (dm.train_dataloader(), dm.val_dataloader())
    )
    assert held not in train and held not in val
    assert set(train) == set(dm.train_task_ids) and set(val) <= set(dm.train_task_ids)
    assert set(torch.cat([b["task"] for b in dm.test_dataloader()]).tolist()) == {held}


def test_spec_has_the_image_shape_and_no_held_out_statistics(dm: ImageTaskDataModule) -> None:
    spec = dm.spec()
    assert spec["tasks"] == dm.task_names and spec["held_out"] == HELD
    assert HELD not in spec["target_stats"] and len(spec["target_stats"]) == len(dm.task_names) - 1
    assert (spec["image_channels"], spec["image_size"], spec["max_classes"]) == (1, 8, 10)


def test_episode_images_are_of_the_task_classes_and_padded_slots_masked(dm: ImageTaskDataModule) -> None:
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 10, N, 1, 8, 8) and batch["class_mask"].shape == (4, 10)
    for images, mask, tid in zip(batch["images"], batch["class_mask"], batch["task"].tolist()):
        pools = dm.class_images[tid]
        assert mask.tolist() == [c < len(pools) for c in range(10)]
        assert not images[~mask].any()
        for c, pool in enumerate(pools):
            distances = torch.cdist(images[c].flatten(1), pool.flatten(1))
            assert (distances.min(1).values < 1e-5).all(), "an image of slot c is an image of class c"
            assert len(set(distances.argmin(1).tolist())) == N, "drawn without replacement"


def test_episodes_are_seeded(image_tasks: dict, dm: ImageTaskDataModule) -> None:
    first, again = next(iter(dm.val_dataloader())), next(iter(make_dm(image_tasks).val_dataloader()))
    other = next(iter(make_dm(image_tasks, seed=1).val_dataloader()))
    for key in first:
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(first["images"], other["images"])


def test_architectures_are_drawn_as_task_datamodule_draws_them(image_tasks: dict, dm: ImageTaskDataModule) -> None:
    """Images come from their own random stream: the episodes extend TaskDataModule's."""
    plain = TaskDataModule(
        [NB201Benchmark(image_tasks["scores"])],
        list(image_tasks["tasks"]),
        HELD,
        context_size=0,
        query_size=Q,
        train_episodes=24,
        eval_episodes=8,
        split=(0.6, 0.2, 0.2),
        batch_size=4,
    )
    ours, theirs = next(iter(dm.test_dataloader())), next(iter(plain.test_dataloader()))
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_bad_inputs_name_the_field(image_tasks: dict, tmp_path: Path) -> None:
    with pytest.raises(
        DataFileError, match="data.init_args.scores: .* measure it with `python benchmarks/image_tasks.py measure"
    ):
        ImageTaskDataModule(str(tmp_path / "none.csv"), image_tasks["tasks"], HELD)
    with pytest.raises(ConfigError, match="data.init_args.tasks: cifar not columns"):
        ImageTaskDataModule(
            image_tasks["scores"], image_tasks["tasks"] | {"cifar": {"images": "x", "classes": [0]}}, HELD
        )
    with pytest.raises(ConfigError, match="images_per_class=13"):
        _ = make_dm(image_tasks, images_per_class=13).class_images  # 12 images per label
    moved = {name: t | {"images": str(tmp_path / "gone.csv")} for name, t in image_tasks["tasks"].items()}
    with pytest.raises(DataFileError, match=r"data.init_args.tasks.mnist_0to4.images: .*gone.csv"):
        _ = make_dm({"scores": image_tasks["scores"], "tasks": moved}).class_images


def test_real_images_fill_the_class_slots(image_tasks: dict, shared_data: Path) -> None:
    images = shared_data / "images"
    tasks = {
        "mnist_0to4": {"images": str(images / "mnist_5k.csv.gz"), "classes": [0, 1, 2, 3, 4]},
        "digits_all": {"images": str(images / "digits.csv.gz"), "classes": list(range(10))},
    }
    dm = ImageTaskDataModule(
        image_tasks["scores"],
        tasks,
        HELD,
        images_per_class=N,
        query_size=Q,
        train_episodes=2,
        eval_episodes=2,
        batch_size=2,
    )
    assert [len(p) for p in dm.class_images[0]] == [500] * 5  # MNIST-5k: 500 per label
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch["task"].tolist() == [0, 0] and batch["class_mask"][:, :5].all() and not batch["class_mask"][:, 5:].any()
    )
    assert batch["images"].shape[-2:] == (16, 16) and batch["images"][:, :5].std() > 0.5
