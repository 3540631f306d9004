"""Hierarchical pipeline: the cell ZC table, cached model fits, generation under exact budgets,
ZC ranking, brief training, seeded determinism and the ``nag search-hierarchical`` entry.

Models are tiny and untrained (or fitted for one epoch/step): the pipeline's plumbing is what
is tested here; benchmarks/hierarchical.py measures what trained models achieve.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from nag.cli import main
from nag.datamodules.macro import TokenDataset
from nag.datamodules.zc_cells import ZCCellDataModule
from nag.errors import ConfigError, DataFileError
from nag.generation import Generator
from nag.lightning_modules.cell_encoder import CellEncoderModule
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.nn.flops import count_flops, count_params
from nag.search.hierarchical import (
    CellProxies,
    CellTable,
    Generation,
    HierarchicalGenerator,
    ModelFit,
    Task,
    Training,
    build,
    build_cell_table,
    fit_model,
    network_proxies,
    random_satisfiers,
    rank_score,
    search,
)
from nag.search.short_training import ImageTask, train_briefly
from nag.spaces.cell import Cell, CellSpace
from nag.spaces.macro import MacroArch, MacroSpace, Stage
from nag.spaces.macro_tokens import PREFIX_LENGTH, MacroTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[2]
PROXIES = ["synflow", "nwot", "params", "flops"]
TASK = Task(num_classes=10, input_size=16, in_channels=1, max_params=30_000, max_flops=3_000_000)
TRAINING = Training(
    top_k=2,
    rank_by=["synflow", "nwot"],
    proxy_batch_size=8,
    epochs=1,
    batch_size=32,
    test_size=64,
    train_size=64,
    store=None,
    accelerator="cpu",
)
GENERATION = Generation(
    num_samples=12, condition={"synflow": 0.9, "nwot": 0.9}, match=["params", "flops"], cell_rounds=3
)


@pytest.fixture(scope="module")
def images(shared_data) -> str:
    return str(shared_data / "images" / "mnist_5k.csv.gz")


@pytest.fixture(scope="module")
def table(images, tmp_path_factory) -> CellTable:
    config = CellTable(
        path=str(tmp_path_factory.mktemp("cells") / "cell_zc.csv"),
        num_cells=24,
        images=images,
        image_size=8,
        batch_size=8,
        width=8,
        proxies=PROXIES,
        seed=0,
    )
    build_cell_table(config)
    return config


def _fit(model: pl.LightningModule, data: DataLoader | pl.LightningDataModule, **settings: object) -> pl.Trainer:
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
        **settings,
    )
    trainer.fit(model, data)
    return trainer


@pytest.fixture(scope="module")
def generator(table) -> HierarchicalGenerator:
    """An untrained macro transformer; a tiny cell encoder fitted briefly on the table (so that
    its decodes are often cells) and a CCNF fitted for one epoch."""
    pl.seed_everything(0, verbose=False)
    space = MacroSpace(num_cells=4, cell_seed=0, stem_channels=(8, 16), channels=(8, 16, 24), max_stages=3)
    tokenizer = MacroTokenizer(
        space,
        num_classes=(10,),
        input_sizes=(16,),
        in_channels=1,
        params_range=(1e3, 1e6),
        flops_range=(1e5, 1e9),
        num_bins=16,
    )
    macro = MacroTransformerModule(
        {"space": space.identity, "tokenizer": tokenizer.config(), "prefix_length": PREFIX_LENGTH},
        d_model=16,
        nhead=2,
        num_layers=1,
        dim_feedforward=32,
    ).eval()
    dm = ZCCellDataModule(CellSpace(), path=table.path, proxies=PROXIES, batch_size=8)
    encoder = CellEncoderModule(
        dm.spec(), latent_dim=4, hidden=32, encoder_layers=2, decoder_layers=1, num_clusters=2, lr=1e-2, prior_samples=0
    )
    _fit(encoder, dm, max_epochs=25)
    flow = CellFlowModule(dm.spec(), encoder_hparams=dict(encoder.hparams), hidden=16, layers=1, steps=4)
    flow.encoder.load_state_dict(encoder.state_dict())
    _fit(flow, dm, max_epochs=1)
    return HierarchicalGenerator(macro, flow.eval(), CellProxies(table), GENERATION)


def measured_cost(module: torch.nn.Module) -> tuple[int, int]:
    """Parameters and FLOPs (torch's counter, 2 per multiply-accumulate: the budgets' unit)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.eval()(torch.zeros(1, TASK.in_channels, TASK.input_size, TASK.input_size))
    return count_params(module), counter.get_total_flops()


