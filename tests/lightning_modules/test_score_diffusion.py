from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import nag.lightning_modules.score_diffusion as score_diffusion
from nag.datamodules import ArchitectureDataModule
from nag.diffusion.graph_state import clean_state
from nag.errors import InvalidArchitecture
from nag.generation import decode_samples
from nag.lightning_modules.score_diffusion import ScoreDiffusionModule
from nag.spaces import CellSpace, MBV3Space, NB101Space, NB201Space, NBGraphSpace


def quiet_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def nb201(seed: int = 0) -> tuple[ArchitectureDataModule, ScoreDiffusionModule]:
    pl.seed_everything(seed)
    dm = ArchitectureDataModule(space=NB201Space(), split=(0.2, 0.05, 0.75), batch_size=128)
    return dm, ScoreDiffusionModule(dm.spec(), dim=32, layers=2, heads=2, warmup_steps=5, ema_decay=0.99)


def test_score_matching_loss_decreases(tmp_path):
    dm, model = nb201()
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    gen = torch.Generator().manual_seed(0)
    before = model.loss(batch, model.net, gen)[0].item()
    quiet_trainer(tmp_path, max_epochs=3).fit(model, dm)
    after = model.loss(batch, model.net, torch.Generator().manual_seed(0))[0].item()
    assert after < 0.6 * before


def test_sampler_returns_requested_count_and_is_seeded():
    _, model = nb201()
    model.eval()
    a = model.sample_graphs(7, sampler="ode", steps=4, seed=3, batch_size=4)
    b = model.sample_graphs(7, sampler="ode", steps=4, seed=3, batch_size=4)
    c = model.sample_graphs(7, sampler="ode", steps=4, seed=4, batch_size=4)
    assert a["x"].shape == (7, 8, 7) and a["adj"].shape == (7, 8, 8) and a["mask"].shape == (7, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x"], c["x"])
    assert a["x"].isfinite().all() and a["mask"].all(), "raw op scores of every node (the space projects them)"


def test_pc_sampler_and_invalid_samples_are_counted():
    _, model = nb201()
    model.eval()
    graphs = model.sample_graphs(6, sampler="pc", steps=3, seed=0)
    result = decode_samples(NB201Space(), graphs)
    assert len(result.archs) == 6
    assert all((a is None) == (e is not None) for a, e in zip(result.archs, result.errors))


def test_attention_mask_is_identical_in_training_and_sampling(tmp_path, monkeypatch):
    seen: list[tuple[str, torch.Tensor]] = []
    original = score_diffusion.dag_attention_mask

    def spy(adj, node_mask, mode):
        out = original(adj, node_mask, mode)
        seen.append((phase, out[0].clone()))
        return out

    monkeypatch.setattr(score_diffusion, "dag_attention_mask", spy)
    dm, model = nb201()
    phase = "train"
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, dm)
    phase = "sample"
    model.eval()
    model.sample_graphs(2, steps=1)
    train = [m for p, m in seen if p == "train"]
    sample = [m for p, m in seen if p == "sample"]
    assert train and sample
    assert all(torch.equal(m, train[0]) for m in train + sample)
    fixed = torch.as_tensor(dm.spec()["fixed_adjacency"]) > 0
    assert torch.equal(train[0], fixed | fixed.T | torch.eye(8, dtype=torch.bool))


def test_variable_topology_samples_are_dags():
    pl.seed_everything(0)
    dm = ArchitectureDataModule(space=NBGraphSpace(), batch_size=64)
    model = ScoreDiffusionModule(dm.spec(), dim=32, layers=1, heads=2, attention="full")
    model.eval()
    graphs = model.sample_graphs(5, steps=3)
    assert torch.equal(graphs["adj"], graphs["adj"].triu(1))


