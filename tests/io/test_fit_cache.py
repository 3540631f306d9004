"""Fit-and-cache: ``nag fit`` runs once per digest of config text, overrides and extra; a failed
fit is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nag.errors import ConfigError
from nag.io.checkpoints import load_checkpoint
from nag.io.fit_cache import FitFailed, fit_cached, fit_digest, fit_record

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "quickstart_predictor.yaml"
TINY = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.logger=false"]


def test_digest_follows_the_config_text_the_overrides_and_extra(tmp_path):
    config = tmp_path / "a.yaml"
    config.write_text(CONFIG.read_text())
    base = fit_digest(config, TINY)
    assert fit_digest(config, TINY) == base and len(base) == 12
    assert fit_digest(config, [*TINY, "--seed_everything=1"]) != base
    assert fit_digest(config, TINY, extra={"table": 1}) != base
    config.write_text(CONFIG.read_text() + "\n# another comment\n")
    assert fit_digest(config, TINY) != base
    with pytest.raises(ConfigError, match="no such YAML"):
        fit_digest(tmp_path / "missing.yaml")


def test_a_finished_fit_is_reused_and_recorded(tmp_path):
    assert fit_record(CONFIG, tmp_path, TINY) is None
    ckpt = fit_cached(CONFIG, tmp_path, TINY)
    assert ckpt.name == "last.ckpt" and load_checkpoint(ckpt)["global_step"] == 2
    assert "RNGStateCheckpoint" in load_checkpoint(ckpt)["callbacks"], "NagTrainer's callbacks came along"
    record = fit_record(CONFIG, tmp_path, TINY)
    assert record["checkpoint"] == ckpt and record["seconds"] > 0 and record["overrides"] == TINY
    assert json.loads((tmp_path / f"done-{record['digest']}.json").read_text())["digest"] == record["digest"]
    mtime = ckpt.stat().st_mtime_ns
    assert fit_cached(CONFIG, tmp_path, TINY) == ckpt and ckpt.stat().st_mtime_ns == mtime, "not fitted again"


def test_a_failed_fit_raises_its_last_line(tmp_path):
    with pytest.raises(FitFailed, match=r"^nag fit --config .* failed \(exit 2\): .*max_epochs") as info:
        fit_cached(CONFIG, tmp_path, ["--trainer.max_epochs=many"])
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("done-*.json")), "a failed fit is not recorded"
