"""Performance predictor: architecture graph -> one or more named benchmark metrics."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import KendallRankCorrCoef, MeanSquaredError, MetricCollection, SpearmanCorrCoef

from nag.errors import NagError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.nn.dag_gnn import BiDirectionalDenseGNN


def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge loss on every ordered pair in the batch: search only needs the ranking right."""
    dp = pred.unsqueeze(0) - pred.unsqueeze(1)
    sign = torch.sign(target.unsqueeze(0) - target.unsqueeze(1))
    return torch.relu(margin - sign * dp)[sign != 0].mean() if bool((sign != 0).any()) else pred.sum() * 0


class PredictorModule(pl.LightningModule):
    """Regresses normalised targets with MSE (+ optional pairwise ranking loss).

    ``data_spec`` (the datamodule's ``spec()``, linked by the CLI) is saved in the checkpoint,
    so a loaded predictor knows its search space and reports metrics in the benchmark's units.
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
    ) -> None:
        super().__init__()
        targets, stats = data_spec["targets"], data_spec["target_stats"]
        if not targets:
            raise NagError("model: the predictor needs at least one data.targets metric to learn")
        self.save_hyperparameters()
        self.targets = list(targets)
        self.encoder = BiDirectionalDenseGNN(data_spec["num_ops"], hidden, num_layers, dropout)
        self.head = nn.Sequential(nn.Linear(self.encoder.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, len(targets)))
        self.register_buffer("mean", torch.tensor([stats[t]["mean"] for t in targets]))
        self.register_buffer("std", torch.tensor([stats[t]["std"] for t in targets]))
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        t: MetricCollection(
                            {"spearman": SpearmanCorrCoef(), "kendall": KendallRankCorrCoef(), "mse": MeanSquaredError()},
                            prefix=f"{stage}/{t}_",
                        )
                        for t in targets
                    }
                )
                for stage in ("val", "test")
            }
        )

    def forward(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised predictions ``[B, T]``."""
        return self.head(self.encoder(x, adj, mask))

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
        pred = self(batch["x"], batch["adj"], batch["mask"])
        loss = ensure_finite(self._loss(pred.float(), batch["y"]), "training loss", self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        pred = self(batch["x"], batch["adj"], batch["mask"]).float()
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
        return self.denormalize(self(batch["x"], batch["adj"], batch["mask"]).float())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
