"""Fit once, reuse after: ``nag fit`` on a YAML, cached by a digest of what determines it.

Every script and pipeline that needs a trained model and has none given calls
:func:`fit_cached`. It runs the real ``nag fit`` (``python -m nag fit``, so NagCLI's atomic
checkpoints, RNG state, the YAML's callbacks and the datamodule-to-model link all apply) in a
subprocess -- the io layer never imports the CLI, which imports everything else -- under
``run_dir/fit-<digest>``. Only a fit that finished writes ``run_dir/done-<digest>.json``; a
later call with the same digest returns its checkpoint without fitting, and a call after an
interrupted fit resumes it from its ``last.ckpt`` (``--ckpt_path last``), as ``nag fit`` would.

The digest covers the config file's text, the overrides (as text) and ``extra``: files that an
override names are not read, so what they hold must come in through ``extra`` (the settings a
data table was made with, say) when it can change under the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nag.errors import ConfigError, NagError
from nag.io.atomic import write_text_atomically


class FitFailed(NagError):
    """``nag fit`` exited with an error; the message is its last line of output."""


def fit_digest(config: str | Path, overrides: Sequence[str] = (), extra: Any = None) -> str:
    """12 hex digits of the config text, the overrides and ``extra`` (JSON, keys sorted)."""
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r}: no such YAML; give a `nag fit` config")
    h = hashlib.sha1(path.read_bytes())
    h.update(b"\0".join(str(o).encode() for o in overrides))
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def fit_record(
    config: str | Path, run_dir: str | Path, overrides: Sequence[str] = (), *, extra: Any = None
) -> dict[str, Any] | None:
    """The record of the finished fit :func:`fit_cached` would reuse, or None: ``checkpoint``
    (a :class:`~pathlib.Path`), ``seconds`` (wall time of the fit that made it), ``digest``,
    ``config`` and ``overrides``."""
    digest = fit_digest(config, overrides, extra)
    done = Path(run_dir) / f"done-{digest}.json"
    if not done.is_file():
        return None
    record = json.loads(done.read_text())
    record["checkpoint"] = Path(run_dir) / record["checkpoint"]
    return record if record["checkpoint"].is_file() else None


def fit_cached(
    config: str | Path,
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    extra: Any = None,
    quiet: bool = True,
    refit: bool = False,
) -> Path:
    """The ``last.ckpt`` of ``nag fit --config config *overrides``, fitted now unless a finished
    fit with the same digest is recorded in ``run_dir``.

    Args:
        config: the ``nag fit`` YAML.
        run_dir: where fits and their records go (one folder per digest inside).
        overrides: further ``nag fit`` arguments, e.g. ``["--trainer.max_epochs=5"]``; they come
            after the defaults here (``--test_after_fit=false``, ``--generate_after_fit=0``).
        extra: anything else the fit depends on (JSON-serialisable), folded into the digest.
        quiet: no progress bar, and the fit's output is not shown (its last line still is, in
            the error, when it fails).
        refit: fit afresh even when a finished or interrupted fit of this digest exists.

    Raises:
        FitFailed: the fit exited with an error (one line: the last line it wrote).
    """
    found = fit_record(config, run_dir, overrides, extra=extra)
    if found is not None and not refit:
        return found["checkpoint"]
    digest = fit_digest(config, overrides, extra)
    run_dir = Path(run_dir)
    root = run_dir / f"fit-{digest}"
    if refit:
        (run_dir / f"done-{digest}.json").unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "nag",
        "fit",
        "--config",
        str(config),
        f"--trainer.default_root_dir={root}",
        "--ckpt_path=last",
        "--test_after_fit=false",
        "--generate_after_fit=0",
        *(["--trainer.enable_progress_bar=false"] if quiet else []),
        *overrides,
    ]
    start = time.perf_counter()
    _run(command, quiet, f"nag fit --config {config}")
    seconds = time.perf_counter() - start
    written = [p for p in root.rglob("last*.ckpt") if p.is_file()]
    if not written:
        raise FitFailed(f"nag fit --config {config} wrote no last.ckpt under {root}; keep checkpointing on")
    checkpoint = max(written, key=lambda p: p.stat().st_mtime)
    record = {
        "checkpoint": str(checkpoint.relative_to(run_dir)),
        "seconds": seconds,
        "digest": digest,
        "config": str(config),
        "overrides": list(overrides),
    }
    write_text_atomically(run_dir / f"done-{digest}.json", json.dumps(record, indent=1, default=str))
    return checkpoint


def _run(command: list[str], quiet: bool, what: str) -> None:
    """``command`` with this interpreter's import path; its stderr is shown unless ``quiet``
    and its last line becomes the error when it fails."""
    path = [p for p in dict.fromkeys(sys.path) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    tail: deque[str] = deque(maxlen=1)
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    ) as process:
        for line in process.stderr:
            if not quiet:
                sys.stderr.write(line)
            if line.strip():
                tail.append(line.strip())
    if process.returncode != 0:
        last = tail[0].removeprefix("error: ") if tail else "no output"
        raise FitFailed(f"{what} failed (exit {process.returncode}): {last}")