# --- the cell table --------------------------------------------------------------------------
def test_cell_table_is_what_the_cell_datamodule_reads_and_is_reused_not_silently_replaced(table):
    dm = ZCCellDataModule(CellSpace(), path=table.path, proxies=PROXIES)
    assert len(dm.archs_all) + dm.num_dropped == table.num_cells
    assert len({CellSpace().key(a) for a in dm.archs_all}) == len(dm.archs_all), "cells are distinct"
    # each row is the proxies of the cell's own small network: recompute two independently
    scorer = CellProxies(table)
    cells = dm.archs_all[:2]
    for cell, row in zip(cells, dm.raw[:2]):
        net = scorer.network(cell)
        assert row[PROXIES.index("params")] == pytest.approx(count_params(net) / 1e6)
        assert row[PROXIES.index("flops")] == pytest.approx(count_flops(net, (1, 8, 8)) / 1e6)
    np.testing.assert_allclose(scorer(cells), dm.raw[:2])
    mtime = Path(table.path).stat().st_mtime_ns
    assert build_cell_table(table) == Path(table.path) and Path(table.path).stat().st_mtime_ns == mtime
    with pytest.raises(DataFileError, match="other settings"):
        build_cell_table(replace(table, seed=1))


# --- generation ------------------------------------------------------------------------------
def test_kept_networks_are_all_within_both_budgets_counted_on_the_built_modules(generator):
    generated = generator.generate(TASK.constraints, seed=0)
    assert generated.satisfiers, "a generous budget keeps some networks"
    assert len(generated.built) + generated.incomplete <= generated.macro_samples == GENERATION.num_samples
    assert generated.cell_draws >= sum(len(a.stages) for a in generated.built)
    for arch in generated.built:  # independent of the closed form: count the real modules
        params, flops = measured_cost(build(generator.space, arch, TASK, seed=0))
        within = params <= TASK.max_params and flops <= TASK.max_flops
        assert within == (arch in generated.satisfiers)
    assert generated.share_before_check == len(generated.satisfiers) / len(generated.built)
    # the slots hold the CCNF's cells, not the transformer's vocabulary
    vocabulary = {CellSpace().key(c) for c in generator.macro.tokenizer.space.cells}
    cells = {CellSpace().key(s.cell) for a in generated.built for s in a.stages}
    assert cells - vocabulary


def test_generation_is_seeded(generator):
    a, b = generator.generate(TASK.constraints, seed=3), generator.generate(TASK.constraints, seed=3)
    assert a == b
    assert generator.generate(TASK.constraints, seed=4).built != a.built


def test_conditions_hold_quantiles_and_the_slot_cells_cost(generator, table):
    slots = list(generator.macro.tokenizer.space.cells[:2])
    rows = generator._conditions(slots)
    names = generator.flow.proxies
    q = float(torch.special.ndtri(torch.tensor(0.9)))
    assert rows[:, names.index("synflow")].tolist() == pytest.approx([q, q])
    raw = torch.zeros(2, len(names), dtype=torch.float64)
    raw[:, names.index("params")] = torch.from_numpy(CellProxies(table)(slots, ["params"])[:, 0])
    expected = generator.flow.normalizer.normalize(raw)[:, names.index("params")]
    assert rows[:, names.index("params")].tolist() == pytest.approx(expected.tolist())


def test_each_slot_keeps_the_best_candidate_that_still_lets_the_network_fit(generator):
    cells = {op: CellSpace().from_string(f"input,{op},output|010,001,000") for op in ("conv5x5", "conv1x1", "skip")}
    big, small, free = cells["conv5x5"], cells["conv1x1"], cells["skip"]
    arch = MacroArch(16, (Stage(free, 16, 1, 1), Stage(free, 16, 1, 1)))
    options, scores = [[big, free], [big, small]], [np.array([1.0, 0.0]), np.array([1.0, 0.0])]

    def fill(max_params: int) -> tuple:
        c = replace(TASK, max_params=max_params, max_flops=10**9).constraints
        return tuple(s.cell for s in generator._fill(arch, options, scores, c).stages)

    def params(a: Cell, b: Cell) -> int:
        return generator.space.cost(MacroArch(16, (Stage(a, 16, 1, 1), Stage(b, 16, 1, 1))), TASK.constraints)[0]

    # slot 0 takes the preferred big cell while slot 1's cheapest option still fits, then slot 1 must be small
    assert fill(params(big, small)) == (big, small)
    # one parameter less: the big cell in slot 0 can no longer be completed, so slot 1 gets it
    assert fill(params(big, small) - 1) == (free, big)
    assert fill(10**9) == (big, big)
    # nothing fits: the cheapest cells, left for the exact check to drop
    assert fill(params(free, small) - 1) == (free, small)


def test_more_cell_candidates_keep_more_networks_within_budget(generator):
    single = HierarchicalGenerator(
        generator.macro, generator.flow, generator.cell_proxies, replace(GENERATION, cell_candidates=1)
    )
    kept = [sum(len(g.generate(TASK.constraints, seed).satisfiers) for seed in range(3)) for g in (single, generator)]
    assert kept[1] >= kept[0]


