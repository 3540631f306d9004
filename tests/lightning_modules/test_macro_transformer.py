"""Macro transformer: fits, samples deterministically by seed, always parses, learns its data."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nag.cli import main
from nag.datamodules.macro import MacroDataModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.spaces.macro import MacroConstraints, MacroSpace
from nag.spaces.macro_tokens import MacroTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "hierarchical" / "macro_transformer.yaml"


@pytest.fixture(scope="module")
def dm(tmp_path_factory, shared_data: Path) -> MacroDataModule:
    space = MacroSpace(num_cells=6, stem_channels=(4,), channels=(4, 8), repeats=(1, 2), max_stages=2)
    tokenizer = MacroTokenizer(
        space,
        num_classes=(2, 3),
        input_sizes=(8,),
        in_channels=1,
        params_range=(1e2, 1e5),
        flops_range=(1e4, 1e8),
        num_bins=8,
    )
    data = MacroDataModule(
        tokenizer,
        str(tmp_path_factory.mktemp("macro") / "data.json"),
        images=str(shared_data / "images" / "digits.csv.gz"),
        proxy_batch_size=4,
        num_settings=8,
        population_size=3,
        sample_size=2,
        cycles=3,
        top_k=2,
        split=(0.5, 0.25, 0.25),
        batch_size=4,
    )
    data.setup()
    return data


def model_for(dm: MacroDataModule, **kwargs) -> MacroTransformerModule:
    pl.seed_everything(0)
    return MacroTransformerModule(dm.spec(), d_model=32, nhead=2, num_layers=2, dim_feedforward=64, **kwargs)


def trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_fast_dev_run_fits_and_logs_constraint_shares(dm: MacroDataModule, tmp_path: Path) -> None:
    model = model_for(dm)
    t = trainer(tmp_path, fast_dev_run=True)
    t.fit(model, dm)
    assert {"val/loss", "val/constraint_share", "val/random_share"} <= set(t.callback_metrics)
    assert 0 <= float(t.callback_metrics["val/constraint_share"]) <= 1


def test_seeded_sampling_is_deterministic_and_always_parses(dm: MacroDataModule, tmp_path: Path) -> None:
    model = model_for(dm)
    c = dm.constraints("val")[0]
    first = model.sample(c, num_samples=16, temperature=1.0, seed=3)
    assert first == model.sample(c, num_samples=16, temperature=1.0, seed=3)
    assert first != model.sample(c, num_samples=16, temperature=1.0, seed=4)
    for temperature in (0.0, 1.0, 5.0):
        for arch in model.sample(c, num_samples=32, temperature=temperature, seed=0):
            dm.space.validate(arch)
    path = tmp_path / "m.ckpt"
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, dm)
    t = trainer(tmp_path)
    t.strategy.connect(model)
    t.save_checkpoint(path)
    loaded = MacroTransformerModule.load_from_checkpoint(path)
    assert loaded.sample(c, 8, seed=1) == model.sample(c, 8, seed=1)


def test_grammar_forbidden_tokens_get_no_probability(dm: MacroDataModule) -> None:
    model = model_for(dm).eval()
    tokens = next(iter(dm.val_dataloader()))["tokens"]
    with torch.no_grad():
        logits = model(tokens[:, :-1])
    allowed = dm.tokenizer.grammar_mask()[1:]
    assert torch.isneginf(logits[:, ~allowed]).all() and torch.isfinite(logits[:, allowed]).all()


def test_training_learns_the_conditional_data(dm: MacroDataModule, tmp_path: Path) -> None:
    """Greedy decoding for a training setting reproduces one of that setting's architectures."""
    model = model_for(dm, lr=3e-3, dropout=0.0)
    trainer(tmp_path, max_steps=80, max_epochs=-1, limit_val_batches=0).fit(model, dm)
    rows = [dm.records[i] for i in dm.split_indices["train"]]
    by_setting: dict[MacroConstraints, set[str]] = {}
    for r in rows:
        c = MacroConstraints(*(r[f] for f in MacroConstraints._fields))
        by_setting.setdefault(c, set()).add(dm.space.key(dm.space.from_string(r["arch"])))
    hits = [dm.space.key(model.sample(c, 1, temperature=0.0)[0]) in keys for c, keys in by_setting.items()]
    assert sum(hits) >= len(hits) - 1


def test_config_runs_under_fast_dev_run(tmp_path: Path, shared_data: Path) -> None:
    main(
        [
            "fit",
            "--config",
            str(CONFIG),
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            f"--data.init_args.path={tmp_path / 'data.json'}",
            f"--data.init_args.images={shared_data / 'images' / 'digits.csv.gz'}",
            "--data.init_args.num_settings=3",
            "--data.init_args.population_size=1",
            "--data.init_args.cycles=0",
            "--data.init_args.top_k=1",
            "--data.init_args.split=[0.34, 0.33, 0.33]",
        ]
    )
    assert (tmp_path / "data.json").is_file()
