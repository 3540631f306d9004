"""Condition encoder: independent per-condition dropout, own null tokens, one encoding for training and sampling."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nag.benchmarks import NBGraphBenchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import ConfigError
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.nn.conditions import ConditionEncoder, empirical_cdf

pytestmark = pytest.mark.usefixtures("single_thread")


def test_each_condition_is_dropped_with_probability_p_independently():
    enc = ConditionEncoder(["a", "b", "c"], dim=8, drop_prob=0.1)
    keep = enc.sample_keep(200_000, generator=torch.Generator().manual_seed(0))
    dropped = (~keep).float()
    assert torch.allclose(dropped.mean(0), torch.full((3,), 0.1), atol=0.003)
    both = (dropped[:, 0] * dropped[:, 1]).mean()
    assert abs(float(both) - 0.01) < 0.002, "pairs are dropped together at rate p^2 (independent)"
    assert abs(float(dropped.prod(1).mean()) - 0.001) < 0.0005


def test_dropped_conditions_use_their_own_null_token_and_ignore_the_value():
    enc = ConditionEncoder(["a", "b"], dim=8, binned=["b"], bins=4)
    enc.fit(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)))
    values = torch.tensor([[0.3, float("nan")], [-1.0, 2.0]])
    only_a = enc(values, torch.tensor([[True, False], [True, False]]))
    assert torch.isfinite(only_a).all()
    assert torch.allclose(
        only_a[0] - enc.embed[0](values[:1, 0], empirical_cdf(values[:1, 0], enc.cdf_knots[0]))[0],
        enc.null[1],
        atol=1e-6,
    )
    nothing = enc(values, torch.zeros(2, 2, dtype=torch.bool))
    assert torch.allclose(nothing, (enc.null[0] + enc.null[1]).expand(2, -1))
    assert not torch.allclose(enc.null[0], enc.null[1])


def test_binned_conditions_use_equally_filled_quantile_bins():
    enc = ConditionEncoder(["x"], dim=4, binned=["x"], bins=5)
    values = torch.randn(10_000, 1, generator=torch.Generator().manual_seed(1)) ** 3  # skewed
    enc.fit(values)
    counts = torch.bincount(torch.bucketize(values[:, 0].contiguous(), enc.bin_edges[0]), minlength=5)
    assert torch.all((counts - 2000).abs() <= 2)
    u = empirical_cdf(values[:, 0], enc.cdf_knots[0])
    assert abs(float(u.mean()) - 0.5) < 0.01 and float(u.min()) >= 0.0 and float(u.max()) <= 1.0


def test_bad_condition_settings_fail_in_one_line():
    with pytest.raises(ConfigError, match="binned conditions"):
        ConditionEncoder(["a"], dim=4, binned=["b"])
    with pytest.raises(ConfigError, match="drop probability"):
        ConditionEncoder(["a"], dim=4, drop_prob=1.5)


def test_conditions_are_encoded_identically_in_training_and_sampling(tmp_path, monkeypatch):
    """A training batch's (normalised) targets and the same architecture's raw benchmark
    values passed to sample_graphs reach the encoder as the same numbers and give the same
    embedding."""
    pl.seed_everything(0)
    bench = NBGraphBenchmark("cora")
    dm = ArchitectureDataModule(
        bench, targets=["valid_acc", "latency", "params"], split=(0.2, 0.05, 0.75), batch_size=64
    )
    model = DiscreteDiffusionModule(
        dm.spec(),
        conditions=["latency", "valid_acc"],
        binned=["valid_acc"],
        bins=6,
        T=20,
        dim=16,
        edge_dim=4,
        layers=1,
        heads=2,
        lr=0.0,
    )  # weights stay put
    seen: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    original = ConditionEncoder.forward

    def spy(self, values, keep):
        out = original(self, values, keep)
        seen.append((phase, values.clone(), keep.clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(ConditionEncoder, "forward", spy)
    phase = "train"
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    _, values, keep, emb = next(s for s in seen if s[0] == "train")
    # rebuild the raw values of a training row whose conditions were all kept
    row = int(torch.nonzero(keep.all(1))[0])
    train_archs = dm.archs("train")
    y_norm = dm.datasets["train"].y
    match = int(np.flatnonzero((y_norm[:, [1, 0]] == values[row]).all(1).numpy())[0])
    arch = train_archs[match]
    raw = {"latency": bench.query(arch, "latency"), "valid_acc": bench.query(arch, "valid_acc")}
    phase = "sample"
    model.eval()
    model.sample_graphs(3, steps=1, conditions=raw, mode="joint", guidance_scale=1.0)
    _, s_values, s_keep, s_emb = next(s for s in seen if s[0] == "sample")
    assert torch.equal(s_keep, torch.ones_like(s_keep)), "scale 1 in joint mode runs only the conditional pass"
    assert torch.equal(s_values[0], values[row]), "same normalised numbers reach the encoder"
    assert torch.allclose(s_emb[0], emb[row], atol=1e-6), "same embedding (EMA copy == weights at lr 0)"
    assert torch.equal(model.ema.module.conditions.cdf_knots, model.net.conditions.cdf_knots)
    assert torch.equal(model.ema.module.conditions.bin_edges, model.net.conditions.bin_edges)


def test_uncond_prob_drops_every_condition_of_an_example_at_once():
    encoder = ConditionEncoder(["a", "b", "c"], dim=8, drop_prob=0.0, uncond_prob=0.3)
    keep = encoder.sample_keep(20_000, generator=torch.Generator().manual_seed(0))
    rows = keep.all(1) | (~keep).all(1)
    assert rows.all(), "an example keeps all its conditions or none"
    assert abs((~keep[:, 0]).float().mean().item() - 0.3) < 0.02
    plain = ConditionEncoder(["a", "b", "c"], dim=8, drop_prob=0.1)
    u = torch.rand(50, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain.sample_keep(50, generator=torch.Generator().manual_seed(1)), u >= 0.1)