@pytest.mark.parametrize(
    "space", [NBGraphSpace(), NB201Space(), NB101Space(), CellSpace(), MBV3Space()], ids=lambda s: s.name
)
def test_a_clean_state_reads_back_as_its_architecture(space):
    """Only the open entries are diffused, and reading them alone recovers every architecture."""
    archs = space.sample(64, np.random.default_rng(0))
    x, adj, _ = space.encode_batch(archs)
    model = ScoreDiffusionModule(ArchitectureDataModule(space=space, num_archs=64).spec(), dim=16, layers=1, heads=2)
    state, _ = clean_state({"x": x, "adj": adj}, model.entries)
    graphs = model.read_state(state)
    assert decode_samples(space, graphs, project=False).archs == archs


def test_a_graph_of_varying_size_ends_at_its_first_output():
    """A state that draws the output at position 4 and again at 6, with a padding sign at 3 and
    a node sign at 5: the graph is the five positions up to the first output (no hole, no second
    end), and the three positions read against their sign are counted."""
    space = CellSpace()
    arch = space.from_string("input,conv3x3,conv1x1,maxpool3x3,output|01000,00100,00010,00001,00000")
    x, adj, _ = space.encode_batch([arch])
    model = ScoreDiffusionModule(ArchitectureDataModule(space=space, num_archs=64).spec(), dim=16, layers=1, heads=2)
    state, _ = clean_state({"x": x, "adj": adj}, model.entries)
    assert not model.required[3]  # position 3 may be padding in other cells
    state["x"][0, 3, space.op_index("maxpool3x3")] = -0.1  # drawn just under the padding line: a hole
    state["x"][0, 5, space.op_index("conv1x1")] = 0.9  # a node drawn after the output
    state["x"][0, 6, space.op_index("output")] = 1.0  # and a second output
    graphs = model.read_state(state)
    assert graphs["mask"][0].tolist() == [True] * 5 + [False] * (space.max_nodes - 5)
    assert graphs["unread"].tolist() == [3]
    assert decode_samples(space, graphs, project=False).archs == [arch]


def test_single_input_samples_are_valid_as_drawn_even_untrained():
    """NB-Graph's score state is one op per layer and one source per layer: whatever the network
    says, every sample is a member before any projection."""
    pl.seed_everything(0)
    dm = ArchitectureDataModule(space=NBGraphSpace(), batch_size=64)
    model = ScoreDiffusionModule(dm.spec(), dim=16, layers=1, heads=2, attention="full").eval()
    samples = decode_samples(NBGraphSpace(), model.sample_graphs(64, steps=3, seed=0), project=False)
    assert samples.raw_validity == 1.0
    assert len(set(samples.valid)) > 32


def test_padding_spaces_keep_their_smallest_graph_and_allowed_ops():
    pl.seed_everything(0)
    space = NB101Space()
    model = ScoreDiffusionModule(ArchitectureDataModule(space=space, num_archs=64).spec(), dim=16, layers=1, heads=2)
    graphs = model.eval().sample_graphs(32, steps=3, seed=0)
    assert graphs["mask"][:, : space.min_nodes].all()
    chosen = torch.nn.functional.one_hot(graphs["x"].argmax(-1), space.num_ops).bool() & graphs["mask"].unsqueeze(-1)
    assert not (chosen & ~space.allowed_ops()).any(), "no real node holds an op its position never has"


def test_a_graph_below_the_spaces_min_nodes_is_refused_in_one_line():
    space = NB101Space()
    tiny = space.sample(1, np.random.default_rng(0))[0]
    space.min_nodes = len(space.to_graph(tiny)[0]) + 1
    with pytest.raises(InvalidArchitecture, match="min_nodes") as err:
        space.encode_batch([tiny])
    assert "\n" not in str(err.value)


