"""This machine as a device: time architectures on the local CPU and write the ``arch,latency``
table that :func:`~nag.hardware.tables.read_device_table` and ``nag generate --device_table`` take.

Each architecture is built with ``space.to_module(arch)`` (fresh weights, seeded), put in eval
mode and run under ``torch.inference_mode`` on a random input with torch pinned to
``threads`` threads (restored afterwards): ``warmup`` untimed passes, then ``repeats`` timed
ones (``time.perf_counter``), optionally in interleaved ``rounds``. The latency is the median
in milliseconds of one forward pass of a whole batch; the noise is the relative interquartile
range of the repeats, so a user sees how much a busy machine disturbed each value.

Two clocks are read around every pass: the wall clock (what a user waits) and the timing
thread's CPU time (``time.thread_time``). On a machine shared with other jobs the wall clock
also counts the time the scheduler gave the core to them; the CPU time does not, so it is the
steadier estimate of the network's own latency there (with ``threads=1``, where the whole
forward pass runs in the timing thread). ``clock`` picks which one the table's ``latency`` is.
``nag measure-latency`` is :func:`measure_device_table`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nag.errors import ConfigError, DataFileError, InvalidArchitecture
from nag.hardware.tables import ARCH_COLUMN, LATENCY_COLUMN
from nag.io.export import input_shape_of
from nag.io.writers import write_rows
from nag.spaces.base import Arch, SearchSpace
from nag.spaces.registry import resolve_space

#: One input without the batch dimension, per space name, for spaces that do not declare an
#: ``input_shape`` attribute (what their ``to_module`` builds for by default).
NOISE_COLUMN = "noise"
CLOCKS = ("wall", "cpu")


@dataclass
class Measurement:
    """One architecture's timings by batch size: the median milliseconds of a forward pass of
    the batch and the relative IQR of the repeats (``(q75 - q25) / median``), by the wall clock
    and by the timing thread's CPU time (``cpu_``)."""

    arch: Arch
    latency: dict[int, float]
    noise: dict[int, float]
    cpu_latency: dict[int, float]
    cpu_noise: dict[int, float]

    def by(self, clock: str) -> tuple[dict[int, float], dict[int, float]]:
        """``(latency, noise)`` by ``clock`` (``"wall"`` or ``"cpu"``)."""
        return (self.latency, self.noise) if clock == "wall" else (self.cpu_latency, self.cpu_noise)


def check_builds_networks(space: SearchSpace) -> None:
    """Refuse, before any work, a space whose ``to_module`` is the base class's (no network)."""
    if type(space).to_module is SearchSpace.to_module:
        raise ConfigError(
            f"--space {space.name!r}: it builds no network (no to_module) to time; use a space that does, e.g. nb201"
        )


