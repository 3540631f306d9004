"""Image-set tasks for meta-learning: each episode shows a sample of the task's images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nag.benchmarks.nb201 import NB201Benchmark
from nag.datamodules.task import EpisodeDataset, TaskDataModule
from nag.errors import ConfigError, DataFileError
from nag.zc import load_images


@dataclass
class ImageSet:
    """What a task trains on: an image file (``nag.zc.load_images`` layouts) and the labels kept."""

    images: str
    classes: list[int]


class ImageEpisodeDataset(EpisodeDataset):
    """:class:`EpisodeDataset` episodes plus ``images [M, n, C, H, W]`` (``n`` seeded images of
    each of the task's classes, zero-padded to ``M`` slots) and ``class_mask [M]``. The
    images are drawn from their own stream, so the architectures of episode ``i`` are those
    :class:`EpisodeDataset` draws."""

    def __init__(
        self, *args: Any, class_images: list[list[torch.Tensor]], max_classes: int, per_class: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.class_images, self.max_classes, self.per_class = class_images, max_classes, per_class

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        rng = np.random.default_rng([self.seed, i, 1])
        classes = self.class_images[int(item["task"])]
        images = torch.zeros(self.max_classes, self.per_class, *classes[0].shape[1:])
        for c, pool in enumerate(classes):
            images[c] = pool[torch.as_tensor(rng.choice(len(pool), self.per_class, replace=False))]
        return item | {"images": images, "class_mask": torch.arange(self.max_classes) < len(classes)}


class ImageTaskDataModule(TaskDataModule):
    """Leave-one-task-out over image tasks whose NB201 cells were trained for real.

    ``scores`` is the CSV of ``benchmarks/image_tasks.py measure`` (``arch_str`` + one
    accuracy column per task); ``tasks`` names those columns and says which images each
    task is (``images`` file, ``classes`` kept). Episodes are those of
    :class:`TaskDataModule` (the held-out task only in test episodes, its statistics absent
    from :meth:`spec`), each with ``images_per_class`` seeded images of every class of its
    task, resized to ``image_size`` and standardised with their file's own statistics.
    ``context_size`` defaults to 0: the task is read from its images, not from measured archs.
    """

    def __init__(
        self,
        scores: str,
        tasks: dict[str, ImageSet],
        held_out: str,
        images_per_class: int = 16,
        image_size: int = 16,
        context_size: int = 0,
        query_size: int = 16,
        train_episodes: int = 2000,
        eval_episodes: int = 200,
        split: tuple[float, float, float] = (0.6, 0.2, 0.2),
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        if not Path(scores).is_file():
            raise DataFileError(
                f"data.init_args.scores: {scores!r} not found; measure it with "
                f"`python benchmarks/image_tasks.py measure --out {scores}`"
            )
        if not tasks:
            raise ConfigError("data.init_args.tasks: name at least two columns of the scores CSV with their images")
        if images_per_class < 1 or image_size < 4:
            raise ConfigError(
                f"data.init_args.images_per_class={images_per_class}, image_size={image_size}: "
                "need at least 1 image per class and a side of at least 4"
            )
        bench = NB201Benchmark(scores)
        missing = [t for t in tasks if t not in bench.metrics]
        if missing:
            raise ConfigError(
                f"data.init_args.tasks: {', '.join(missing)} not columns of {scores}; "
                f"columns: {', '.join(bench.metrics)}"
            )
        super().__init__(
            [bench],
            list(tasks),
            held_out,
            context_size=context_size,
            query_size=query_size,
            train_episodes=train_episodes,
            eval_episodes=eval_episodes,
            split=split,
            seed=seed,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.image_sets = {name: ImageSet(**t) if isinstance(t, Mapping) else t for name, t in tasks.items()}
        self.images_per_class, self.image_size = images_per_class, image_size
        self.max_classes = max(len(t.classes) for t in self.image_sets.values())

    @cached_property
    def class_images(self) -> list[list[torch.Tensor]]:
        """Per task (in task order), per class, every image of the class ``[n_c, 1, S, S]``."""
        out = []
        for name in self.task_names:
            spec = self.image_sets[name]
            field = f"data.init_args.tasks.{name}"
            if not Path(spec.images).is_file():
                raise DataFileError(
                    f"{field}.images: {spec.images!r} not found; point it at an image CSV such as "
                    "../shared/data/images/mnist_5k.csv.gz"
                )
            pixels, labels = load_images(str(spec.images))
            x = torch.from_numpy((pixels - pixels.mean()) / pixels.std()).unsqueeze(1)
            if x.shape[-1] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            per_class = []
            for c in spec.classes:
                pool = x[torch.from_numpy(labels == c)]
                if len(pool) < self.images_per_class:
                    raise ConfigError(
                        f"{field}.classes: label {c} has {len(pool)} images in {spec.images}, fewer "
                        f"than data.init_args.images_per_class={self.images_per_class}"
                    )
                per_class.append(pool)
            out.append(per_class)
        return out

    def spec(self) -> dict:
        """:meth:`TaskDataModule.spec` plus the image shape the dataset encoder reads."""
        return super().spec() | {
            "image_channels": 1,
            "image_size": self.image_size,
            "max_classes": self.max_classes,
            "images_per_class": self.images_per_class,
        }

    def _episodes(self, task_ids: list[int], split: str, length: int, seed: int) -> ImageEpisodeDataset:
        return ImageEpisodeDataset(
            self.tasks,
            task_ids,
            split,
            self.context_size,
            self.query_size,
            length,
            seed,
            class_images=self.class_images,
            max_classes=self.max_classes,
            per_class=self.images_per_class,
        )
