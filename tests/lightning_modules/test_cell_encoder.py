"""ZC-metric graph VAE: reconstruction, latent geometry following ZC distances, clusters, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torchmetrics.functional import spearman_corrcoef

from nag.datamodules.zc_cells import ZCCellDataModule
from nag.errors import ConfigError
from nag.generation import decode_samples
from nag.lightning_modules.cell_encoder import (
    CellEncoderModule,
    distance_matching_loss,
    kmeans,
)
from nag.nn.graph_vae import GraphVAE
from nag.spaces import NB101Space, NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")
SPACE = NB201Space()
OPS = ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")


def op_count_table(n: int = 700, seed: int = 0) -> dict[str, list]:
    """Made-up ZC proxies that depend on the cell: how many edges carry each op type."""
    archs = list(dict.fromkeys(SPACE.sample(n, np.random.default_rng(seed))))
    table: dict[str, list] = {"arch": [SPACE.to_string(a) for a in archs]}
    for op in OPS:
        table[op] = [float(sum(o == op for o in a)) for a in archs]
    return table


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[ZCCellDataModule, CellEncoderModule, dict]:
    pl.seed_everything(0)
    dm = ZCCellDataModule(SPACE, table=op_count_table(), batch_size=32, seed=0)
    model = CellEncoderModule(
        dm.spec(),
        latent_dim=16,
        hidden=64,
        encoder_layers=2,
        decoder_layers=1,
        num_clusters=4,
        lr=3e-3,
        prior_samples=64,
    )
    t = trainer(tmp_path_factory.mktemp("enc"), max_epochs=8)
    t.fit(model, dm)
    return dm, model, t.validate(model, dm, verbose=False)[0]


def test_learns_to_reconstruct_held_out_cells_and_to_follow_zc_distances(trained):
    _, _, metrics = trained
    # an untrained model scores 0 / ~0.05 / ~0.2 here; 8 short epochs reach ~0.35-0.5 / ~0.5 / ~0.92
    assert metrics["val/recon_acc"] > 0.25
    assert metrics["val/latent_zc_spearman"] > 0.35
    assert metrics["val/zc_spearman"] > 0.8
    assert 0.0 <= metrics["val/prior_validity"] <= 1.0


def test_distance_matching_makes_latent_distances_rank_like_zc_distances():
    g = torch.Generator().manual_seed(0)
    zc = torch.randn(40, 3, generator=g)
    latent = torch.randn(40, 8, generator=g, requires_grad=True)
    before = spearman_corrcoef(torch.pdist(latent.detach()), torch.pdist(zc))
    opt = torch.optim.Adam([latent], lr=0.05)
    for _ in range(200):
        loss = distance_matching_loss(latent, zc)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = spearman_corrcoef(torch.pdist(latent.detach()), torch.pdist(zc))
    assert before < 0.3 and after > 0.95
    # only the shape of the metric is matched: scaling the ZC vectors changes nothing
    with torch.no_grad():
        assert float(distance_matching_loss(latent, 10 * zc)) == pytest.approx(
            float(distance_matching_loss(latent, zc)), rel=1e-5
        )


def test_decoded_means_are_the_held_out_cells(trained):
    dm, model, metrics = trained
    archs = dm.archs("val")
    x, adj, mask = SPACE.encode_batch(archs)
    model.eval()
    with torch.no_grad():
        decoded = decode_samples(SPACE, model.decode(model.embed(x, adj, mask)))
    exact = np.mean([a == b for a, b in zip(decoded.archs, archs)])
    assert exact == pytest.approx(metrics["val/recon_acc"], abs=1e-6)


def test_clusters_partition_the_training_cells_and_survive_the_checkpoint(trained, tmp_path):
    dm, model, _ = trained
    zc = dm.normalized("train")
    centers, labels = kmeans(zc, 4, seed=model.hparams.seed)
    assert torch.allclose(model.cluster_centers, centers)
    assert int(model.cluster_sizes.sum()) == len(dm.archs("train"))
    assert torch.equal(model.assign_clusters(zc), labels)
    t = trainer(tmp_path, max_epochs=0)
    t.fit(model, dm)  # attaches the trainer, so save_checkpoint can write; no training step
    path = tmp_path / "enc.ckpt"
    t.save_checkpoint(path)
    loaded = CellEncoderModule.load_from_checkpoint(path)
    assert torch.equal(loaded.cluster_centers, model.cluster_centers)
    assert loaded.hparams.data_spec["proxy_stats"] == dm.proxy_stats


def test_kmeans_finds_separated_blobs_whatever_the_seed():
    g = torch.Generator().manual_seed(0)
    truth = torch.arange(3).repeat_interleave(50)
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[truth] + torch.randn(150, 2, generator=g)
    for seed in range(3):
        _, labels = kmeans(points, 3, seed=seed)
        pairs = {(int(a), int(b)) for a, b in zip(truth, labels)}
        assert len(pairs) == 3
    with pytest.raises(ConfigError, match="num_clusters=200"):
        kmeans(points, 200)


def test_decoder_handles_graphs_of_varying_size_and_topology():
    """NB101 cells have 5-7 nodes and their own edges: node presence and edges are decoded too."""
    torch.manual_seed(0)
    space = NB101Space()
    archs = space.sample(8, np.random.default_rng(0))
    x, adj, mask = space.encode_batch(archs)
    assert not mask.all(), "the sample should include a cell smaller than max_nodes"
    vae = GraphVAE(space.num_ops, space.max_nodes, latent_dim=8, hidden=32, encoder_layers=2, decoder_layers=1)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(100):
        mu, _ = vae.encode(x, adj, mask)
        loss = vae.reconstruction_loss(vae.decode_logits(mu), x, adj, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mu, _ = vae.encode(x, adj, mask)
        assert vae.exact_matches(mu, x, adj, mask).all()
        assert decode_samples(space, vae.decode(mu)).archs == archs
        # whatever the latent, a decoded graph's real nodes come first, as every space encodes them
        mask = vae.decode(torch.randn(256, 8, generator=torch.Generator().manual_seed(0)))["mask"]
        assert (mask.long().diff(dim=-1) <= 0).all() and not mask.all()


def test_needs_cells_with_zc_vectors():
    spec = {"space": SPACE.identity, "num_ops": SPACE.num_ops, "max_nodes": SPACE.max_nodes, "targets": []}
    with pytest.raises(ConfigError, match="ZCCellDataModule"):
        CellEncoderModule(spec)