def test_generator_refuses_conditions_the_flow_does_not_know(generator):
    with pytest.raises(ConfigError, match="jacov"):
        HierarchicalGenerator(
            generator.macro, generator.flow, generator.cell_proxies, replace(GENERATION, condition={"jacov": 0.9})
        )
    with pytest.raises(ConfigError, match="between 0 and 1"):
        HierarchicalGenerator(
            generator.macro, generator.flow, generator.cell_proxies, replace(GENERATION, condition={"synflow": 1.0})
        )


def test_random_baseline_draws_satisfiers_only(generator):
    archs, share = random_satisfiers(generator.space, TASK.constraints, 5, np.random.default_rng(0))
    assert len({generator.space.key(a) for a in archs}) == 5 and 0 < share <= 1
    assert all(generator.space.satisfies(a, TASK.constraints) for a in archs)
    with pytest.raises(ConfigError, match="raise max_params"):
        random_satisfiers(
            generator.space, replace(TASK, max_params=100).constraints, 1, np.random.default_rng(0), max_draws=200
        )


def test_rank_score_orders_by_mean_rank_and_puts_nan_last():
    values = np.array([[3.0, 1.0], [1.0, 2.0], [2.0, 3.0], [math.nan, 4.0]])
    # column ranks (0 = worst): [3, 1, 2, 0] and [0, 1, 2, 3]
    assert rank_score(values).tolist() == [1.5, 1.0, 2.0, 1.5]


