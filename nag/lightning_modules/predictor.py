"""Performance predictor: architecture graph -> one or more named benchmark metrics."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import (
    KendallRankCorrCoef,
    MeanSquaredError,
    MetricCollection,
    SpearmanCorrCoef,
)

from nag.diffusion.graph_state import (
    clean_state,
    diffused_entries,
    encoder_inputs,
    perturb_state,
    sample_times,
)
from nag.diffusion.sde import SDE, make_sde
from nag.errors import NagError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.nn.dag_gnn import BiDirectionalDenseGNN
from nag.nn.embeddings import TimeEmbedding


def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge loss on every ordered pair in the batch: search only needs the ranking right."""
    dp = pred.unsqueeze(0) - pred.unsqueeze(1)
    sign = torch.sign(target.unsqueeze(0) - target.unsqueeze(1))
    return torch.relu(margin - sign * dp)[sign != 0].mean() if bool((sign != 0).any()) else pred.sum() * 0


class PredictorModule(pl.LightningModule):
    """Regresses normalised targets with MSE (+ optional pairwise ranking loss).

    ``data_spec`` (the datamodule's ``spec()``, linked by the CLI) is saved in the checkpoint,
    so a loaded predictor knows its search space and reports metrics in the benchmark's units.

    With ``noise_aware`` the predictor reads graphs noised by the SDE named by ``sde`` and
    σ/β (the generator's own), at a time it is told: guidance differentiates it along the
    whole reverse process, where a predictor of clean graphs would see only inputs it never
    trained on. Validation and test then score clean graphs (``t = eps``).
    """

    def __init__(
        self,
        data_spec: dict[str, Any],
        hidden: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        rank_weight: float = 0.0,
        noise_aware: bool = False,
        sde: Literal["ve", "vp"] = "vp",
        sigma_min: float = 0.01,
        sigma_max: float = 5.0,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        targets, stats = data_spec["targets"], data_spec["target_stats"]
        if not targets:
            raise NagError("model: the predictor needs at least one data.targets metric to learn")
        self.sde: SDE = make_sde(sde, sigma_min, sigma_max, beta_min, beta_max)
        self.save_hyperparameters()
        self.targets = list(targets)
        #: The state entries score diffusion generates: a noise-aware predictor reads the same state.
        self.entries = diffused_entries(data_spec)
        fixed = data_spec.get("fixed_adjacency")
        self.register_buffer("fixed_adj", torch.tensor(fixed, dtype=torch.float32) if fixed is not None else None)
        self.encoder = BiDirectionalDenseGNN(data_spec["num_ops"], hidden, num_layers, dropout)
        self.time_embed = TimeEmbedding(hidden) if noise_aware else None
        head_in = self.encoder.out_dim + (hidden if noise_aware else 0)
        self.head = nn.Sequential(nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, len(targets)))
        self.register_buffer("mean", torch.tensor([stats[t]["mean"] for t in targets]))
        self.register_buffer("std", torch.tensor([stats[t]["std"] for t in targets]))
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        t: MetricCollection(
                            {
                                "spearman": SpearmanCorrCoef(),
                                "kendall": KendallRankCorrCoef(),
                                "mse": MeanSquaredError(),
                            },
                            prefix=f"{stage}/{t}_",
                        )
                        for t in targets
                    }
                )
                for stage in ("val", "test")
            }
        )

    def forward(
        self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised predictions ``[B, T]``; ``t`` (``[B]``) is read only when noise-aware."""
        h = self.encoder(x, adj, mask)
        if self.time_embed is not None:
            t = torch.full((x.shape[0],), self.hparams.eps, device=x.device) if t is None else t
            h = torch.cat([h, self.time_embed(t)], dim=-1)
        return self.head(h)

    def predict_state(self, state: dict[str, torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        """Normalised predictions for a signed diffusion state at time ``t`` (guidance)."""
        return self(*encoder_inputs(state, self.fixed_adj), t)

    def predict_graphs(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised predictions ``[B, T]`` for clean encoded archs (ranking candidates)."""
        return self._predict_batch({"x": x, "adj": adj, "mask": mask})

    def _predict_batch(self, batch: dict[str, torch.Tensor], noised: bool = False) -> torch.Tensor:
        """Clean batches go through the diffusion-state path when noise-aware, so training
        and guidance read one representation; ``noised`` draws ``t`` and ``x_t`` first."""
        if not self.hparams.noise_aware:
            return self(batch["x"], batch["adj"], batch["mask"])
        state, masks = clean_state(batch, self.entries)
        b = batch["x"].shape[0]
        if noised:
            t = sample_times(b, self.sde, self.hparams.eps, self.device)
            state, _ = perturb_state(state, masks, self.sde, t)
        else:
            t = torch.full((b,), self.hparams.eps, device=self.device)
        return self.predict_state(state, t)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean

    def _loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(pred, y)
        if self.hparams.rank_weight > 0:
            loss = loss + self.hparams.rank_weight * sum(
                pairwise_ranking_loss(pred[:, j], y[:, j]) for j in range(y.shape[1])
            )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self._predict_batch(batch, noised=True)
        loss = ensure_finite(self._loss(pred.float(), batch["y"]), "training loss", self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        pred = self._predict_batch(batch).float()
        n = batch["y"].shape[0]
        self.log(f"{stage}/loss", self._loss(pred, batch["y"]), batch_size=n, sync_dist=True)
        pred, true = self.denormalize(pred), self.denormalize(batch["y"])
        for j, t in enumerate(self.targets):
            metrics = self.metrics[stage][t]
            metrics.update(pred[:, j], true[:, j])
            self.log_dict(metrics, batch_size=n, prog_bar=j == 0 and stage == "val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Predictions in the benchmark's units, ``[B, T]`` in ``self.targets`` order."""
        return self.denormalize(self._predict_batch(batch).float())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