def measure_latency(
    space: SearchSpace,
    archs: Sequence[Arch],
    *,
    batch_sizes: Sequence[int] = (1,),
    input_shape: Sequence[int] | None = None,
    warmup: int = 5,
    repeats: int = 20,
    rounds: int = 1,
    threads: int = 1,
    module_args: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[Measurement]:
    """Time every architecture of ``archs`` on this CPU (see the module docstring), in order.
    ``module_args`` go to ``space.to_module`` (e.g. ``{"num_classes": 100}``).

    ``rounds > 1`` splits the repeats into that many passes over all the architectures (their
    networks are kept in memory, re-warmed by one untimed pass each round), so that a load
    change on a shared machine hits every architecture alike instead of the few timed during it."""
    check_builds_networks(space)
    input_shape_of(space, input_shape)  # a space without a default shape fails before any timing
    sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch_size {list(batch_sizes)}: batch sizes must be positive integers")
    if min(repeats, warmup, threads, rounds) < 1 or rounds > repeats:
        raise ConfigError(
            f"--repeats {repeats} --warmup {warmup} --rounds {rounds} --threads {threads}: need each >= 1 "
            "and rounds <= repeats"
        )
    per_round = np.diff(np.linspace(0, repeats, rounds + 1).round().astype(int))
    examples: dict[tuple[int, ...], dict[int, torch.Tensor]] = {}

    def inputs(arch: Arch) -> dict[int, torch.Tensor]:
        """One seeded batch per size at the input ``arch`` is meant for (MBV3: its resolution)."""
        shape = input_shape_of(space, input_shape, arch)
        if shape not in examples:
            examples[shape] = {b: torch.randn(b, *shape, generator=torch.Generator().manual_seed(seed)) for b in sizes}
        return examples[shape]

    groups = [list(archs)] if rounds > 1 else [[a] for a in archs]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        with tqdm(total=len(archs) * rounds, desc="timing", disable=not progress) as bar:
            for group in groups:
                modules = [_build(space, arch, module_args or {}, seed) for arch in group]
                times = [{(b, c): [] for b in sizes for c in CLOCKS} for _ in group]
                for r, n in enumerate(per_round):
                    for arch, module, spent in zip(group, modules, times):
                        for b, x in inputs(arch).items():
                            wall, cpu = _time(space, arch, module, x, warmup if r == 0 else 1, n)
                            spent[b, "wall"] += wall
                            spent[b, "cpu"] += cpu
                        bar.update()
                out += [_summary(arch, spent) for arch, spent in zip(group, times)]
    finally:
        torch.set_num_threads(previous)
    return out


def _build(space: SearchSpace, arch: Arch, module_args: dict[str, Any], seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's generator
        torch.manual_seed(seed)
        try:
            return space.to_module(arch, **module_args).eval()
        except TypeError as e:
            raise ConfigError(
                f"--module_args {module_args}: not arguments of {type(space).__name__}.to_module ({e})"
            ) from None


def _time(
    space: SearchSpace, arch: Arch, module: torch.nn.Module, x: torch.Tensor, warmup: int, n: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and thread CPU seconds of ``n`` forward passes after ``warmup`` untimed ones."""
    wall, cpu = [], []
    with torch.inference_mode():
        try:
            for _ in range(warmup):  # the first pass allocates, and checks the input shape
                module(x)
        except RuntimeError as e:
            raise ConfigError(
                f"--input_shape {list(x.shape[1:])}: the network of {space.to_string(arch)!r} does not accept "
                f"it ({str(e).splitlines()[0]})"
            ) from None
        for _ in range(n):
            start, start_cpu = time.perf_counter(), time.thread_time()
            module(x)
            wall.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
    return wall, cpu


def _summary(arch: Arch, times: dict[tuple[int, str], list[float]]) -> Measurement:
    stats = {key: _median_and_spread(seconds) for key, seconds in times.items()}

    def pick(clock: str, i: int) -> dict[int, float]:
        return {b: values[i] for (b, c), values in stats.items() if c == clock}

    return Measurement(arch, pick("wall", 0), pick("wall", 1), pick("cpu", 0), pick("cpu", 1))


def _median_and_spread(seconds: list[float]) -> tuple[float, float]:
    """Median milliseconds and relative IQR."""
    ms = np.array(seconds) * 1e3
    median = float(np.median(ms))
    q25, q75 = np.percentile(ms, [25, 75])
    return median, float((q75 - q25) / median) if median > 0 else 0.0


# --- the table ----------------------------------------------------------------------------------


def latency_rows(
    space: SearchSpace, measurements: Sequence[Measurement], batch_size: int | None = None, clock: str = "wall"
) -> list[dict[str, Any]]:
    """One row per architecture: ``arch``, ``latency`` and ``noise`` by ``clock`` at
    ``batch_size`` (default: the first measured), ``batch_size``, ``clock``, the other clock's
    latency (``wall_latency`` or ``cpu_latency``), then ``latency_bs<B>``/``noise_bs<B>`` for the
    other batch sizes. :func:`~nag.hardware.tables.read_device_table` reads ``arch`` and
    ``latency`` and ignores the rest."""
    other = CLOCKS[1 - CLOCKS.index(check_clock(clock))]
    rows = []
    for m in measurements:
        latency, noise = m.by(clock)
        main = next(iter(latency)) if batch_size is None else batch_size
        row: dict[str, Any] = {
            ARCH_COLUMN: space.to_string(m.arch),
            LATENCY_COLUMN: round(latency[main], 4),
            NOISE_COLUMN: round(noise[main], 4),
            "batch_size": main,
            "clock": clock,
            f"{other}_latency": round(m.by(other)[0][main], 4),
        }
        for b in latency:
            if b != main:
                row[f"latency_bs{b}"], row[f"noise_bs{b}"] = round(latency[b], 4), round(noise[b], 4)
        rows.append(row)
    return rows


def check_clock(clock: str, threads: int = 1) -> str:
    """``clock`` if it can time a network here: ``cpu`` needs one thread (the timing thread's CPU
    time is then the whole forward pass) and a fine-grained thread clock."""
    if clock not in CLOCKS:
        raise ConfigError(f"--clock {clock!r}: expected 'wall' (what a user waits) or 'cpu' (this thread's CPU time)")
    if clock == "cpu" and threads != 1:
        raise ConfigError(
            f"--clock cpu --threads {threads}: the timing thread's CPU time is the whole forward pass only with "
            "--threads 1; use --clock wall for more threads"
        )
    resolution = time.get_clock_info("thread_time").resolution
    if clock == "cpu" and resolution > 1e-6:
        raise ConfigError(f"--clock cpu: this system's thread CPU clock ticks every {resolution:g} s; use --clock wall")
    return clock


def check_table_output(path: str | Path) -> Path:
    """A device table is a CSV (what ``--device_table`` reads); refuse other names up front."""
    path = Path(path)
    if path.suffix != ".csv":
        raise ConfigError(f"--output {str(path)!r}: a device table is a .csv file, e.g. --output my_device.csv")
    return path


def write_latency_table(
    space: SearchSpace,
    measurements: Sequence[Measurement],
    path: str | Path,
    batch_size: int | None = None,
    clock: str = "wall",
) -> Path:
    """:func:`latency_rows` written atomically to a ``.csv``."""
    return write_rows(latency_rows(space, measurements, batch_size, clock), check_table_output(path))


# --- which architectures ---------------------------------------------------------------------------


def read_archs(path: str | Path, space: SearchSpace) -> list[Arch]:
    """Distinct architectures (first occurrence, file order) of a text file with one
    architecture string per line (blank lines and lines starting with ``#`` skipped), or of a
    CSV with an ``arch`` column such as ``nag generate``'s output (its empty ``arch`` cells,
    invalid samples, are skipped)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataFileError(
            f"--archs {str(file)!r}: no such file; pass a text file with one architecture per line or a CSV "
            f"with an '{ARCH_COLUMN}' column (e.g. the output of nag generate)"
        )
    try:
        with file.open(newline="", encoding="utf-8") as f:
            if file.suffix == ".csv":
                reader = csv.DictReader(f)
                header = [(h or "").strip() for h in reader.fieldnames or []]
                if ARCH_COLUMN not in header:
                    raise DataFileError(
                        f"{file}: line 1: no '{ARCH_COLUMN}' column (found {header}); a CSV of architectures "
                        f"needs one, as nag generate writes"
                    )
                reader.fieldnames = header
                texts = [(line, (row.get(ARCH_COLUMN) or "").strip()) for line, row in enumerate(reader, start=2)]
            else:
                texts = [(line, text.strip()) for line, text in enumerate(f, start=1)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFileError(f"{file}: not readable text ({type(e).__name__}); save it as UTF-8") from None
    found: dict[str, Arch] = {}
    for line, text in texts:
        if not text or text.startswith("#"):
            continue
        try:
            arch = space.from_string(text)
        except InvalidArchitecture as e:
            example = space.to_string(space.sample(1, np.random.default_rng(0))[0])
            raise DataFileError(
                f"{file}: line {line}: {text!r} does not parse ({' '.join(str(e).split())}); write it in the "
                f"space's string form, e.g. {example!r}"
            ) from None
        found.setdefault(space.to_string(arch), arch)
    if not found:
        raise DataFileError(f"{file}: no architectures in it; write one architecture string per line")
    return list(found.values())


def random_archs(space: SearchSpace, k: int, seed: int = 0) -> list[Arch]:
    """``k`` distinct architectures drawn with the space's sampler (seeded)."""
    if k < 1:
        raise ConfigError(f"--num_random {k}: measure at least one architecture (10 or more for a device table)")
    rng = np.random.default_rng(seed)
    found: dict[str, Arch] = {}
    for _ in range(100):
        for arch in space.sample(k, rng):
            found.setdefault(space.to_string(arch), arch)
        if len(found) >= k:
            return list(found.values())[:k]
    raise ConfigError(f"--num_random {k}: the space gave only {len(found)} distinct architectures; ask for fewer")


# --- `nag measure-latency` ---------------------------------------------------------------------


def measure_device_table(
    space: str = "nb201",
    archs: str | None = None,
    num_random: int | None = None,
    seed: int = 0,
    batch_size: int = 1,
    input_shape: list[int] | None = None,
    module_args: dict[str, Any] | None = None,
    warmup: int = 5,
    repeats: int = 20,
    rounds: int = 1,
    threads: int = 1,
    clock: str = "wall",
    output: str = "my_device.csv",
    quiet: bool = False,
) -> Path:
    """Time architectures on this CPU and write the ``arch,latency`` table ``nag generate
    --device_table`` takes (latency: median milliseconds of one forward pass of a batch).

    Args:
        space: short space name (``nb201``, ...) or a ``SearchSpace`` class path; it must build networks.
        archs: a text file with one architecture string per line, or a CSV with an ``arch`` column
            (e.g. ``nag generate``'s output); duplicates are timed once.
        num_random: instead of ``archs``, this many distinct random architectures (``seed``).
        seed: seeds the random architectures, the weights and the input.
        batch_size: the batch size of the ``latency`` column; batch 1 is timed too (``latency_bs1``).
        input_shape: one input without the batch dimension (default: the space's, NB201 ``[3,32,32]``).
        module_args: keyword arguments of the space's ``to_module``, e.g. ``'{"num_classes": 100}'``.
        warmup: untimed forward passes before the timed ones (at least one: the first allocates).
        repeats: timed forward passes; the median is the latency, their relative IQR the ``noise`` column.
        rounds: split the repeats into this many passes over all the architectures (kept in memory), so a
            busy machine's load changes hit all alike.
        threads: torch threads while timing (restored afterwards).
        clock: what the ``latency`` column is: ``wall`` (what a user waits) or ``cpu`` (the timing thread's
            CPU time: on a machine shared with other jobs, not inflated by the time they hold the core;
            needs ``--threads 1``). The other clock's value is kept as ``wall_latency``/``cpu_latency``.
        output: the ``.csv`` to write.
        quiet: print nothing.
    """
    check_table_output(output)
    check_clock(clock, threads)
    search_space = resolve_space(space)
    check_builds_networks(search_space)
    if (archs is None) == (num_random is None):
        raise ConfigError("pass either --archs FILE (architectures to time) or --num_random K (K random ones)")
    chosen = read_archs(archs, search_space) if archs is not None else random_archs(search_space, num_random, seed)
    measurements = measure_latency(
        search_space,
        chosen,
        batch_sizes=(batch_size, 1),
        input_shape=input_shape,
        warmup=warmup,
        repeats=repeats,
        rounds=rounds,
        threads=threads,
        module_args=module_args,
        seed=seed,
        progress=not quiet,
    )
    path = write_latency_table(search_space, measurements, output, batch_size, clock)
    if not quiet:
        values = np.array([m.by(clock)[0][batch_size] for m in measurements])
        noise = np.array([m.by(clock)[1][batch_size] for m in measurements])
        print(
            f"wrote {len(measurements)} rows to {path}: batch {batch_size}, {clock} clock, latency median "
            f"{np.median(values):.3g} ms (range {values.min():.3g}..{values.max():.3g}), noise (relative IQR of "
            f"{repeats} repeats) median {np.median(noise):.2%}, max {noise.max():.2%}; {threads} torch thread(s)"
        )
    return path