# --- training and the whole search --------------------------------------------------------------
def test_brief_training_learns_and_is_seeded(images, generator):
    data = ImageTask(images, 16, 1, 10, test_size=200, train_size=512, split_seed=0)
    assert len(data.train) == 512 and len(data.test) == 200 and data.train[0][0].shape == (1, 16, 16)
    conv = "input,conv3x3,output|010,001,000"
    arch = generator.space.from_string(f"16;{conv}:16:2:1;{conv}:24:2:1")
    runs = [
        train_briefly(build(generator.space, arch, TASK, 0), data, 2, 32, 3e-3, seed=0, accelerator="cpu")
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert runs[0] > 0.3, "10 classes: chance is 0.1"


def test_search_reports_top_k_and_random_networks_within_budget_and_is_deterministic(generator, images):
    reports = [search(generator, TASK, TRAINING, seeds=[0], images=images) for _ in range(2)]
    for report in reports:  # wall-clock times are the only thing allowed to differ
        for run in report["runs"]:
            assert run.pop("generation_seconds") <= run.pop("seconds")
    assert reports[0] == reports[1]
    run = reports[0]["runs"][0]
    assert len(run["generated"]) == TRAINING.top_k == len(run["random"]) == len(run["random_screened"])
    for row in run["generated"] + run["random"] + run["random_screened"]:
        assert row["params"] <= TASK.max_params and row["flops"] <= TASK.max_flops
        assert 0.0 <= row["accuracy"] <= 1.0
    # the top-k are the satisfiers of best mean rank over the ranking proxies
    satisfiers = generator.generate(TASK.constraints, seed=0).satisfiers
    zc = network_proxies(generator.space, satisfiers, TASK, TRAINING.rank_by, images, TRAINING.proxy_batch_size, 0)
    best = np.argsort(-rank_score(zc), kind="stable")[: TRAINING.top_k]
    assert [r["arch"] for r in run["generated"]] == [generator.space.to_string(satisfiers[i]) for i in best]
    assert [r["synflow"] for r in run["generated"]] == pytest.approx(zc[best, 0].tolist())
    summary = reports[0]["summary"]
    assert summary["share_after_check"] == 1.0
    generated, random = (np.mean([r["accuracy"] for r in run[kind]]) for kind in ("generated", "random"))
    assert summary["generated_accuracy"]["mean"] == pytest.approx(generated)
    assert summary["accuracy_gain"]["mean"] == pytest.approx(generated - random)
    assert summary["seeds_won"] == int(generated > random)
    # the screened random arm: as many random candidates as the generator kept, ranked by the same proxies
    assert run["random_candidates"] == max(len(satisfiers), TRAINING.top_k)
    screened = np.mean([r["accuracy"] for r in run["random_screened"]])
    assert summary["gain_vs_screened"]["mean"] == pytest.approx(generated - screened)
    randoms, _ = random_satisfiers(
        generator.space, TASK.constraints, run["random_candidates"], np.random.default_rng([0, 1])
    )
    zc = network_proxies(generator.space, randoms, TASK, TRAINING.rank_by, images, TRAINING.proxy_batch_size, 0)
    best = np.argsort(-rank_score(zc), kind="stable")[: TRAINING.top_k]
    assert [r["arch"] for r in run["random_screened"]] == [generator.space.to_string(randoms[i]) for i in best]
    assert [r["arch"] for r in run["random"]] == [generator.space.to_string(a) for a in randoms[: TRAINING.top_k]]


# --- cached fits and the command line ------------------------------------------------------------
def test_fit_model_caches_by_recipe(table, tmp_path):
    fit = ModelFit(str(ROOT / "configs" / "hierarchical" / "cell_encoder.yaml"), epochs=1)
    overrides = {
        "data.init_args.path": table.path,
        "data.init_args.proxies": PROXIES,
        "model.init_args.num_clusters": 2,
        "model.init_args.prior_samples": 0,
    }
    path = fit_model("cell_encoder", fit, tmp_path, overrides, upstream="t", quiet=True)
    mtime = path.stat().st_mtime_ns
    assert fit_model("cell_encoder", fit, tmp_path, overrides, upstream="t", quiet=True) == path
    assert path.stat().st_mtime_ns == mtime, "a cached fit is not redone"
    assert fit_model("cell_encoder", fit, tmp_path, overrides, upstream="other", quiet=True) != path
    model = CellEncoderModule.load_from_checkpoint(path)
    assert model.hparams.data_spec["space"]["name"] == CellSpace.name
    with pytest.raises(ConfigError, match="no such checkpoint"):
        fit_model("cell_flow", ModelFit("unused.yaml", ckpt=str(tmp_path / "missing.ckpt")), tmp_path)


def _save(model: pl.LightningModule, data: DataLoader | pl.LightningDataModule, path: Path) -> str:
    """A checkpoint as `nag fit` writes it, after one training step of a copy of ``model``."""
    _fit(copy.deepcopy(model), data, max_steps=1).save_checkpoint(path)
    return str(path)


def test_command_line_runs_the_pipeline_from_checkpoints(generator, table, images, tmp_path):
    tokenizer, space = generator.macro.tokenizer, generator.macro.tokenizer.space
    sequences = [tokenizer.encode(a, TASK.constraints) for a in space.sample(8, np.random.default_rng(0))]
    macro = _save(
        generator.macro, DataLoader(TokenDataset(tokenizer.pad(sequences)), batch_size=8), tmp_path / "macro.ckpt"
    )
    dm = ZCCellDataModule(CellSpace(), path=table.path, proxies=PROXIES, batch_size=8)
    flow = _save(generator.flow, dm, tmp_path / "flow.ckpt")
    output = tmp_path / "search.json"
    main(
        [
            "search-hierarchical",
            "--config",
            str(ROOT / "configs" / "hierarchical" / "pipeline.yaml"),
            "--macro.ckpt",
            macro,
            "--cell_flow.ckpt",
            flow,
            f"--cell_table.path={table.path}",
            f"--cell_table.images={images}",
            "--cell_table.batch_size=8",
            "--cell_table.width=8",
            f"--cell_table.proxies={json.dumps(PROXIES)}",
            f"--images={images}",
            "--task.max_params=30000",
            "--task.max_flops=3000000",
            "--generation.num_samples=8",
            "--training.top_k=1",
            "--training.epochs=1",
            "--training.train_size=64",
            "--training.test_size=64",
            "--training.proxy_batch_size=8",
            "--training.accelerator=cpu",
            f"--training.store={tmp_path / 'trainings'}",
            "--seeds=[0]",
            f"--output={output}",
            "--quiet=true",
        ]
    )
    report = json.loads(output.read_text())
    assert report["summary"]["share_after_check"] == 1.0
    assert len(report["runs"][0]["generated"]) == 1 and len(report["runs"][0]["random"]) == 1


def test_hierarchical_generator_is_a_generator(generator):
    """Through the one Generator interface: the task and budgets as conditions, samples in
    sampling order, over-budget or unbuilt networks kept as None with their reason."""
    assert isinstance(generator, Generator) and not generator.supports_guidance
    conditions = TASK.constraints._asdict()
    samples = generator.sample(generator.generation.num_samples, seed=0, conditions=conditions)
    assert len(samples) == generator.generation.num_samples
    assert all((a is None) == (e is not None) for a, e in zip(samples.archs, samples.errors))
    assert all(generator.space.satisfies(a, TASK.constraints) for a in samples.valid)
    keys = {generator.space.key(a) for a in samples.valid}
    assert keys == {generator.space.key(a) for a in generator.generate(TASK.constraints, seed=0).satisfiers}
    assert any("over budget" in e for e in samples.errors if e) or samples.validity == 1.0
    with pytest.raises(ConfigError, match=r"needs the task and its budgets .* missing \['max_flops'\]"):
        generator.sample(4, conditions={k: v for k, v in conditions.items() if k != "max_flops"})
