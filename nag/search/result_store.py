"""Finished trainings on disk, so a killed or repeated search never trains a candidate twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nag.io.atomic import write_text_atomically


def record_key(identity: Mapping[str, Any]) -> str:
    """The store's name for one training: a hash of everything that decides its result
    (architecture key, task, recipe, seed), so a changed recipe never reads a stale value."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class ResultStore:
    """One JSON file per finished training under ``root`` (``<2 hex>/<key>.json``).

    Each file is written atomically (:func:`nag.io.atomic.write_text_atomically`) when its
    training returns, so a search killed at any moment keeps every training that finished and
    never reads a half-written one; separate files let several searches share a store.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        write_text_atomically(self._path(key), json.dumps(dict(record), sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"
