"""One way to write a file that is either complete or absent, whenever the job dies."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Read once: ``os.umask`` can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, fsync: bool = True, **open_kwargs: Any) -> Iterator[IO]:
    """A file object on a temporary file beside ``path``; when the block ends without an
    exception it is flushed, fsynced (``fsync``) and renamed over ``path`` with ``os.replace``,
    which is atomic within one folder. On an exception (or a kill) ``path`` is left as it was
    and the temporary file is removed (or, after a kill, left as a hidden ``.<name>.*.tmp``).

    ``mode`` is ``"w"`` or ``"wb"``; ``open_kwargs`` go to :func:`open` (``newline=""`` for
    CSV, ``encoding``). The parent folder is created; the file gets the permissions a plain
    ``open`` would give it (``mkstemp``'s 0600 would make it private).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode {mode!r}; expected 'w' or 'wb'")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` through :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)