def test_checkpoint_round_trip_keeps_sde_and_space(tmp_path):
    dm = ArchitectureDataModule(space=NB201Space(), split=(0.2, 0.05, 0.75), batch_size=128)
    model = ScoreDiffusionModule(dm.spec(), sde="ve", sigma_min=0.02, sigma_max=7.0, dim=32, layers=1, heads=2)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ScoreDiffusionModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.sde.config() == model.sde.config()
    assert loaded.sde.sigma_max == pytest.approx(7.0)
    assert loaded.hparams.data_spec["space"] == NB201Space().identity
    loaded.eval()
    model.eval()
    assert torch.equal(loaded.sample_graphs(3, steps=2)["x"], model.sample_graphs(3, steps=2)["x"])


def test_bf16_mixed_training_stays_finite(tmp_path):
    dm, model = nb201()
    quiet_trainer(tmp_path, max_steps=3, limit_val_batches=1, precision="bf16-mixed").fit(model, dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_generation_callback_logs_validity_uniqueness_novelty(tmp_path):
    from nag.callbacks import GenerationMetricsCallback

    dm, model = nb201()
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[GenerationMetricsCallback(every_n_epochs=1, num_samples=8, steps=2)],
    )
    trainer.fit(model, dm)
    logged = trainer.callback_metrics
    for name in ("gen/validity", "gen/uniqueness", "gen/novelty"):
        assert name in logged
    assert 0.0 <= float(logged["gen/validity"]) <= 1.0


@pytest.mark.parametrize("sampler", ["dpm", "edm"])
def test_few_step_samplers_are_selectable_and_seeded(sampler):
    from nag.generation import ModelGenerator

    _, model = nb201()
    model.eval()
    calls = []
    model.ema.module.register_forward_pre_hook(lambda *_: calls.append(1))
    a = model.sample_graphs(5, sampler=sampler, steps=4, seed=3)
    assert len(calls) == (4 if sampler == "dpm" else 2 * 4 - 1)
    b = model.sample_graphs(5, sampler=sampler, steps=4, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a) and a["x"].isfinite().all()
    result = ModelGenerator(model, NB201Space(), sampler=sampler).sample(6, seed=0, steps=3)
    assert len(result) == 6 and result.validity == 1.0


def test_unknown_sampler_names_the_known_ones():
    from nag.errors import ConfigError

    _, model = nb201()
    with pytest.raises(ConfigError, match="'ode', 'pc', 'dpm', 'edm'"):
        model.sample_graphs(2, sampler="ddim")


def test_variable_topology_few_step_samples_are_dags_and_a_given_prior_replaces_the_seed():
    pl.seed_everything(0)
    dm = ArchitectureDataModule(space=NBGraphSpace(), batch_size=64)
    model = ScoreDiffusionModule(dm.spec(), dim=32, layers=1, heads=2, attention="full").eval()
    prior = {"x": torch.randn(7, 6, 11), "adj": torch.randn(7, 6, 6)}
    a = model.sample_graphs(7, sampler="dpm", steps=3, seed=0, batch_size=4, prior=prior)
    b = model.sample_graphs(7, sampler="dpm", steps=3, seed=5, batch_size=3, prior=prior)
    assert torch.equal(a["adj"], a["adj"].triu(1))
    torch.testing.assert_close(a["x"], b["x"], atol=1e-4, rtol=1e-4)  # batch sizes differ: float noise


TRAINED = sorted(
    (Path(__file__).resolve().parents[2] / "runs/benchmarks/generation").glob("*/score/fit-*/checkpoints/last.ckpt")
)


@pytest.mark.skipif(not TRAINED, reason="no cached fit under runs/benchmarks/generation (benchmarks/generation.py)")
@pytest.mark.parametrize("path", TRAINED, ids=[p.parts[-5] for p in TRAINED])
def test_trained_checkpoints_score_as_before(path):
    """Checkpoints written before the lean forward load into it and give the same scores."""
    from nag.generation import load_generator
    from nag.nn.dag_transformer import DagTransformer

    model = load_generator(path).model
    n, v = model.hparams.data_spec["max_nodes"], model.hparams.data_spec["num_ops"]
    g = torch.Generator().manual_seed(0)
    state = {"x": torch.randn(64, n, v, generator=g)}
    if not model.fixed_topology:
        state["adj"] = torch.randn(64, n, n, generator=g)
    t = torch.rand(64, generator=g).clamp_min(0.01)
    with torch.no_grad():
        new = model.score_fn()(state, t)
        for part in model.modules():
            if isinstance(part, DagTransformer):
                part.reference = True
        old = model.score_fn()(state, t)
    for k in new:
        torch.testing.assert_close(new[k], old[k], atol=1e-3, rtol=1e-4)


