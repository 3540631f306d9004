"""DiscreteDiffusionModule: configs fit, guidance steers the true metric, bf16, seeding, CLI errors."""

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from nag.benchmarks import NB201Benchmark, NBGraphBenchmark
from nag.callbacks import GenerationMetricsCallback
from nag.cli import main
from nag.datamodules import ArchitectureDataModule
from nag.diffusion.graph_state import edges_from_sources
from nag.errors import ConfigError, UnknownMetric
from nag.generation import decode_samples
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.spaces.nb101 import NB101Space

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
NBGRAPH = str(ROOT / "configs" / "nbgraph" / "discrete_diffusion.yaml")
TINY = [
    "--model.init_args.dim=16",
    "--model.init_args.edge_dim=4",
    "--model.init_args.layers=1",
    "--model.init_args.heads=2",
    "--model.init_args.T=20",
]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


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


@pytest.fixture(scope="module")
def nbgraph_dm() -> ArchitectureDataModule:
    return ArchitectureDataModule(
        NBGraphBenchmark("cora"), targets=["valid_acc", "latency", "params"], split=(0.2, 0.05, 0.75), batch_size=64
    )


def tiny(dm: ArchitectureDataModule, free_edges: bool = False, **kwargs) -> DiscreteDiffusionModule:
    """``free_edges``: diffuse NB-Graph's wiring as free edges, as every space without
    ``single_input`` does (NB101, the hierarchical cells)."""
    pl.seed_everything(0)
    args = {
        "conditions": ["valid_acc", "latency"],
        "T": 20,
        "dim": 16,
        "edge_dim": 4,
        "layers": 1,
        "heads": 2,
        "warmup_steps": 1,
        **kwargs,
    }
    return DiscreteDiffusionModule({**dm.spec(), **({"single_input": False} if free_edges else {})}, **args)


@pytest.mark.parametrize("space", ["nb201", "nbgraph", "nb101", "mbv3"])
def test_config_fits_under_fast_dev_run(space, tmp_path, request):
    data = {"nb201": "nb201/nb201.csv", "nb101": "nb101/nb101_1k.json"}
    extra = []
    if space in data:
        extra = [f"--data.init_args.benchmark.init_args.path={request.getfixturevalue('shared_data') / data[space]}"]
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / space / "discrete_diffusion.yaml"),
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
            *extra,
        ]
    )


def test_guided_samples_shift_the_true_metric_in_the_requested_direction(shared_data, tmp_path):
    bench = NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))
    metric = "cifar10_test_200ep"
    dm = ArchitectureDataModule(bench, targets=[metric], split=(0.8, 0.1, 0.1), batch_size=128)
    pl.seed_everything(0)
    model = DiscreteDiffusionModule(
        dm.spec(),
        conditions=[metric],
        T=100,
        dim=32,
        edge_dim=8,
        layers=1,
        heads=4,
        lr=3e-3,
        warmup_steps=10,
        ema_decay=0.99,
    )
    quiet_trainer(tmp_path, max_steps=30, limit_val_batches=0).fit(model, dm)
    model.eval()

    def mean_truth(**kwargs) -> float:
        archs = decode_samples(bench.space, model.sample_graphs(150, steps=10, seed=1, **kwargs)).valid
        assert len(archs) >= 140
        return float(np.mean([bench.query(a, metric) for a in archs]))

    unconditional = mean_truth()
    low, high = np.percentile(bench.column(metric), [5, 99.9])
    assert mean_truth(conditions={metric: high}, guidance_scale=2.0) > unconditional + 1.0
    assert mean_truth(conditions={metric: low}, guidance_scale=2.0) < unconditional - 1.0


