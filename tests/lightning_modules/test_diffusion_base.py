"""The sampling loop's CPU allocator tuning: once per process, opt-out by environment."""

import sys

import pytest

import nag.lightning_modules.diffusion_base as base


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setattr(base, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("NAG_MALLOC_TUNING", "0")
    assert base.tune_cpu_allocator() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuning_takes_and_is_remembered(monkeypatch):
    monkeypatch.delenv("NAG_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(base, "_ALLOCATOR_TUNED", False)
    tuned = base.tune_cpu_allocator()
    assert tuned is base._ALLOCATOR_TUNED
    if tuned:  # glibc: a second call does nothing and says so
        monkeypatch.setenv("NAG_MALLOC_TUNING", "0")
        assert base.tune_cpu_allocator() is True
