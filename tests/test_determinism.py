"""Same seed and config, same bytes: `nag fit` + `nag generate` end to end, and `nag search`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nag.cli import main
from nag.io.checkpoints import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
SCORE = str(ROOT / "configs" / "nb201" / "diffusion.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def tiny(nb201_table, tmp_path_factory) -> str:
    """A tiny generator over the made-up table (no shared data needed)."""
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(
        f"data:\n  init_args:\n    benchmark:\n      init_args:\n        path: {nb201_table}\n"
        "    split: [0.6, 0.2, 0.2]\n    batch_size: 8\n"
        "model:\n  init_args:\n    dim: 16\n    layers: 1\n    heads: 2\n    warmup_steps: 2\n"
    )
    return str(path)


def fit_and_generate(tiny: str, root: Path, seed: int = 0) -> tuple[dict, bytes]:
    main(
        [
            "fit",
            "--config",
            SCORE,
            "--config",
            tiny,
            f"--seed_everything={seed}",
            "--trainer.max_steps=4",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={root}",
            *QUIET,
        ]
    )
    ckpt = next(root.rglob("last.ckpt"))
    out = root / "generated.csv"
    main(
        [
            "generate",
            "--config",
            SCORE,
            "--config",
            tiny,
            "--ckpt_path",
            str(ckpt),
            "--num_samples=16",
            "--steps=4",
            "--seed=0",
            f"--output={out}",
            *QUIET,
        ]
    )
    return load_checkpoint(ckpt)["state_dict"], out.read_bytes()


def test_fit_then_generate_twice_gives_identical_weights_and_csv(tiny, tmp_path):
    weights_a, csv_a = fit_and_generate(tiny, tmp_path / "a")
    weights_b, csv_b = fit_and_generate(tiny, tmp_path / "b")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert csv_a == csv_b and csv_a.count(b"\n") == 17
    weights_c, _ = fit_and_generate(tiny, tmp_path / "c", seed=1)
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a), "the seed must matter"


def test_search_twice_gives_identical_json(tmp_path):
    def search(name: str, seeds: str) -> bytes:
        out = tmp_path / name
        main(
            [
                "search",
                "--config",
                str(ROOT / "configs" / "nbgraph" / "search_rea.yaml"),
                "--budget=15",
                f"--seeds={seeds}",
                f"--output={out}",
                "--quiet",
            ]
        )
        return out.read_bytes()

    first = search("a.json", "[0,1]")
    assert first == search("b.json", "[0,1]")
    assert first != search("c.json", "[2,3]"), "the seeds must matter"