def test_bf16_mixed_training_is_finite_and_the_generation_callback_logs(nbgraph_dm, tmp_path):
    model = tiny(nbgraph_dm)
    callback = GenerationMetricsCallback(every_n_epochs=1, num_samples=8, sampler="ancestral", steps=3)
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, precision="bf16-mixed", callbacks=[callback]
    )
    trainer.fit(model, nbgraph_dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert 0.0 <= float(trainer.callback_metrics["gen/validity"]) <= 1.0


def test_samples_are_seeded_dags_with_every_guidance_mode(nbgraph_dm):
    model = tiny(nbgraph_dm).eval()
    cond = {"valid_acc": 0.81, "latency": 0.004}
    a = model.sample_graphs(5, steps=4, seed=3, batch_size=3, conditions=cond, guidance_scale=2.0)
    b = model.sample_graphs(5, steps=4, seed=3, batch_size=3, conditions=cond, guidance_scale=2.0)
    c = model.sample_graphs(5, steps=4, seed=4, batch_size=3, conditions=cond, guidance_scale=2.0)
    assert a["x"].shape == (5, 6, 11) and a["adj"].shape == (5, 6, 6) and a["mask"].shape == (5, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.equal(a["adj"], a["adj"].triu(1)), "edges stay directed (upper triangle)"
    for kwargs in ({"mode": "joint", "guidance_scale": 3.0}, {"guidance_scale": {"latency": 0.5}}, {}):
        out = model.sample_graphs(4, steps=2, conditions=cond if kwargs else None, **kwargs)
        assert out["x"].shape == (4, 6, 11)
    per_sample = model.sample_graphs(4, steps=2, conditions={"latency": [0.002, 0.003, 0.004, 0.005]})
    assert per_sample["x"].shape == (4, 6, 11)
    assert model.sample_graphs(4, steps=3, spacing="alpha")["x"].shape == (4, 6, 11)
    with pytest.raises(ConfigError, match="spacing='log'"):
        model.sample_graphs(4, steps=3, spacing="log")


def test_compiled_sampling_draws_the_eager_samples_and_keeps_the_checkpoint_as_it_was(nbgraph_dm, monkeypatch):
    compile_ = torch.compile  # dynamo's tracing without inductor's minute of C++ builds (the benchmark times those)
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compile_(module, **kw, backend="eager"))
    model = tiny(nbgraph_dm).eval()
    keys = set(model.state_dict())
    cond = {"valid_acc": 0.81, "latency": 0.004}
    eager = model.sample_graphs(40, steps=3, seed=1, conditions=cond, guidance_scale=2.0)
    compiled = model.sample_graphs(40, steps=3, seed=1, conditions=cond, guidance_scale=2.0, compile=True)
    assert all(torch.equal(eager[k], compiled[k]) for k in eager)
    assert set(model.state_dict()) == keys and model.sampling_network() is model.ema.module  # only for that call


def test_guidance_plan_batches_conditional_and_unconditional_passes(nbgraph_dm):
    model = tiny(nbgraph_dm)
    values, keep, weights = model.guidance_plan(
        {"valid_acc": 0.8, "latency": 0.005}, {"valid_acc": 2.0}, "compositional", 3
    )
    assert keep.tolist() == [[False, False], [True, False], [False, True]]
    assert weights == [1.0 - 2.0 - 1.0, 2.0, 1.0]
    stats = nbgraph_dm.spec()["target_stats"]
    expected = (0.8 - stats["valid_acc"]["mean"]) / stats["valid_acc"]["std"]
    assert torch.allclose(values[:, 0], torch.full((3,), expected))
    _, keep, weights = model.guidance_plan({"latency": 0.005}, 1.0, "joint", 3)
    assert keep.tolist() == [[False, True]] and weights == [1.0], "scale 1: the conditional pass alone"
    _, keep, weights = model.guidance_plan(None, 1.0, "compositional", 3)
    assert keep.tolist() == [[False, False]] and weights == [1.0]
    with pytest.raises(ConfigError, match="joint mode takes one number"):
        model.guidance_plan({"latency": 0.005}, {"latency": 2.0}, "joint", 3)


def test_regressor_guidance_moves_samples_toward_what_the_regressor_predicts_for_the_asked_value(nbgraph_dm):
    """A regressor that reads one op at one layer: asking a high value makes samples pick it."""
    model = tiny(nbgraph_dm, regressor_scale=20.0).eval()
    regressor = model.ema.module.regressor
    gat = nbgraph_dm.space.ops.index("gat")
    with torch.no_grad():
        for layer in regressor.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_(), layer.bias.zero_()
        first, second, out = (m for m in regressor.mlp if isinstance(m, torch.nn.Linear))
        first.weight[0, 1 * model.diffusion.marginals("nodes").shape[-1] + gat] = 1.0  # node 1 (layer 1) is gat
        second.weight[0, 0] = out.weight[0, 0] = 1.0
    cond = {"valid_acc": 0.95}  # far above what the regressor can predict: guidance pushes all the way
    guided = model.sample_graphs(200, steps=5, seed=0, conditions=cond, extrapolate=True)
    plain = model.sample_graphs(200, steps=5, seed=0, conditions=cond, extrapolate=True, regressor_scale=0.0)
    share = lambda g: float(g["x"][:, 1, gat].mean())  # noqa: E731
    assert share(guided) > share(plain) + 0.3
    unconditional = model.sample_graphs(200, steps=5, seed=0)
    assert torch.equal(unconditional["x"], model.sample_graphs(200, steps=5, seed=0, regressor_scale=0.0)["x"])


def test_regressor_trains_beside_the_denoiser_and_is_refused_where_it_cannot_apply(nbgraph_dm, tmp_path):
    model = tiny(nbgraph_dm, regressor_scale=2.0)
    quiet_trainer(tmp_path, max_steps=3).fit(model, datamodule=nbgraph_dm)
    loss, parts = model.loss(next(iter(nbgraph_dm.train_dataloader())), model.net)
    assert {"ce_nodes", "ce_edges", "mse_regressor"} <= set(parts) and torch.isfinite(loss)
    plain = tiny(nbgraph_dm)
    assert plain.net.regressor is None
    with pytest.raises(ConfigError, match="no regressor; fit it with model.init_args.regressor_scale"):
        plain.sample_graphs(2, steps=2, conditions={"valid_acc": 0.8}, regressor_scale=1.0)
    with pytest.raises(ConfigError, match="regressor_scale: the regressor predicts the conditions"):
        tiny(nbgraph_dm, conditions=[], regressor_scale=1.0)
    with pytest.raises(ConfigError, match="regressor_scale=-1"):
        tiny(nbgraph_dm, regressor_scale=-1.0)


def test_single_input_wiring_is_drawn_as_one_source_per_layer_and_every_sample_is_valid(nbgraph_dm, tmp_path):
    """NB-Graph's layers each read one earlier node: the sampler draws that node, not free edges,
    so even a barely trained model's samples decode as drawn; the free-edge path's do not."""
    model = tiny(nbgraph_dm)
    assert model.diffusion.kinds == ("nodes", "sources")
    nbgraph_dm.setup()
    batch = next(iter(DataLoader(nbgraph_dm.train_dataloader().dataset, batch_size=256)))
    clean = model.clean_state(batch)
    assert torch.equal(edges_from_sources(clean["sources"]), (batch["adj"] > 0.5).long() * model.upper)
    valid = {}
    for free_edges in (False, True):
        model = tiny(nbgraph_dm, free_edges)
        quiet_trainer(tmp_path, max_steps=2).fit(model, datamodule=nbgraph_dm)
        graphs = model.eval().sample_graphs(200, steps=5, seed=0, conditions={"valid_acc": 0.8}, guidance_scale=3.0)
        valid[free_edges] = decode_samples(nbgraph_dm.space, graphs, project=False).raw_validity
    assert valid[False] == 1.0 and valid[True] < 0.9


def test_unknown_conditions_name_the_valid_ones(nbgraph_dm):
    with pytest.raises(UnknownMetric, match="valid: valid_acc, latency, params"):
        tiny(nbgraph_dm, conditions=["flops"])
    model = tiny(nbgraph_dm).eval()
    with pytest.raises(UnknownMetric, match="trained with conditions valid_acc, latency; use those names"):
        model.sample_graphs(2, steps=1, conditions={"params": 0.1})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    main(
        [
            "fit",
            "--config",
            NBGRAPH,
            *TINY,
            *QUIET,
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            f"--trainer.default_root_dir={root}",
        ]
    )
    return next(root.rglob("last.ckpt"))


def test_nag_generate_takes_conditions_and_rejects_unknown_ones_in_one_line(checkpoint, tmp_path, capsys):
    out = tmp_path / "gen.csv"
    main(
        [
            "generate",
            "--config",
            NBGRAPH,
            "--ckpt_path",
            str(checkpoint),
            "--num_samples=6",
            "--steps=3",
            "--conditions",
            '{"valid_acc": 0.81, "latency": 0.004}',
            "--guidance_scale=2",
            f"--output={out}",
            *QUIET,
        ]
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("sample,valid,raw_valid,arch,key,error,valid_acc,latency,params")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "generate",
                "--config",
                NBGRAPH,
                "--ckpt_path",
                str(checkpoint),
                "--num_samples=2",
                "--steps=1",
                "--conditions",
                '{"accuracy": 0.9}',
                f"--output={tmp_path / 'x.csv'}",
                *QUIET,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "conditions ['accuracy']" in errors[0] and "valid_acc, latency, params" in errors[0]
    assert not (tmp_path / "x.csv").exists()


def test_conditions_outside_the_training_range_are_refused_unless_allowed(nbgraph_dm):
    model = tiny(nbgraph_dm, conditions=["valid_acc"])
    stats = nbgraph_dm.target_stats["valid_acc"]
    inside = (stats["min"] + stats["max"]) / 2
    values, given = model.normalize_conditions({"valid_acc": inside}, 3)
    assert given.all() and torch.allclose(values, torch.full((3, 1), (inside - stats["mean"]) / stats["std"]))
    with pytest.raises(ConfigError, match=r"outside the training range \["):
        model.normalize_conditions({"valid_acc": stats["max"] + 0.01}, 3)
    values, _ = model.normalize_conditions({"valid_acc": stats["max"] + 0.01}, 3, extrapolate=True)
    assert values[0, 0] > (stats["max"] - stats["mean"]) / stats["std"]


def sharpened(dm: ArchitectureDataModule, conditions: list[str], free_edges: bool = False) -> DiscreteDiffusionModule:
    """``tiny`` with what fitting sets (the training split's marginals and condition quantiles) and
    its output layers scaled up, so that its samples agree as a trained guided model's do: late
    steps then share states, which the sampler runs through the network once."""
    model = tiny(dm, free_edges, conditions=conditions)
    dm.setup()
    batch = next(iter(DataLoader(dm.train_dataloader().dataset, batch_size=100_000)))
    model.diffusion.set_marginals(model.clean_state(batch))
    net = model.ema.module
    net.conditions.fit(model.condition_values(batch))
    with torch.no_grad():
        for p in net.transformer.node_out.parameters():
            p.mul_(30.0)
        if net.transformer.predict_edges:
            for p in net.transformer.edge_out.parameters():
                p.mul_(3.0)
    return model.eval()


def sample_keys(graphs: dict[str, torch.Tensor], edges: bool) -> list[str]:
    """Per sample: its node classes ("." for padding) and, where edges vary, the upper triangle's bits."""
    nodes = torch.where(graphs["mask"], graphs["x"].argmax(-1), -1)
    upper = torch.triu_indices(nodes.shape[1], nodes.shape[1], 1)
    keys = ["".join("." if c < 0 else str(int(c)) for c in row) for row in nodes]
    if edges:
        bits = graphs["adj"][:, upper[0], upper[1]].long()
        keys = [k + ":" + "".join(str(int(b)) for b in row) for k, row in zip(keys, bits)]
    return keys


#: What the sampler drew before issue 19 (one network row per sample and pass, condition
#: embeddings every step) from ``sharpened`` models: 48 samples in batches of 32, 10 steps, seed 7,
#: CFG at scale 2; space-separated ``sample_keys``.
BEFORE_ISSUE_19 = {
    "nb201": (
        "02221226 02222216 02222226 02222216 02222116 02222226 02222226 02222226 02222216 02222226 02422116 "
        "02222116 02221216 02221216 02222216 02222226 02224216 02222216 02222226 02122226 02222216 02222216 "
        "02422226 02222216 02222126 02222226 02122216 02221216 01222116 02222246 02222226 02221226 02222216 "
        "02224216 02222216 02222216 02222226 02221226 02222416 02422216 02222116 02221216 02222226 02222216 "
        "02222226 02222216 02221216 01222116"
    ),
    "nbgraph": (
        "0344410:100000000000001 0344410:100000000000011 0344410:100000000000001 0434410:100000100000001 "
        "0344410:100000000100001 0444410:100000000000001 0344410:101000000000001 0344410:100000000010001 "
        "0744410:100100000100001 0394410:100001000000001 0444410:100000000000001 0334410:100000100000101 "
        "0344410:100000000000001 0344410:100000000000001 0444410:100000000000001 0244410:100100000000001 "
        "0484410:110000000000001 0444410:101000000000001 0344410:100000000000001 0344410:100100000000101 "
        "0444410:100000000000001 0344410:101000000000001 0744410:101000000000011 0394410:100000000000001 "
        "0444410:100000000000001 0344410:100000000000001 0244410:100000000000001 0444410:100000000000001 "
        "0344410:101000000000001 0444410:100000000000001 0744410:100000000000001 0494410:101001000100001 "
        "0444410:100000000010101 0344410:100000000000001 0344410:101100000000001 0344410:100000000000001 "
        "0494410:100000000010001 0344410:100100000000001 0344410:111000000000001 0444410:100001000000011 "
        "0344410:100000000000101 0344410:100000000000001 0444410:100000000000001 0344410:110000000000011 "
        "0444410:100000000000001 0344410:100100000000101 0344410:100000000000001 0744410:100000000000001"
    ),
}


@pytest.mark.parametrize("space", ["nb201", "nbgraph"])
def test_samples_at_a_fixed_seed_are_those_drawn_before_issue_19(space, nbgraph_dm, request):
    """Sharing the network's rows among samples with the same input, and embedding the conditions
    once, change no sample; the network sees fewer rows than samples x passes x steps."""
    if space == "nbgraph":
        model = sharpened(nbgraph_dm, ["valid_acc", "latency"], free_edges=True)
        cond = {"valid_acc": 0.81, "latency": 0.004}
    else:
        bench = NB201Benchmark(request.getfixturevalue("nb201_table"))
        dm = ArchitectureDataModule(bench, targets=["cifar10_test_200ep"], split=(0.6, 0.2, 0.2))
        model, cond = sharpened(dm, ["cifar10_test_200ep"]), {"cifar10_test_200ep": 92.0}
    rows = []
    hook = model.ema.module.register_forward_pre_hook(lambda _, args: rows.append(args[0]["nodes"].shape[0]))
    try:
        graphs = model.sample_graphs(48, steps=10, seed=7, batch_size=32, conditions=cond, guidance_scale=2.0)
    finally:
        hook.remove()
    passes = 1 + len(cond)
    assert sample_keys(graphs, edges=space == "nbgraph") == BEFORE_ISSUE_19[space].split()
    assert len(rows) == 2 * 10 and sum(rows) < 48 * passes * 10


def test_distinct_inputs_share_exactly_the_samples_whose_inputs_agree():
    """Ids packed over several int64 words (41 node classes, 20 x 20 edges) still tell apart states
    that differ only in a late digit or in their conditions; every sample's representative has its
    input, and there is one representative per distinct input."""
    model = DiscreteDiffusionModule({"max_nodes": 20, "num_ops": 40}, dim=8, edge_dim=2, layers=1, heads=1)
    g = torch.Generator().manual_seed(0)
    base = model.diffusion.prior(4, g)
    pick = torch.randint(0, 4, (300,), generator=g)
    state = {k: v[pick].clone() for k, v in base.items()}
    state["edges"][:, 18, 19] = torch.rand(300, generator=g) < 0.3
    state["nodes"][:, 19] = torch.where(torch.rand(300, generator=g) < 0.3, 40, state["nodes"][:, 19])
    groups = torch.randint(0, 3, (300,), generator=g)
    inputs = torch.cat([groups[:, None], state["nodes"], state["edges"].flatten(1)], 1)
    first, inverse = model.distinct_inputs(state, groups)
    assert torch.equal(inputs[first][inverse], inputs)
    assert len(first) == len(torch.unique(inputs, dim=0)) < 300
    model.reference = True
    first, inverse = model.distinct_inputs(state, groups)
    assert torch.equal(first, torch.arange(300)) and torch.equal(inverse, torch.arange(300))


TRAINED = sorted(Path(ROOT, "runs", "benchmarks", "generation").glob("*/discrete/fit-*/checkpoints/last.ckpt"))


def _original_path(model: DiscreteDiffusionModule) -> None:
    """``model``, its transformers (the EMA copy's too) and its diffusion on the original path."""
    from nag.diffusion.discrete import CategoricalDiffusion
    from nag.nn.graph_transformer import GraphTransformer

    for part in model.modules():
        if isinstance(part, (GraphTransformer, CategoricalDiffusion, DiscreteDiffusionModule)):
            part.reference = True


@pytest.mark.parametrize("space", ["nbgraph", "nb201"])
def test_lean_sampling_draws_what_the_original_path_drew(space, nbgraph_dm, request):
    """Closed-form posteriors, the lean forward, the batch-1 fixed graph and one network row per
    distinct input change no sample: same seed, same architectures (to float noise in the
    probabilities, which no draw here crosses)."""
    if space == "nbgraph":
        model = tiny(nbgraph_dm)
        cond = {"valid_acc": 0.81, "latency": 0.004}
    else:
        dm = ArchitectureDataModule(NB201Benchmark(request.getfixturevalue("nb201_table")), split=(0.6, 0.2, 0.2))
        model = tiny(dm, conditions=[])
        cond = None
    model.eval()
    new = model.sample_graphs(40, steps=5, seed=1, conditions=cond, guidance_scale=2.0)
    _original_path(model)
    old = model.sample_graphs(40, steps=5, seed=1, conditions=cond, guidance_scale=2.0)
    assert all(torch.equal(new[k], old[k]) for k in new)


@pytest.mark.skipif(not TRAINED, reason="no cached fit under runs/benchmarks/generation (benchmarks/generation.py)")
@pytest.mark.parametrize("path", TRAINED, ids=[p.parts[-5] for p in TRAINED])
def test_trained_checkpoints_predict_as_before(path):
    """Checkpoints written before the lean forward load into it and predict the same x_0 (and so
    sample the same architectures)."""
    from nag.generation import load_generator

    model = load_generator(path).model
    state = model.diffusion.prior(64, torch.Generator().manual_seed(0))
    c = len(model.condition_names)
    values = torch.randn(64, c, generator=torch.Generator().manual_seed(1))
    keep = torch.stack([torch.zeros(c, dtype=torch.bool), torch.ones(c, dtype=torch.bool)])
    net = model.ema.module
    with torch.no_grad():
        cond, groups = model.condition_embeddings(net, values, keep)
        new = model.guided_x0(net, state, model.diffusion.T // 2, cond, groups, [-1.0, 2.0])
        _original_path(model)
        old = model.guided_x0(net, state, model.diffusion.T // 2, cond, groups, [-1.0, 2.0])
    for kind in new:
        torch.testing.assert_close(new[kind], old[kind], atol=1e-5, rtol=1e-4)


def test_nb101_samples_stay_within_the_edge_cap_even_untrained(tmp_path):
    """NB101 allows 9 edges; an untrained denoiser's edges are near coin flips over 21 pairs,
    so most free draws would exceed it."""
    dm = ArchitectureDataModule(space=NB101Space(), num_archs=64, split=(0.5, 0.25, 0.25), batch_size=32)
    model = tiny(dm, conditions=[])
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, dm)
    model.eval()
    graphs = model.sample_graphs(200, steps=5, seed=0)
    assert dm.spec()["max_edges"] == 9
    assert int(graphs["adj"].sum((1, 2)).max()) <= 9
    model.hparams.data_spec["max_edges"] = None
    assert int(model.sample_graphs(200, steps=5, seed=0)["adj"].sum((1, 2)).max()) > 9, "the cap is what holds"
