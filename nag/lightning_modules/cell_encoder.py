"""ZC-metric cell encoder: a graph VAE whose latent distances follow zero-cost-proxy distances."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, SpearmanCorrCoef

from nag.errors import ConfigError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.nn.graph_vae import GraphVAE, kl_to_standard_normal


def kmeans(points: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; returns ``(centers [k, D], labels [n])``.

    Deterministic under ``seed``. An emptied cluster is re-seeded at the point farthest
    from its center, so exactly ``k`` clusters come back whenever ``n >= k``.
    """
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ConfigError(f"model.num_clusters={k} must be between 1 and the {n} training cells")
    g = torch.Generator().manual_seed(seed)
    pts = points.detach().double().cpu()
    centers = pts[torch.randint(n, (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(pts, centers).min(1).values.pow(2)
        centers = torch.cat([centers, pts[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    labels = torch.cdist(pts, centers).argmin(1)
    for _ in range(iters):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, pts)
        new = sums / counts.clamp_min(1).unsqueeze(1).double()
        for j in torch.nonzero(counts == 0).flatten().tolist():
            new[j] = pts[torch.cdist(pts, new).min(1).values.argmax()]
        new_labels = torch.cdist(pts, new).argmin(1)
        centers = new
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centers.to(points.dtype), labels


def distance_matching_loss(latent: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
    """Squared error between the batch's pairwise latent and ZC distances, each divided by
    its batch mean: the shape of the metric is matched while its scale is left to the KL."""
    dz, dc = torch.pdist(latent), torch.pdist(zc)
    return F.mse_loss(dz / dz.mean().clamp_min(1e-8), dc / dc.mean().clamp_min(1e-8))


class CellEncoderModule(pl.LightningModule):
    """Graph VAE over cells (``ZCCellDataModule``) with a latent shaped by ZC similarity.

    Loss = reconstruction NLL + ``beta`` KL + ``metric_weight`` distance matching between
    latent means and normalised ZC vectors + ``zc_weight`` MSE of a ZC regression head on
    the latent means. The metric term is what makes a conditional flow on this latent
    meaningful: cells with similar proxies sit close, so a ZC target picks a region.

    At fit start the training cells' ZC vectors are clustered into ``num_clusters`` groups
    (k-means); centers (normalised ZC units) and sizes are buffers saved in the checkpoint,
    for the macro level to pick a cell family by cluster id.

    Metrics (val/test): ``recon_acc`` (share of cells decoded exactly from their mean),
    ``latent_zc_spearman`` (pairwise latent vs. ZC distances), ``zc_spearman`` (the head's
    predictions, mean over proxies) and, each validation epoch, ``prior_validity`` (share
    of decodes of ``z ~ N(0, I)`` that are cells of the space).
    """

    def __init__(
        self,
        data_spec: dict[str, Any],
        latent_dim: int = 16,
        hidden: int = 64,
        encoder_layers: int = 3,
        decoder_layers: int = 2,
        heads: int = 4,
        beta: float = 0.01,
        metric_weight: float = 1.0,
        zc_weight: float = 1.0,
        num_clusters: int = 8,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        prior_samples: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if "proxies" not in data_spec:
            raise ConfigError("model: CellEncoderModule needs cells with ZC vectors; use data: ZCCellDataModule")
        self.save_hyperparameters()
        self.proxies = list(data_spec["proxies"])
        fixed = data_spec.get("fixed_adjacency")
        self.vae = GraphVAE(
            data_spec["num_ops"],
            data_spec["max_nodes"],
            latent_dim,
            hidden,
            encoder_layers,
            decoder_layers,
            heads,
            fixed_adj=torch.tensor(fixed, dtype=torch.float32) if fixed is not None else None,
        )
        p = len(self.proxies)
        self.zc_head = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, p))
        self.register_buffer("cluster_centers", torch.zeros(num_clusters, p))
        self.register_buffer("cluster_sizes", torch.zeros(num_clusters, dtype=torch.long))
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "recon_acc": MeanMetric(),
                        "latent_zc_spearman": SpearmanCorrCoef(),
                        "zc_spearman": SpearmanCorrCoef(num_outputs=p),
                    }
                )
                for stage in ("val", "test")
            }
        )

    # --- encoding / decoding -----------------------------------------------------------
    def embed(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Latent means ``[B, latent_dim]``: the cells' coordinates in the ZC-shaped space."""
        return self.vae.encode(x, adj, mask)[0]

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hard graphs ``{x, adj, mask}`` for latents; decode with ``nag.generation.decode_samples``."""
        return self.vae.decode(z)

    def predict_zc(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised ZC vectors ``[B, P]`` predicted from latents."""
        return self.zc_head(z)

    def sample_prior(self, num_samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, self.hparams.latent_dim, generator=g).to(self.device)
        return {**self.decode(z), "latent": z}

    def assign_clusters(self, zc: torch.Tensor) -> torch.Tensor:
        """Cluster id of each normalised ZC vector ``[B, P]`` (nearest center)."""
        return torch.cdist(zc.to(self.cluster_centers), self.cluster_centers).argmin(-1)

    # --- training ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "normalized"):
            raise ConfigError("data: CellEncoderModule clusters the training cells' ZC vectors; use ZCCellDataModule")
        centers, labels = kmeans(dm.normalized("train"), self.hparams.num_clusters, seed=self.hparams.seed)
        self.cluster_centers.copy_(centers)
        self.cluster_sizes.copy_(torch.bincount(labels, minlength=self.hparams.num_clusters))

    def _losses(self, batch: dict[str, torch.Tensor], sample: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mu, logvar = self.vae.encode(batch["x"], batch["adj"], batch["mask"])
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        recon = self.vae.reconstruction_loss(self.vae.decode_logits(z), batch["x"], batch["adj"], batch["mask"])
        kl = kl_to_standard_normal(mu, logvar)
        metric = distance_matching_loss(mu, batch["y"]) if mu.shape[0] > 2 else mu.sum() * 0
        zc = F.mse_loss(self.zc_head(mu), batch["y"])
        h = self.hparams
        loss = recon + h.beta * kl + h.metric_weight * metric + h.zc_weight * zc
        return {"loss": loss, "recon": recon, "kl": kl, "metric": metric, "zc_mse": zc}, mu

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        parts, _ = self._losses(batch, sample=True)
        ensure_finite(parts["loss"], "training loss", self.global_step)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=False, batch_size=batch["y"].shape[0])
        return parts["loss"]

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        parts, mu = self._losses(batch, sample=False)
        n = batch["y"].shape[0]
        self.log_dict({f"{stage}/{k}": v for k, v in parts.items()}, batch_size=n, sync_dist=True)
        m = self.metrics[stage]
        m["recon_acc"].update(self.vae.exact_matches(mu, batch["x"], batch["adj"], batch["mask"]).float())
        if n > 1:
            m["latent_zc_spearman"].update(torch.pdist(mu), torch.pdist(batch["y"]))
            m["zc_spearman"].update(self.zc_head(mu), batch["y"])
        self.log(f"{stage}/recon_acc", m["recon_acc"], batch_size=n, prog_bar=stage == "val")
        self.log(f"{stage}/latent_zc_spearman", m["latent_zc_spearman"], batch_size=n, prog_bar=stage == "val")

    def _log_epoch_end(self, stage: str) -> None:
        metric = self.metrics[stage]["zc_spearman"]
        if metric.update_count:
            self.log(f"{stage}/zc_spearman", metric.compute().mean())
        metric.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_end("val")
        space = getattr(self.trainer.datamodule, "space", None)
        if space is not None and self.hparams.prior_samples > 0:
            graphs = self.sample_prior(self.hparams.prior_samples, self.hparams.seed)
            decoded = [space.decodes(x, a, m) for x, a, m in zip(graphs["x"], graphs["adj"], graphs["mask"])]
            self.log("val/prior_validity", sum(decoded) / len(decoded))

    def on_test_epoch_end(self) -> None:
        self._log_epoch_end("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
