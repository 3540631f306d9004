"""Shared fixtures: the real benchmark tables beside the checkout (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need the real tables skip with a reason without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark tables not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models: with 2 intra-op threads on a busy 2-core box each op waits on the other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
