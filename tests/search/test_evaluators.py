"""Evaluators: every job's result comes back once; a job that raises or kills its worker runs
once more, then is reported as failed while the others' results are kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nag.errors import ConfigError
from nag.search import Failed, InProcess, ProcessPool, Ray


def square(x: int) -> int:
    return x * x


def die_once(job: tuple[str, int]) -> int:
    """Kills its own worker the first time it runs for a marker path, then succeeds."""
    marker, x = job
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def always_die(job: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return job


def test_in_process_retries_a_raising_job_once_then_reports_it() -> None:
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if x == 2 and calls.count(2) == 1:
            raise RuntimeError("out of memory")
        if x == 3:
            raise ValueError("diverged")
        return x * 10

    assert dict(InProcess().map(flaky, [1, 2, 3])) == {0: 10, 1: 20, 2: Failed("ValueError: diverged")}
    assert calls.count(2) == 2 and calls.count(3) == 2


def test_process_pool_keeps_finished_results_when_a_worker_dies(tmp_path: Path) -> None:
    pool = ProcessPool(2)
    try:
        jobs = [(str(tmp_path / "once"), 5), (str(tmp_path / "unused"), 6)]
        (tmp_path / "unused").touch()
        assert dict(pool.map(die_once, jobs)) == {0: 5, 1: 6}
        results = dict(pool.map(always_die, [7]))
        assert isinstance(results[0], Failed) and "died" in results[0].error
        assert dict(pool.map(square, [4])) == {0: 16}  # the pool is rebuilt after a death
    finally:
        pool.close()


def test_bad_evaluator_settings_fail_in_one_line() -> None:
    with pytest.raises(ConfigError, match="evaluator.workers=0"):
        ProcessPool(0)
    with pytest.raises(ConfigError, match="leave workers out"):
        Ray(address="auto", workers=2)


def test_ray_runs_each_job_as_a_task_and_retries_a_killed_worker(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional extra nag-archgen[ray]")
    marker = tmp_path / "killed"

    def killed_once(x: int) -> int:  # local, so Ray ships it by value to its workers
        if x == 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x + 100

    evaluator = Ray(workers=2)
    try:
        assert dict(evaluator.map(killed_once, [0, 1, 2])) == {0: 100, 1: 101, 2: 102}
        assert marker.exists()
    finally:
        evaluator.close()
