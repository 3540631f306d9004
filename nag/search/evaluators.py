"""Where a batch of candidate trainings runs: in this process, in a local process pool, or as
Ray tasks on a machine or a cluster. Each takes independent jobs and yields every result as it
finishes, so the caller stores it at once; a job that raises, or whose worker dies, is run once
more, then reported as a :class:`Failed` result and the others go on."""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from nag.errors import ConfigError

#: Runs of a job before it is reported as failed: the first and one retry.
ATTEMPTS = 2


@dataclass(frozen=True)
class Failed:
    """A job that failed on every attempt, with the last error."""

    error: str


Job = Any
Result = Any


class Evaluator(ABC):
    """Runs ``fn`` on each job; yields ``(index of the job, result or Failed)`` as each finishes.

    ``fn`` and the jobs must pickle (a module-level function, plain values) for the parallel
    evaluators."""

    @abstractmethod
    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result | Failed]]: ...

    def close(self) -> None:  # noqa: B027 - nothing to release in process
        """Release workers (a new :meth:`map` starts them again)."""


class InProcess(Evaluator):
    """One job after another in this process: the default, and what a debugger can step into."""

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result | Failed]]:
        for i, job in enumerate(jobs):
            for _ in range(ATTEMPTS):
                try:
                    result = fn(job)
                    break
                except Exception as e:  # a candidate's training failed; the search goes on
                    result = Failed(f"{type(e).__name__}: {e}")
            yield i, result

    def __repr__(self) -> str:
        return "InProcess()"


class ProcessPool(Evaluator):
    """``workers`` local processes (spawned, so each imports torch afresh and no thread state is
    inherited). A worker killed mid-job breaks the pool: the pool is rebuilt and every job it
    held is run again, counted as that job's retry."""

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ConfigError(f"evaluator.workers={workers}: expected at least 1 process")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result | Failed]]:
        attempts = [0] * len(jobs)
        pending = list(range(len(jobs)))
        running: dict[Future, tuple[int, ProcessPoolExecutor]] = {}
        while pending or running:
            for i in pending:
                attempts[i] += 1
                pool = self._executor()
                running[pool.submit(fn, jobs[i])] = (i, pool)
            pending = []
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i, pool = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    error = "its worker process died"
                    if pool is self._pool:  # every job the pool held fails with it; rebuild once
                        pool.shutdown(wait=False)
                        self._pool = None
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
                else:
                    yield i, result
                    continue
                if attempts[i] < ATTEMPTS:
                    pending.append(i)
                else:
                    yield i, Failed(error)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return f"ProcessPool(workers={self.workers})"


class Ray(Evaluator):
    """Each job a Ray task with its own ``cpus`` and ``gpus``, on the Ray instance at ``address``
    (``"auto"``: the one ``ray start --head`` runs here or this machine joined; None: a local
    instance started for this search with ``workers`` CPUs, default all of this machine's). Ray
    re-runs a task whose worker died or that raised, once; then it is reported as failed. Needs
    ``pip install 'nag-archgen[ray]'``."""

    def __init__(
        self, address: str | None = None, workers: int | None = None, cpus: float = 1, gpus: float = 0
    ) -> None:
        if cpus <= 0 or gpus < 0:
            raise ConfigError(f"evaluator.cpus={cpus}, evaluator.gpus={gpus}: expected cpus > 0 and gpus >= 0")
        if workers is not None and workers < 1:
            raise ConfigError(f"evaluator.workers={workers}: expected at least 1 CPU for the local Ray instance")
        if address is not None and workers is not None:
            raise ConfigError(
                "evaluator.workers sizes a local Ray instance; with evaluator.address the cluster's own "
                "resources decide, so leave workers out"
            )
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("evaluator Ray needs Ray: pip install 'nag-archgen[ray]'") from None
        self.address, self.workers, self.cpus, self.gpus = address, workers, cpus, gpus

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.workers is not None:
                options["num_cpus"] = self.workers
            ray.init(address=self.address, **options)
        return ray

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result | Failed]]:
        ray = self._connect()
        remote = ray.remote(fn).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=ATTEMPTS - 1, retry_exceptions=True
        )
        running = {remote.remote(job): i for i, job in enumerate(jobs)}
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            i = running.pop(ref)
            try:
                yield i, ray.get(ref)
            except ray.exceptions.RayError as e:
                yield i, Failed(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def __repr__(self) -> str:
        return f"Ray(address={self.address!r}, workers={self.workers}, cpus={self.cpus}, gpus={self.gpus})"
