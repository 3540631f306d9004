"""The typed generation request: every field's bad value is refused in one line naming it, by
``nag generate`` (exit 2, before any model or data is loaded) and when built in Python."""

from pathlib import Path

import pytest

from nag.cli import main
from nag.errors import ConfigError
from nag.generation import Conditioning, DeviceBudget, GenerationRequest, PredictorGuidance, Sampling

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "nbgraph" / "diffusion.yaml")

#: flag=value -> what the one error line must contain (the flag's name).
BAD = {
    "--num_samples=0": "--num_samples=0",
    "--num_samples=many": "num_samples",
    "--seed=abc": "seed",
    "--sampler=euler": "sampler",
    "--steps=0": "--steps=0",
    "--pc_snr=0": "--pc_snr=0",
    "--pc_snr=nan": "pc_snr",
    "--spacing=log": "spacing",
    "--batch_size=0": "--batch_size=0",
    "--compile=maybe": "compile",
    '--conditions={"valid_acc": []}': "--conditions['valid_acc']",
    "--guidance_scale=2": "--guidance_scale=2.0: it applies with --conditions",
    '--conditions={"valid_acc": 0.8} --guidance_scale=-1': "--guidance_scale=-1",
    "--mode=both": "mode",
    "--extrapolate=maybe": "extrapolate",
    "--regressor_scale=5": "--regressor_scale=5.0: it applies with --conditions",
    '--conditions={"valid_acc": 0.8} --regressor_scale=-1': "--regressor_scale=-1",
    '--guide=["fastest"]': "--guide",
    "--guide_scale=-1": "--guide_scale=-1",
    "--guide_normalize=maybe": "guide_normalize",
    "--predictor_ckpt=/no/such.ckpt": "--predictor_ckpt",
    "--device_table=/no/such.csv": "--device_table",
    "--select=0": "--select=0",
    "--feasible_prob=1.5": "--feasible_prob=1.5",
    "--latency_guidance=-1": "latency_guidance=-1",
    "--output=out.txt": "--output",
}


@pytest.fixture
def device_csv(tmp_path: Path) -> Path:
    path = tmp_path / "device.csv"
    path.write_text("arch,latency\n")
    return path


@pytest.mark.parametrize("flag", list(BAD))
def test_each_bad_value_is_refused_in_one_line_before_loading(flag, device_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    device = [] if flag.startswith("--device_table") else [f"--device_table={device_csv}"]
    budget = (
        ["--budget=latency<=1"] if any(k in flag for k in ("device_table", "select", "feasible", "latency_g")) else []
    )
    args = ["generate", "--config", CONFIG, "--ckpt_path=/no/such/last.ckpt", *(device if budget else []), *budget]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *flag.split(" --", 1)[:1], *[f"--{f}" for f in flag.split(" --")[1:]]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: ") and BAD[flag] in err, err
    assert "/no/such/last.ckpt" not in err, "the request is checked before the checkpoint is opened"


def test_a_budget_without_a_table_and_a_guide_without_a_predictor_are_refused(capsys):
    for extra, fragment in [
        (["--budget=latency<=1"], "--device_table and --budget go together"),
        (['--guide=["max valid_acc"]'], "--guide needs --predictor_ckpt"),
    ]:
        with pytest.raises(SystemExit):
            main(["generate", "--config", CONFIG, "--ckpt_path=/no/such/last.ckpt", *extra])
        assert fragment in capsys.readouterr().err


def test_python_requests_are_checked_where_they_are_built(device_csv):
    with pytest.raises(ConfigError, match="--num_samples=0"):
        Sampling(num_samples=0)
    with pytest.raises(ConfigError, match="--pc_snr=nan"):
        Sampling(pc_snr=float("nan"))
    with pytest.raises(ConfigError, match="joint mode takes one number"):
        Conditioning({"a": 1.0}, {"a": 2.0}, mode="joint")
    with pytest.raises(ConfigError, match=r"names \['b'\]"):
        Conditioning({"a": 1.0}, {"b": 2.0})
    with pytest.raises(ConfigError, match="--guide_scale=nan"):
        PredictorGuidance(["max acc"], guide_scale=float("nan"))
    with pytest.raises(ConfigError, match="--budget"):
        DeviceBudget(device_csv, "fast")
    request = GenerationRequest(device=DeviceBudget(device_csv, "latency<=2", select=7))
    assert request.num_samples == 140, "the device path draws at most 20 x select unless told"
    assert GenerationRequest().num_samples == 1000
