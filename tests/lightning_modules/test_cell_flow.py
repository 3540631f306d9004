"""CCNF: the flow's sample/log-prob consistency on 2-D Gaussians, and the cell flow built on an encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from nag.cli import main
from nag.datamodules.zc_cells import ZCCellDataModule
from nag.errors import ConfigError
from nag.generation import ModelGenerator, decode_samples
from nag.lightning_modules.cell_encoder import CellEncoderModule
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.nn.cnf import ConditionalFlowMatching
from nag.nn.vector_field import ConditionalVectorField
from nag.spaces import NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[2]
SPACE = NB201Space()
MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[0.64, 0.32], [0.32, 0.41]])


class GaussianOTField(nn.Module):
    """The exact marginal field of the OT path from N(0, I) to N(m, S) (``sigma_min = 0``):
    ``E[x1 - x0 | x_t = x] = m + (tS - (1-t)I) ((1-t)^2 I + t^2 S)^-1 (x - t m)``."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.cov = mean, cov

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        eye = torch.eye(len(self.mean))
        t = t.reshape(-1)[0]
        gain = (t * self.cov - (1 - t) * eye) @ torch.linalg.inv((1 - t) ** 2 * eye + t**2 * self.cov)
        return self.mean + (x - t * self.mean) @ gain.T


def gaussian(mean: torch.Tensor = MEAN) -> torch.distributions.MultivariateNormal:
    return torch.distributions.MultivariateNormal(mean, COV)


def test_log_prob_by_change_of_variables_is_the_analytic_density_of_the_samples():
    flow = ConditionalFlowMatching(GaussianOTField(MEAN, COV), sigma_min=0.0, solver="rk4", steps=40)
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    x = flow.sample(noise)
    assert torch.allclose(x.mean(0), MEAN, atol=0.05) and torch.allclose(torch.cov(x.T), COV, atol=0.05)
    lp, x0 = flow.log_prob(x)
    assert (lp - gaussian().log_prob(x)).abs().max() < 1e-3
    assert (x0 - noise).abs().max() < 1e-4, "integrating back must return the base sample"
    # Hutchinson's trace is unbiased: per-sample noise, same mean
    lp_h, _ = flow.log_prob(x, exact=False, generator=torch.Generator().manual_seed(1))
    diff = lp_h - lp
    assert diff.abs().max() > 1e-2
    assert diff.mean().abs() < 3 * diff.std() / math.sqrt(len(diff))


def test_density_of_any_field_integrates_to_one():
    torch.manual_seed(0)
    flow = ConditionalFlowMatching(ConditionalVectorField(2, 0, hidden=32, layers=2))
    grid = torch.linspace(-6, 6, 49)
    points = torch.cartesian_prod(grid, grid)
    lp, _ = flow.log_prob(points)
    assert float(lp.exp().sum() * (grid[1] - grid[0]) ** 2) == pytest.approx(1.0, abs=0.02)


