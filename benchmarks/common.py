"""What every benchmark script shares: where the repository is, how a model gets fitted, and how
a result is written.

A result is ``<stem>.json``, ``<stem>.md`` and, where there is a figure, ``<stem>.png``, each
written atomically (:mod:`nag.io.atomic`), so a run killed while writing leaves the previous
result whole. The Markdown starts with the command that produced it, as an HTML comment, so
every file in ``benchmarks/results`` says how to make it again. Fits go through
:func:`nag.io.fit_cache.fit_cached`: a finished fit of the same config and arguments is reused.

Scripts import this as ``common`` (``benchmarks/`` is on ``sys.path`` when a script runs;
``benchmarks/`` is not a package).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.functional import spearman_corrcoef

from nag.io.atomic import atomic_write, write_text_atomically
from nag.io.fit_cache import fit_cached, fit_record

#: The repository: configs, runs and the shared data beside it are found from here.
ROOT = Path(__file__).resolve().parents[1]
#: Where results are written unless ``--out`` says otherwise.
RESULTS = ROOT / "benchmarks" / "results"


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran ``script`` (its ``__file__``) with ``argv`` (default
    ``sys.argv[1:]``), as a shell would take it back."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


def fit(
    config: str | Path,
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    extra: Any = None,
    quiet: bool = True,
    refit: bool = False,
) -> tuple[Path, float]:
    """The last checkpoint of ``nag fit`` (:func:`~nag.io.fit_cache.fit_cached`, same arguments)
    and the seconds that fit took when it was made."""
    checkpoint = fit_cached(config, run_dir, overrides, extra=extra, quiet=quiet, refit=refit)
    return checkpoint, fit_record(config, run_dir, overrides, extra=extra)["seconds"]


def generation_checkpoint(space: str, kind: str) -> Path | None:
    """The newest fit ``benchmarks/generation.py`` made of ``space``'s shipped ``kind``
    (``score`` or ``discrete``) config, which other benchmarks reuse; None before it ran."""
    found = sorted(
        (ROOT / "runs" / "benchmarks" / "generation" / space / kind).rglob("last.ckpt"), key=lambda p: p.stat().st_mtime
    )
    return found[-1] if found else None


def _plain(value: Any) -> Any:
    """JSON for what ``json`` does not know: numpy and torch scalars as numbers, the rest as text."""
    return value.item() if hasattr(value, "item") else str(value)


def write_json(path: str | Path, value: Any, allow_nan: bool = True) -> Path:
    """``value`` as indented JSON, atomically (``allow_nan=False``: refuse NaN and infinity,
    which strict JSON readers reject)."""
    return write_text_atomically(path, json.dumps(value, indent=1, default=_plain, allow_nan=allow_nan))


def write_markdown(path: str | Path, command_line: str, text: str) -> Path:
    """``text`` headed by ``<!-- command_line -->``, atomically."""
    return write_text_atomically(path, f"<!-- {command_line} -->\n{text.rstrip()}\n")


def figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes (``squeeze`` as in ``pyplot.subplots``), without pyplot's global
    state, so nothing needs closing and no display backend is involved."""
    fig = Figure(figsize=kwargs.pop("figsize", None), layout=kwargs.pop("layout", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """``fig`` as a PNG, atomically."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)


def write_report(
    stem: str | Path, command_line: str, report: Any, markdown: str, fig: Figure | None = None, dpi: int = 120
) -> Path:
    """``stem.json``, ``stem.md`` (headed by ``command_line``) and, with ``fig``, ``stem.png``;
    returns the Markdown's path."""
    stem = Path(stem)
    write_json(stem.with_suffix(".json"), report)
    if fig is not None:
        save_figure(fig, stem.with_suffix(".png"), dpi)
    return write_markdown(stem.with_suffix(".md"), command_line, markdown)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: ``header``, the rule, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def distinct_samples(space: Any, n: int, seed: int) -> list:
    """``n`` seeded samples of ``space``, one per canonical key, so no two measure the same function."""
    rng, archs, keys = np.random.default_rng(seed), [], set()
    while len(archs) < n:
        for arch in space.sample(n, rng):
            if len(archs) < n and space.key(arch) not in keys:
                keys.add(space.key(arch))
                archs.append(arch)
    return archs


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two measurements of the same items."""
    pair = torch.tensor(np.array([a, b], dtype=np.float64))
    return float(spearman_corrcoef(pair[0], pair[1]))
