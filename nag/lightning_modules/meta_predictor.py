"""Meta-predictor: f(architecture, task) -> score, transferable to a task it never trained on.

DiffusionNAG's meta-predictor reads a task encoding. The task encoder is pluggable
(``task_encoder``): ``"context"`` encodes the archs already measured on the task (a context
set of (arch, score) pairs), which exists for every benchmark and grows as a transfer search
measures more; ``"dataset"`` encodes a sample of the task's images per class (image tasks of
:class:`~nag.datamodules.image_task.ImageTaskDataModule`), known before anything is
measured; ``"none"`` gives every task the zero vector (a plain predictor on the pooled
tasks, the baseline either encoder has to beat).

Public API for search loops (predictions are in per-task normalised units; only their
order means anything on an unseen task):

* ``encode_context(ctx_x, ctx_adj, ctx_mask, ctx_y, valid)`` -> task vector ``[B, hidden]``;
  ``ctx_y`` may be raw or normalised (it is z-scored within the context); a context with no
  valid item gives the learned "unknown task" vector (``task_encoder="context"``).
* ``encode_images(images, class_mask)`` -> task vector ``[B, hidden]`` from
  ``[B, M, n, C, H, W]`` images of each task's classes (``task_encoder="dataset"``).
* ``encode_task(batch)`` -> task vectors of a batch of episodes through the configured encoder.
* ``predict_state(state, t, task_vec)`` -> ``[B]`` for a signed diffusion state at time
  ``t`` (guidance).
* ``predict_graphs(x, adj, mask, task_vec)`` -> ``[B]`` for clean encoded archs (ranking).

``task_vec`` of shape ``[1, hidden]`` broadcasts against a batch of ``B`` queries.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef

from nag.diffusion.graph_state import (
    State,
    clean_state,
    diffused_entries,
    encoder_inputs,
    perturb_state,
    sample_times,
)
from nag.diffusion.sde import SDE, make_sde
from nag.errors import ConfigError, NagError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.lightning_modules.predictor import pairwise_ranking_loss
from nag.nn.context_encoder import ContextSetEncoder
from nag.nn.dag_gnn import BiDirectionalDenseGNN
from nag.nn.dataset_encoder import DatasetEncoder
from nag.nn.embeddings import TimeEmbedding

_RANK_METRICS = {"spearman": spearman_corrcoef, "kendall": kendall_rank_corrcoef}


class MetaPredictorModule(pl.LightningModule):
    """Scores query archs given a context set of measured (arch, score) pairs of one task.

    Trained on episodes of :class:`~nag.datamodules.task.TaskDataModule` (all tasks but
    ``data_spec["held_out"]``), each keeping a random ``[min_context, K]`` of its context
    items, so one model works from zero to ``K`` measured archs. Loss: MSE plus
    ``rank_weight`` x pairwise ranking loss per episode. With ``noise_aware`` the queries
    are noised by the generator's SDE at a random time (as in
    :class:`~nag.lightning_modules.predictor.PredictorModule`), so guidance can
    differentiate it along the reverse process; context archs are measured, hence clean.
    ``clean_fraction`` of the queries stay clean (``t = eps``): a search ranking a pool reads
    clean archs, and a model trained on noised ones only put NB201 CIFAR-10's optimum at
    rank 35 of the pool instead of 1 (10 epochs).

    The head reads ``[arch, task, arch * gate(task), time]``: the task re-weights the arch
    features multiplicatively (a per-task ranking direction). With concatenation alone the
    head would have to learn that product; in short meta-training runs it instead learned
    to ignore the context (its task vectors collapsed to a constant).

    With ``task_encoder="dataset"`` the task vector comes from the episode's images instead
    (:class:`~nag.nn.dataset_encoder.DatasetEncoder`, ``cnn_channels`` wide, its CNN frozen
    at a seeded random init unless ``train_cnn``), on episodes of
    :class:`~nag.datamodules.image_task.ImageTaskDataModule`; ``"none"`` zeroes it.
    """

    def __init__(
        self,
        data_spec: dict[str, Any],
        hidden: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        rank_weight: float = 0.5,
        min_context: int = 0,
        noise_aware: bool = False,
        clean_fraction: float = 0.5,
        sde: Literal["ve", "vp"] = "vp",
        sigma_min: float = 0.01,
        sigma_max: float = 5.0,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        eps: float = 1e-5,
        task_encoder: Literal["context", "dataset", "none"] = "context",
        cnn_channels: int = 16,
        train_cnn: bool = True,
    ) -> None:
        super().__init__()
        tasks, held_out = data_spec.get("tasks"), data_spec.get("held_out")
        if not tasks or held_out not in tasks:
            raise NagError(
                "model: the meta-predictor needs a task datamodule (data: TaskDataModule) "
                "whose spec names its tasks and held_out task"
            )
        if min_context < 0:
            raise ConfigError(f"model.min_context={min_context} must be >= 0")
        if not 0.0 <= clean_fraction <= 1.0:
            raise ConfigError(f"model.clean_fraction={clean_fraction} must be in [0, 1]")
        if task_encoder not in ("context", "dataset", "none"):
            raise ConfigError(f"model.task_encoder={task_encoder!r}: expected context, dataset or none")
        if task_encoder == "dataset" and "image_channels" not in data_spec:
            raise ConfigError(
                "model.task_encoder=dataset reads each task's images: use "
                "data: nag.datamodules.image_task.ImageTaskDataModule, or task_encoder: context"
            )
        self.sde: SDE = make_sde(sde, sigma_min, sigma_max, beta_min, beta_max)
        self.save_hyperparameters()
        self.held_out_id = list(tasks).index(held_out)
        #: The state entries score diffusion generates: a noise-aware predictor reads the same state.
        self.entries = diffused_entries(data_spec)
        fixed = data_spec.get("fixed_adjacency")
        self.register_buffer("fixed_adj", torch.tensor(fixed, dtype=torch.float32) if fixed is not None else None)
        self.encoder = BiDirectionalDenseGNN(data_spec["num_ops"], hidden, num_layers, dropout)
        if task_encoder == "context":
            self.context = ContextSetEncoder(self.encoder.out_dim, hidden)
        elif task_encoder == "dataset":
            self.dataset_encoder = DatasetEncoder(data_spec["image_channels"], hidden, cnn_channels, train_cnn)
        self.time_embed = TimeEmbedding(hidden) if noise_aware else None
        self.task_gate = nn.Linear(hidden, self.encoder.out_dim)
        head_in = 2 * self.encoder.out_dim + hidden + (hidden if noise_aware else 0)
        self.head = nn.Sequential(
            nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric(nan_strategy="ignore")
                for stage in ("val", "test")
                for name in _RANK_METRICS
            }
        )

    # --- public API -------------------------------------------------------------------
    def encode_context(
        self,
        ctx_x: torch.Tensor,
        ctx_adj: torch.Tensor,
        ctx_mask: torch.Tensor,
        ctx_y: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Task vectors ``[B, hidden]`` from ``[B, K, ...]`` measured archs; ``valid [B, K]``
        (default: all) marks the items that count. Only valid archs are encoded."""
        self._require_encoder("context", "encode_context")
        b, k = ctx_y.shape
        valid = torch.ones(b, k, dtype=torch.bool, device=ctx_y.device) if valid is None else valid.bool()
        emb = ctx_x.new_zeros(b, k, self.encoder.out_dim)
        if bool(valid.any()):
            emb = emb.index_put(
                valid.nonzero(as_tuple=True),
                self._embed_clean(ctx_x[valid], ctx_adj[valid], ctx_mask[valid]).to(emb.dtype),
            )
        return self.context(emb, ctx_y, valid)

    def encode_images(self, images: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
        """Task vectors ``[B, hidden]`` from ``images [B, M, n, C, H, W]`` (``n`` images of each
        of ``M`` class slots, standardised as the datamodule does) and ``class_mask [B, M]``."""
        self._require_encoder("dataset", "encode_images")
        return self.dataset_encoder(images, class_mask)

    def encode_task(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        """Task vectors ``[B, hidden]`` of a batch of episodes through the configured encoder;
        ``training`` drops context items at random (context encoder only)."""
        encoder = self.hparams.task_encoder
        if encoder == "context":
            valid = self._context_valid(batch) if training else None
            return self.encode_context(batch["ctx_x"], batch["ctx_adj"], batch["ctx_mask"], batch["ctx_y"], valid)
        if encoder == "dataset":
            return self.encode_images(batch["images"], batch["class_mask"])
        return batch["y"].new_zeros(batch["y"].shape[0], self.hparams.hidden)

    def predict_state(self, state: State, t: torch.Tensor, task_vec: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of a signed diffusion state at time ``t`` (``[B]``) for guidance."""
        return self(*encoder_inputs(state, self.fixed_adj), task_vec, t)

    def predict_graphs(
        self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor, task_vec: torch.Tensor
    ) -> torch.Tensor:
        """Scores ``[B]`` of clean encoded archs, read exactly as training reads them."""
        return self.score_embeddings(self._embed_clean(x, adj, mask), task_vec)

    def embed_graphs(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Task-independent embeddings ``[B, D]`` of clean archs: a search scoring a fixed pool
        under a changing task vector embeds the pool once."""
        return self._embed_clean(x, adj, mask)

    def score_embeddings(self, h: torch.Tensor, task_vec: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B]`` from embeddings; ``t`` (noise-aware only) defaults to ``eps`` (clean)."""
        task_vec = task_vec.to(h.dtype).expand(h.shape[0], -1)
        parts = [h, task_vec, h * self.task_gate(task_vec)]
        if self.time_embed is not None:
            parts.append(self.time_embed(self._eps_times(h.shape[0]) if t is None else t).to(h.dtype))
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)

    # --- internals --------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        adj: torch.Tensor,
        mask: torch.Tensor,
        task_vec: torch.Tensor,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``[B]``; ``task_vec`` is ``[B or 1, hidden]``; ``t`` is read only when noise-aware."""
        return self.score_embeddings(self.encoder(x, adj, mask), task_vec, t)

    def _require_encoder(self, kind: str, method: str) -> None:
        if self.hparams.task_encoder != kind:
            raise NagError(
                f"{method} needs model.task_encoder={kind}; this model's is "
                f"{self.hparams.task_encoder!r} (use encode_task)"
            )

    def _eps_times(self, n: int) -> torch.Tensor:
        return torch.full((n,), self.hparams.eps, device=self.device)

    def _embed_clean(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Context archs through the same representation path as clean queries."""
        if self.hparams.noise_aware:
            state, _ = clean_state({"x": x, "adj": adj}, self.entries)
            x, adj, mask = encoder_inputs(state, self.fixed_adj)
        return self.encoder(x, adj, mask)

    def _context_valid(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A uniformly random subset of ``[min_context, K]`` context items per episode."""
        b, k = batch["ctx_y"].shape
        lo = self.hparams.min_context
        if lo > k:
            raise ConfigError(f"model.min_context={lo} exceeds the episodes' context size {k} (data.context_size)")
        keep = torch.randint(lo, k + 1, (b, 1), device=self.device)
        rank = torch.rand(b, k, device=self.device).argsort(1).argsort(1)
        return rank < keep

    def _predict_episodes(self, batch: dict[str, torch.Tensor], training: bool) -> torch.Tensor:
        """Scores ``[B, Q]`` of every episode's queries; training drops context items and,
        when noise-aware, noises the queries at random times."""
        task_vec = self.encode_task(batch, training)
        b, q = batch["y"].shape
        x, adj, mask = (batch[k].flatten(0, 1) for k in ("x", "adj", "mask"))
        task_vec = task_vec.repeat_interleave(q, dim=0)
        if training and self.hparams.noise_aware:
            state, masks = clean_state({"x": x, "adj": adj}, self.entries)
            t = sample_times(b * q, self.sde, self.hparams.eps, self.device)
            clean = torch.rand(b * q, device=self.device) < self.hparams.clean_fraction
            t = torch.where(clean, torch.full_like(t, self.hparams.eps), t)
            state, _ = perturb_state(state, masks, self.sde, t)
            pred = self.predict_state(state, t, task_vec)
        else:
            pred = self.predict_graphs(x, adj, mask, task_vec)
        return pred.view(b, q)

    def _check_no_held_out(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        """The held-out task must never train or select the model, or transfer is not measured."""
        if bool((batch["task"] == self.held_out_id).any()):
            raise NagError(
                f"{stage} batch holds episodes of the held-out task {self.hparams.data_spec['held_out']!r} "
                f"(id {self.held_out_id}); meta-train only on the other tasks (TaskDataModule.train_dataloader)"
            )

    def _loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(pred, y)
        if self.hparams.rank_weight > 0:
            rank = torch.stack([pairwise_ranking_loss(p, t) for p, t in zip(pred, y)]).mean()
            loss = loss + self.hparams.rank_weight * rank
        return loss

    # --- Lightning hooks --------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self._check_no_held_out(batch, "training")
        pred = self._predict_episodes(batch, training=True).float()
        loss = ensure_finite(self._loss(pred, batch["y"]), "training loss", self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        """Rank correlations per episode (the unit a search ranks within), averaged;
        an episode whose queries all score the same has no ranking and is skipped."""
        pred = self._predict_episodes(batch, training=False).float()
        y, n = batch["y"], batch["y"].shape[0]
        self.log(f"{stage}/loss", self._loss(pred, y), batch_size=n, sync_dist=True)
        for name, fn in _RANK_METRICS.items():
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(fn(pred.T, y.T).reshape(-1))
            self.log(f"{stage}/{name}", metric, batch_size=n, prog_bar=stage == "val" and name == "spearman")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._check_no_held_out(batch, "validation")
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