def test_flow_matching_fits_a_conditional_2d_gaussian():
    """Data ``N(c * m, S)`` for ``c`` in {-1, +1}: the trained flow's samples and log-densities
    match the analytic ones for each condition."""
    torch.manual_seed(0)
    flow = ConditionalFlowMatching(ConditionalVectorField(2, 1, hidden=32, layers=2), sigma_min=1e-3)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 200)
    for _ in range(200):
        c = torch.randint(0, 2, (256, 1)).float() * 2 - 1
        x = c * MEAN + torch.randn(256, 2) @ torch.linalg.cholesky(COV).T
        loss = flow.loss(x, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    for sign in (-1.0, 1.0):
        c = torch.full((300, 1), sign)
        x = flow.sample(torch.randn(300, 2, generator=torch.Generator().manual_seed(2)), c)
        assert torch.allclose(x.mean(0), sign * MEAN, atol=0.15)
        lp, _ = flow.log_prob(x, c)
        assert (lp - gaussian(sign * MEAN).log_prob(x)).abs().mean() < 0.2


# --- the cell flow ---------------------------------------------------------------------------


def op_count_table(n: int = 700) -> dict[str, list]:
    archs = list(dict.fromkeys(SPACE.sample(n, np.random.default_rng(0))))
    table: dict[str, list] = {"arch": [SPACE.to_string(a) for a in archs]}
    for op in ("nor_conv_3x3", "avg_pool_3x3"):
        table[op] = [float(sum(o == op for o in a)) for a in archs]
    return table


def trainer(root, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        num_sanity_val_steps=0,
        **kwargs,
    )


def encoder_checkpoint(dm: ZCCellDataModule, path: Path, **kwargs) -> Path:
    """An (untrained) encoder, clustered and saved as `nag fit` would: its latent is still a
    deterministic function of the cell, which is all the flow's mechanics need."""
    encoder = CellEncoderModule(dm.spec(), num_clusters=3, prior_samples=0, **kwargs)
    t = trainer(path.parent, max_epochs=0)
    t.fit(encoder, dm)
    t.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def flow_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    pl.seed_everything(0)
    dm = ZCCellDataModule(SPACE, table=op_count_table(), batch_size=64)
    enc = encoder_checkpoint(dm, root / "enc.ckpt", latent_dim=8, hidden=32, encoder_layers=2, decoder_layers=1)
    flow = CellFlowModule(dm.spec(), encoder_ckpt=str(enc), hidden=64, layers=2, lr=3e-3, steps=10, val_samples=64)
    t = trainer(root, max_steps=150, check_val_every_n_epoch=1000)
    t.fit(flow, dm)
    return dm, flow, t, enc


def test_samples_repeat_under_a_seed_and_invalid_decodes_are_counted(flow_setup):
    _, flow, _, _ = flow_setup
    a = flow.sample({"nor_conv_3x3": 1.0}, num_samples=32, seed=5)
    b = flow.sample({"nor_conv_3x3": 1.0}, num_samples=32, seed=5)
    c = flow.sample({"nor_conv_3x3": 1.0}, num_samples=32, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["latent"], c["latent"])
    decoded = decode_samples(SPACE, a)
    assert len(decoded.archs) == 32
    assert all((arch is None) == (err is not None) for arch, err in zip(decoded.archs, decoded.errors))
    assert all(SPACE.is_valid(arch) for arch in decoded.valid)


def test_conditioned_latents_sit_where_cells_with_those_proxies_sit(flow_setup):
    """Given only its conv count, a sample lands among the training cells with that count."""
    dm, flow, _, _ = flow_setup
    data = dm.datasets["train"]
    with torch.no_grad():
        z = flow._standardize(flow.encoder.embed(data.x, data.adj, data.mask))
    conv = data.y[:, 0]
    levels = conv.unique()  # 0, 1, 2, 3, ... conv3x3 edges; 0 and 3 are both common
    group = {i: z[conv == levels[i]].mean(0) for i in (0, 3)}
    for i, other in ((0, 3), (3, 0)):
        sampled = flow._standardize(flow.sample({"nor_conv_3x3": float(levels[i])}, 400, seed=0)["latent"])
        assert (sampled.mean(0) - group[i]).norm() < 0.5 * (sampled.mean(0) - group[other]).norm()


def test_log_prob_prefers_the_true_condition_and_the_data(flow_setup):
    dm, flow, _, _ = flow_setup
    data = dm.datasets["val"]
    with torch.no_grad():
        z = flow.encoder.embed(data.x[:48], data.adj[:48], data.mask[:48])
    y = data.y[:48]
    true, shuffled = flow.log_prob(z, y), flow.log_prob(z, y.flip(0))
    far = flow.log_prob(z + 10 * flow.latent_std, y)
    assert torch.isfinite(true).all() and true.mean() > shuffled.mean() and (true > far).all()


def test_checkpoint_carries_the_encoder_and_samples_the_same(flow_setup, tmp_path):
    _, flow, t, enc = flow_setup
    path = tmp_path / "flow.ckpt"
    t.save_checkpoint(path)
    moved = enc.with_suffix(".moved")
    enc.rename(moved)
    try:
        loaded = CellFlowModule.load_from_checkpoint(path)
    finally:
        moved.rename(enc)
    assert torch.equal(loaded.encoder.cluster_centers, flow.encoder.cluster_centers)
    a, b = loaded.sample(None, 16, seed=3), flow.sample(None, 16, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_conditions_are_named_partial_or_raw(flow_setup):
    dm, flow, _, _ = flow_setup
    c = flow.conditions({"avg_pool_3x3": 0.5}, num_samples=4)
    assert c.shape == (4, 2) and c[:, 0].isnan().all() and (c[:, 1] == 0.5).all()
    raw = flow.conditions({"nor_conv_3x3": 3.0}, num_samples=1, raw=True)
    assert raw[0, 0] == dm.normalizer.normalize(torch.tensor([[3.0, 0.0]], dtype=torch.float64))[0, 0].float()
    with pytest.raises(ConfigError, match="unknown proxies"):
        flow.conditions({"synflow": 1.0})
    with pytest.raises(ConfigError, match="3 rows but num_samples=5"):
        flow.conditions(torch.zeros(3, 2), num_samples=5)


def test_encoder_must_match_the_data(flow_setup, tmp_path):
    dm, _, _, enc = flow_setup
    other = ZCCellDataModule(SPACE, table=op_count_table(), proxies=["nor_conv_3x3"])
    with pytest.raises(ConfigError, match="other proxies"):
        CellFlowModule(other.spec(), encoder_ckpt=str(enc))
    with pytest.raises(ConfigError, match="encoder_ckpt .*no such checkpoint"):
        CellFlowModule(dm.spec(), encoder_ckpt=str(tmp_path / "none.ckpt"))
    with pytest.raises(ConfigError, match="needs a trained CellEncoderModule"):
        CellFlowModule(dm.spec())


def test_configs_run_under_fast_dev_run(shared_data, tmp_path):
    """configs/nb201/cell_encoder.yaml, then cell_flow.yaml on an encoder of that config's data."""
    common = [
        "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/nb201/cell_encoder.yaml"),
            *common,
            "--model.init_args.prior_samples=16",
        ]
    )
    dm = ZCCellDataModule(
        NB201Space(),
        path=str(shared_data / "nb201" / "zc_proxies_cifar10.csv"),
        arch_column="net_str",
        proxies=["synflow", "snip", "grad_norm", "jacov", "nwot", "fisher", "params", "flops"],
    )
    enc = encoder_checkpoint(dm, tmp_path / "enc.ckpt", latent_dim=16, hidden=64)
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/nb201/cell_flow.yaml"),
            *common,
            f"--model.init_args.encoder_ckpt={enc}",
            "--model.init_args.val_samples=16",
            "--model.init_args.logprob_samples=4",
        ]
    )


def test_generator_conditions_are_range_checked_like_every_generator(flow_setup):
    """Through the Generator interface the flow takes one ``Conditions`` value: raw units,
    refused outside the training range (six conv edges: the training cells have at most
    six), unless ``extrapolate``; inside it, the same cells as the flow's own raw call."""
    _, flow, _, _ = flow_setup
    generator = ModelGenerator(flow, SPACE)
    inside = generator.sample(8, seed=1, conditions={"nor_conv_3x3": 2.0})
    direct = decode_samples(SPACE, flow.sample({"nor_conv_3x3": 2.0}, 8, seed=1, raw=True))
    assert inside.archs == direct.archs
    with pytest.raises(ConfigError, match=r"conditions\['nor_conv_3x3'\] = 9 lies outside the training range"):
        generator.sample(8, seed=1, conditions={"nor_conv_3x3": 9.0})
    assert len(ModelGenerator(flow, SPACE, extrapolate=True).sample(8, seed=1, conditions={"nor_conv_3x3": 9.0})) == 8