def test_checkpoint_samples_as_the_original_forward(tmp_path):
    """A checkpoint fitted now samples the same graphs through the lean and the original forward."""
    from nag.nn.dag_transformer import DagTransformer

    dm, model = nb201()
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ScoreDiffusionModule.load_from_checkpoint(tmp_path / "m.ckpt").eval()
    new = loaded.sample_graphs(16, steps=5)
    for part in loaded.modules():
        if isinstance(part, DagTransformer):
            part.reference = True
    old = loaded.sample_graphs(16, steps=5)
    torch.testing.assert_close(new["x"], old["x"], atol=1e-4, rtol=1e-4)


def test_self_conditioning_feeds_each_call_the_previous_clean_estimate_and_trains(tmp_path):
    """The first call reads zeros (no estimate yet), every later one the clean estimate of the
    call before it; the checkpoint's own sampler and steps apply when a request names none."""
    pl.seed_everything(0)
    dm = ArchitectureDataModule(space=NB101Space(), split=(0.5, 0.1, 0.4), batch_size=64, num_archs=300)
    model = ScoreDiffusionModule(
        dm.spec(), dim=16, layers=1, heads=2, warmup_steps=2, self_condition=True, sampler="pc", steps=3
    )
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1).fit(model, dm)
    seen = []
    model.ema.module.register_forward_pre_hook(lambda _, args: seen.append(args[5]), with_kwargs=False)
    graphs = model.sample_graphs(4, seed=0)
    assert len(seen) == 6, "pc, 3 steps: a corrector and a predictor call each"
    assert seen[0] is None
    for estimate in seen[1:]:
        assert set(estimate) == {"x", "adj"} and estimate["x"].abs().max() <= 1.0
        assert (estimate["adj"] * ~model.entries_adj).abs().sum() == 0, "zero off the diffused entries"
    assert decode_samples(NB101Space(), graphs).archs
    assert torch.isfinite(model.loss(next(iter(dm.val_dataloader())), model.net)[0])


def test_the_pc_sampler_takes_the_checkpoints_snr_unless_asked_and_bad_settings_are_refused(monkeypatch):
    from nag.errors import ConfigError

    dm = ArchitectureDataModule(space=NB201Space(), split=(0.2, 0.05, 0.75), batch_size=128)
    model = ScoreDiffusionModule(dm.spec(), dim=16, layers=1, heads=2, pc_snr=0.3).eval()
    seen = {}
    original = score_diffusion.SAMPLERS["pc"]

    def pc(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setitem(score_diffusion.SAMPLERS, "pc", pc)
    model.sample_graphs(3, sampler="pc", steps=2)
    assert seen["snr"] == 0.3 and seen["num_steps"] == 2
    model.sample_graphs(3, sampler="pc", steps=2, pc_snr=0.5)  # a request's own snr, no refit
    assert seen["snr"] == 0.5
    with pytest.raises(ConfigError, match="--pc_snr=0.5: it sets the pc sampler's"):
        model.sample_graphs(3, sampler="ode", steps=2, pc_snr=0.5)
    for bad, field in (({"pc_snr": 0.0}, "pc_snr"), ({"sampler": "ddim"}, "sampler")):
        with pytest.raises(ConfigError, match=f"model.init_args.{field}"):
            ScoreDiffusionModule(dm.spec(), dim=16, layers=1, heads=2, **bad)
