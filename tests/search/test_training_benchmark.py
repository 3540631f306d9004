"""TrainingBenchmark: a query is a real training, stored when it finishes and never repeated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nag.errors import ConfigError, DataFileError
from nag.search import (
    Evaluator,
    Failed,
    InProcess,
    QueryOracle,
    RandomSearch,
    TrainingBenchmark,
    candidate_stream,
    run_search,
)
from nag.spaces import NB201Space

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPACE = NB201Space()
CELLS = SPACE.sample(3, np.random.default_rng(0))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 8x8 images in the UCI digits layout (values 0..16, label last): two classes a model can
    tell apart (bright top or bright bottom half)."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    pixels = rng.integers(0, 6, size=(60, 8, 8))
    pixels[labels == 0, :4] += 10
    pixels[labels == 1, 4:] += 10
    path = tmp_path_factory.mktemp("images") / "halves.csv"
    np.savetxt(path, np.column_stack([pixels.reshape(60, -1), labels]), fmt="%d", delimiter=",")
    return path


class Counting(Evaluator):
    """In process, counting the trainings it was given."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def map(self, fn: Callable, jobs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        self.jobs += list(jobs)
        yield from InProcess().map(fn, jobs)


class Interrupted(Evaluator):
    """Finishes ``finish`` trainings, then the search is killed."""

    def __init__(self, finish: int) -> None:
        self.finish = finish

    def map(self, fn: Callable, jobs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for i, result in InProcess().map(fn, jobs):
            if i == self.finish:
                raise KeyboardInterrupt
            yield i, result


def training(images: Path, store: Path | None, **kwargs: Any) -> TrainingBenchmark:
    settings = {"size": 8, "val_size": 20, "epochs": 1, "batch_size": 20, "network": {"C": 4, "N": 1}}
    return TrainingBenchmark(SPACE, images, store=store, **{**settings, **kwargs})


def test_a_query_trains_and_a_finished_training_is_never_repeated(images: Path, tmp_path: Path) -> None:
    counting = Counting()
    bench = training(images, tmp_path / "store", seeds=[0, 1]).evaluated_by(counting)
    oracle = QueryOracle(bench, "val_accuracy")
    values = oracle.query_batch(CELLS)
    assert len(counting.jobs) == 6 and oracle.num_queries == 3  # 3 cells x 2 seeds, 3 queries
    assert all(0.0 <= v <= 1.0 for v in values)
    again = Counting()
    assert training(images, tmp_path / "store", seeds=[1, 0]).evaluated_by(again).values(
        CELLS, "val_accuracy"
    ).tolist() == pytest.approx(values)
    assert again.jobs == []  # a new search reads the store
    longer = Counting()
    training(images, tmp_path / "store", seeds=[0], epochs=2).evaluated_by(longer).values(CELLS, "val_accuracy")
    assert len(longer.jobs) == 3  # another recipe is another training


def test_the_same_seed_gives_the_same_accuracy_and_leaves_the_callers_threads(images: Path) -> None:
    threads = torch.get_num_threads()
    first = training(images, None, threads=max(threads - 1, 1) if threads > 1 else 2).values(CELLS[:1], "val_accuracy")
    assert torch.get_num_threads() == threads
    assert training(images, None).values(CELLS[:1], "val_accuracy") == pytest.approx(first)


def test_a_killed_search_resumes_without_retraining_what_finished(images: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        training(images, tmp_path / "store").evaluated_by(Interrupted(2)).values(CELLS, "val_accuracy")
    resumed = Counting()
    training(images, tmp_path / "store").evaluated_by(resumed).values(CELLS, "val_accuracy")
    assert [job.arch for job in resumed.jobs] == [SPACE.to_string(CELLS[2])]


def test_a_failed_training_is_nan_recorded_and_still_a_query(images: Path, tmp_path: Path) -> None:
    class Failing(Evaluator):
        def map(self, fn: Callable, jobs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
            for i, result in InProcess().map(fn, jobs):
                yield i, Failed("RuntimeError: worker lost") if i == 0 else result

    bench = training(images, tmp_path / "store").evaluated_by(Failing())
    oracle = QueryOracle(bench, "val_accuracy")
    values = oracle.query_batch(CELLS[:2])
    assert np.isnan(values[0]) and not np.isnan(values[1])
    assert oracle.num_queries == 2 and oracle.best[0] == CELLS[1]
    assert bench.failures == [(SPACE.to_string(CELLS[0]), 0, "RuntimeError: worker lost")]


def test_bad_settings_fail_in_one_line_before_training(images: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="benchmark.init_args.images"):
        training(tmp_path / "missing.csv", None)
    with pytest.raises(ConfigError, match="benchmark.init_args.network"):
        training(images, None, network={"width": 4})
    with pytest.raises(ConfigError, match="seeds is empty"):
        training(images, None, seeds=[])
    with pytest.raises(ConfigError, match="val_size=50, train_size=20: .* the 60 images"):
        training(images, None, val_size=50, train_size=20)


def test_nag_search_runs_on_trainings_and_refuses_an_evaluator_for_a_table(images: Path, tmp_path: Path) -> None:
    report = run_search(
        training(images, tmp_path / "store"),
        "val_accuracy",
        RandomSearch(),
        budget=2,
        output=str(tmp_path / "search.json"),
        quiet=True,
        evaluator=InProcess(),
    )
    assert report["runs"][0]["num_queries"] == 2
    from nag.benchmarks.nbgraph import NBGraphBenchmark

    with pytest.raises(ConfigError, match="--evaluator"):
        run_search(
            NBGraphBenchmark("cora"),
            "valid_acc",
            RandomSearch(),
            output=str(tmp_path / "t.json"),
            evaluator=InProcess(),
        )


def test_the_shipped_config_searches_the_same_on_ray_as_in_process(images: Path, tmp_path: Path) -> None:
    """``nag search --evaluator Ray`` on the shipped config (shrunk to the test images): each
    training is seeded, so where it runs does not change what the search finds."""
    pytest.importorskip("ray", reason="Ray is the optional extra nag-archgen[ray]")
    from nag.cli import main

    def search(name: str, *evaluator: str) -> dict:
        output = tmp_path / f"{name}.json"
        main(
            [
                "search",
                "--config",
                str(CONFIGS / "images" / "search_nb201_mnist.yaml"),
                f"--benchmark.init_args.images={images}",
                "--benchmark.init_args.size=8",
                "--benchmark.init_args.train_size=40",
                "--benchmark.init_args.val_size=20",
                "--benchmark.init_args.epochs=1",
                "--benchmark.init_args.network={C: 4, N: 1}",
                f"--benchmark.init_args.store={tmp_path / name}",
                "--strategy.init_args.population_size=4",
                "--budget=6",
                f"--output={output}",
                "--quiet",
                *evaluator,
            ]
        )
        return json.loads(output.read_text())

    here = search("in_process")
    on_ray = search("ray", "--evaluator", "Ray", "--evaluator.workers", "2")
    assert on_ray["runs"][0]["history"] == here["runs"][0]["history"]
    assert len(here["runs"][0]["history"]) == 6


def test_a_finite_space_without_a_table_is_searched_through_its_members(images: Path) -> None:
    """Candidates of a training benchmark on NB201 are the space's members, one per key, and
    run out instead of being drawn for ever (a pool larger than the space would never fill)."""
    oracle = QueryOracle(training(images, None), "val_accuracy")
    assert len(oracle.candidates()) == 15625
    stream = list(candidate_stream(oracle, np.random.default_rng(0)))
    assert len(stream) == len({SPACE.key(a) for a in SPACE.enumerate()})


def test_a_ray_worker_killed_mid_training_loses_no_finished_candidate(images: Path, tmp_path: Path) -> None:
    """Ray runs the trainings; the first attempt of one is killed (SIGKILL) while it trains. Ray
    runs it again, every value equals an in-process training's, and all of them are stored."""
    pytest.importorskip("ray", reason="Ray is the optional extra nag-archgen[ray]")
    from nag.search import Ray

    marker = tmp_path / "killed"

    class KillingOnce(Ray):
        def map(self, fn: Callable, jobs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
            def train_or_die(job: Any) -> Any:  # local, so Ray ships it by value
                import os
                import signal
                import threading

                from nag.search.training_benchmark import _image_task

                _image_task(job.task)  # loaded before the clock starts: the kill lands in training
                if job.arch == victim and not marker.exists():
                    marker.touch()
                    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
                return fn(job)

            return super().map(train_or_die, jobs)

    victim = SPACE.to_string(CELLS[1])
    slow = {"epochs": 100}  # a training that lasts well past the kill
    expected = training(images, None, **slow).values(CELLS, "val_accuracy")
    evaluator = KillingOnce(workers=2)
    try:
        bench = training(images, tmp_path / "store", **slow).evaluated_by(evaluator)
        assert bench.values(CELLS, "val_accuracy").tolist() == pytest.approx(expected.tolist())
    finally:
        evaluator.close()
    assert marker.exists() and bench.failures == []
    assert all(bench.stored(cell, 0) is not None for cell in CELLS)
    assert bench.stored(CELLS[1], 0)["seconds"] > 0.4  # the killed attempt was still training at 0.2 s
