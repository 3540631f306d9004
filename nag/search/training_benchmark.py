"""A benchmark whose every answer is a real training: a candidate is built with the space's
``to_module``, trained briefly on an image task and scored on held-out images of it.

A search on a practitioner's own data pays for each candidate in training time, so this is the
oracle those searches run against: :class:`~nag.search.oracle.QueryOracle` counts each distinct
architecture once, as for a table. Each (architecture, task, recipe, seed) training is stored
when it finishes (:class:`~nag.search.result_store.ResultStore`), so a killed search resumes
without retraining, and every search sharing the store reuses it. Trainings run where the
evaluator puts them (:mod:`nag.search.evaluators`: in this process, a process pool, Ray).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nag.benchmarks.base import OnDemandBenchmark
from nag.errors import ConfigError, DataFileError
from nag.search.evaluators import Evaluator, Failed, InProcess
from nag.search.result_store import ResultStore, record_key
from nag.search.short_training import ImageTask, Schedule, train_briefly
from nag.spaces import build_space
from nag.spaces.base import Arch, SearchSpace
from nag.zc import load_images

METRIC = "val_accuracy"


@dataclass(frozen=True)
class TrainingJob:
    """One training in plain values, so it pickles to any worker: the space by its config, the
    candidate by its string, the task and recipe by their settings."""

    space: dict
    arch: str
    task: tuple
    recipe: dict
    seed: int
    threads: int = 1
    accelerator: str = "cpu"


@functools.lru_cache(maxsize=4)
def _image_task(task: tuple) -> ImageTask:
    """One worker loads a task's images once, not once per candidate."""
    path, size, channels, classes, val_size, train_size, split_seed = task
    return ImageTask(path, size, channels, len(classes), val_size, train_size, split_seed, classes)


def train_job(job: TrainingJob) -> dict[str, float]:
    """Train one candidate; ``{"value": held-out accuracy, "seconds": wall time}``. The weights are
    drawn from ``job.seed`` (the caller's random stream is left as it was), and so are the batches."""
    start, threads = time.perf_counter(), torch.get_num_threads()
    space = build_space(job.space)
    task = _image_task(job.task)
    recipe = dict(job.recipe)
    network, epochs = recipe.pop("network"), recipe.pop("epochs")
    torch.set_num_threads(job.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)
            arch = space.from_string(job.arch)
            net = space.to_module(arch, num_classes=task.num_classes, in_channels=task.channels, **network)
        value = train_briefly(net, task, epochs, seed=job.seed, accelerator=job.accelerator, **recipe)
    finally:
        torch.set_num_threads(threads)  # in this process (InProcess), the caller's setting stays
    return {"value": value, "seconds": time.perf_counter() - start}


