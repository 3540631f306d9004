import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(single_thread):
    """Every diffusion test runs single-threaded (see ``single_thread`` in tests/conftest.py)."""
    yield