class TrainingBenchmark(OnDemandBenchmark[Arch]):
    """``val_accuracy``: the held-out accuracy of a candidate trained on ``images``, averaged over
    the training ``seeds`` (each seed draws the weights and the batch order).

    Args:
        space: the search space; its ``to_module`` builds the networks.
        images: an image file (``nag.zc.load_images`` layouts, e.g. ``mnist_5k.csv.gz``).
        classes: the labels kept, renumbered in this order (default: all ten digits).
        size: side the images are resized to; ``channels``: the grey channel repeated this many times.
        val_size: held-out images the accuracy is measured on; ``train_size`` images train (default: the rest).
        split_seed: which images are held out.
        epochs, batch_size, lr, schedule: the training recipe (Adam; ``cosine`` anneals the
            learning rate to 0, so the final accuracy depends less on the last batches).
        network: keyword arguments of ``space.to_module`` (e.g. ``{"C": 8, "N": 1}`` for NB201).
        seeds: training seeds averaged into one value; each is a separate, separately stored training.
        store: folder of finished trainings (None: nothing kept).
        threads: torch threads per training.
        accelerator: where each training runs (``cpu``, ``gpu``).
    """

    def __init__(
        self,
        space: SearchSpace,
        images: str | Path,
        classes: Sequence[int] | None = None,
        size: int = 16,
        channels: int = 1,
        val_size: int = 1000,
        train_size: int | None = None,
        split_seed: int = 0,
        epochs: int = 4,
        batch_size: int = 64,
        lr: float = 3e-3,
        schedule: Schedule = "cosine",
        network: Mapping[str, Any] | None = None,
        seeds: Sequence[int] = (0,),
        store: str | Path | None = "runs/trainings",
        threads: int = 1,
        accelerator: str = "cpu",
    ) -> None:
        self.space = space
        path = Path(images).expanduser()
        if not path.is_file():
            raise DataFileError(
                f"benchmark.init_args.images: image file {str(path)!r} not found; pass "
                "--benchmark.init_args.images /path/to/mnist_5k.csv.gz (see ../shared/data/README.md)"
            )
        if not seeds:
            raise ConfigError("benchmark.init_args.seeds is empty; give at least one training seed, e.g. [0]")
        if schedule not in ("constant", "cosine"):
            raise ConfigError(f"benchmark.init_args.schedule={schedule!r}; expected 'constant' or 'cosine'")
        if epochs < 1 or batch_size < 1 or lr <= 0 or threads < 1:
            raise ConfigError(
                f"benchmark.init_args: epochs={epochs}, batch_size={batch_size}, lr={lr}, threads={threads}; "
                "expected epochs, batch_size and threads >= 1 and lr > 0"
            )
        labels = load_images(str(path))[1]
        classes = list(range(int(labels.max()) + 1)) if classes is None else [int(c) for c in classes]
        available = int(np.isin(labels, classes).sum())
        if val_size < 1 or (train_size is not None and train_size < 1) or val_size + (train_size or 1) > available:
            raise ConfigError(
                f"benchmark.init_args.val_size={val_size}, train_size={train_size}: need both >= 1 and at most "
                f"the {available} images of classes {classes} in {path.name} together"
            )
        self._task = (str(path), size, channels, tuple(classes), val_size, train_size, split_seed)
        self.task = _image_task(self._task)  # bad sizes or classes fail here, in one line
        self.recipe = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "schedule": schedule,
            "network": dict(network or {}),
        }
        self.seeds = [int(s) for s in seeds]
        self.threads, self.accelerator = threads, accelerator
        self.store = None if store is None else ResultStore(store)
        self.evaluator: Evaluator = InProcess()
        #: ``(architecture string, seed, error)`` of each training that failed on every attempt.
        self.failures: list[tuple[str, int, str]] = []
        self._check_network()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self._identity = {
            "space": space.identity,
            "images": digest,
            "task": [size, channels, classes, val_size, train_size, split_seed],
            "recipe": self.recipe,
        }
        self._dataset = f"{path.name.split('.')[0]}{classes}"

    def _check_network(self) -> None:
        """Build one network now, so wrong ``network`` arguments fail before any training."""
        arch = self.space.sample(1, np.random.default_rng(0))[0]
        try:
            self.space.to_module(
                arch, num_classes=self.task.num_classes, in_channels=self.task.channels, **self.recipe["network"]
            )
        except TypeError as e:
            raise ConfigError(f"benchmark.init_args.network={self.recipe['network']}: {e}") from None

    # --- what a benchmark answers -----------------------------------------------------
    @property
    def name(self) -> str:
        return f"training:{self._dataset}"

    def _dataset_by_name(self, metric: str) -> str:
        return self._dataset

    @property
    def metrics(self) -> tuple[str, ...]:
        return (METRIC,)

    def evaluated_by(self, evaluator: Evaluator) -> TrainingBenchmark[Arch]:
        """This benchmark with its trainings run by ``evaluator`` (the store is shared)."""
        moved = copy.copy(self)
        moved.evaluator = evaluator
        return moved

    def job(self, arch: Arch, seed: int) -> TrainingJob:
        return TrainingJob(
            self.space.build_config,
            self.space.to_string(arch),
            self._task,
            self.recipe,
            seed,
            self.threads,
            self.accelerator,
        )

    def _key(self, arch: Arch, seed: int) -> str:
        return record_key({**self._identity, "arch": self.space.key(arch), "seed": seed})

    def stored(self, arch: Arch, seed: int) -> dict[str, Any] | None:
        """The stored record of ``arch``'s training from ``seed`` (value, seconds, the job), or None."""
        return None if self.store is None else self.store.get(self._key(arch, seed))

    def values(self, archs: Sequence[Arch], metric: str) -> np.ndarray:
        """``val_accuracy`` of each of ``archs``: stored trainings are read, the rest run on the
        evaluator and stored as each finishes. A candidate whose training failed on every attempt
        is NaN (ranked below everything by the oracle; it still counts as a query)."""
        self.check_metric(metric)
        results = np.full((len(archs), len(self.seeds)), np.nan)
        missing: list[tuple[int, int, str]] = []
        for i, arch in enumerate(archs):
            for j, seed in enumerate(self.seeds):
                key = self._key(arch, seed)
                record = None if self.store is None else self.store.get(key)
                if record is None:
                    missing.append((i, j, key))
                else:
                    results[i, j] = record["value"]
        jobs = [self.job(archs[i], self.seeds[j]) for i, j, _ in missing]
        for n, outcome in self.evaluator.map(train_job, jobs):
            i, j, key = missing[n]
            if isinstance(outcome, Failed):
                self.failures.append((jobs[n].arch, jobs[n].seed, outcome.error))
                continue
            results[i, j] = outcome["value"]
            if self.store is not None:
                self.store.put(key, {**asdict(jobs[n]), **outcome})
        return results.mean(1)

    def __repr__(self) -> str:
        return (
            f"TrainingBenchmark({self.space.name} on {self._dataset}, epochs={self.recipe['epochs']}, "
            f"seeds={self.seeds}, evaluator={self.evaluator!r})"
        )
