"""DiffusionNAG's generator: score-based (SDE) diffusion over architecture graphs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.optim.swa_utils import AveragedModel

from nag.diffusion.graph_state import clean_state, perturb_state, sample_times
from nag.diffusion.guidance import GuidanceTerm, guided_score
from nag.diffusion.samplers import ode_sample, pc_sample
from nag.diffusion.sde import SDE, make_sde
from nag.errors import NagError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.nn.dag_transformer import AttentionMode, DagTransformer, dag_attention_mask


class ScoreDiffusionModule(pl.LightningModule):
    """Learns ``grad log p_t`` of architecture graphs by denoising score matching.

    Node ops ``X`` are always diffused; the adjacency ``A`` too when the search space's
    topology varies (NB101, NB-Graph), else it is the space's fixed graph and only
    conditions attention. The network predicts the unit noise ``z`` of
    ``x_t = mean(t) + std(t) z``, so ``score = -z_hat / std(t)``. Validation and sampling use
    the EMA weights. The SDE is built from the hyper-parameters alone (``sde``, σ/β), which
    the checkpoint stores and ``nag generate`` rebuilds from: one place, never two configs.
    """

    def __init__(
        self,
        data_spec: dict[str, Any],
        sde: Literal["ve", "vp"] = "vp",
        sigma_min: float = 0.01,
        sigma_max: float = 5.0,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        attention: AttentionMode = "adjacency",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        ema_decay: float = 0.999,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.sde: SDE = make_sde(sde, sigma_min, sigma_max, beta_min, beta_max)
        self.save_hyperparameters()
        self.fixed_topology = bool(data_spec.get("fixed_topology", False))
        self.net = DagTransformer(data_spec["num_ops"], data_spec["max_nodes"], dim, layers, heads, dropout,
                                  predict_edges=not self.fixed_topology)
        self.ema = AveragedModel(self.net, avg_fn=self._ema_step, use_buffers=True)
        fixed = data_spec.get("fixed_adjacency")
        self.register_buffer("fixed_adj", torch.tensor(fixed, dtype=torch.float32) if fixed is not None else None)

    def _ema_step(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        """EMA whose decay warms up as ``(1 + n) / (10 + n)``: with a fixed decay the average
        would still hold a large share of the random initial weights in short runs."""
        n = float(num_averaged)
        decay = min(self.hparams.ema_decay, (1.0 + n) / (10.0 + n))
        return decay * averaged + (1.0 - decay) * current

    # --- the score --------------------------------------------------------------------
    def predict_noise(self, state: dict[str, torch.Tensor], t: torch.Tensor,
                      net: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Attention is masked by the space's fixed graph, or, where the topology is generated,
        by the current estimate ``A_t > 0``; padding is the all -1 "no node" row, so every
        node position takes part."""
        b = state["x"].shape[0]
        adj = self.fixed_adj.expand(b, -1, -1) if self.fixed_topology else (state["adj"] > 0).float().triu(1)
        node_mask = torch.ones(adj.shape[:2], dtype=torch.bool, device=adj.device)
        allowed = dag_attention_mask(adj, node_mask, self.hparams.attention)
        return (net or self.net)(state["x"], adj, node_mask, t, allowed)

    def score_fn(self, net: torch.nn.Module | None = None):
        """``(state, t) -> score`` for the samplers; the EMA weights unless told otherwise."""
        net = net or self.ema.module

        def score(state: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
            z = self.predict_noise(state, t, net)
            std = self.sde.marginal_prob(torch.zeros_like(t), t)[1].float()
            return {k: -z[k].float() / std.view(-1, *([1] * (z[k].dim() - 1))) for k in state}

        return score

    # --- training ---------------------------------------------------------------------
    def _dsm_loss(self, batch: dict[str, torch.Tensor], net: torch.nn.Module, generator=None) -> torch.Tensor:
        clean, masks = clean_state(batch, self.fixed_topology)
        t = sample_times(batch["x"].shape[0], self.sde, self.hparams.eps, self.device, generator)
        noisy, noise = perturb_state(clean, masks, self.sde, t, generator)
        pred = self.predict_noise(noisy, t, net)
        total = sum(((pred[k].float() - noise[k]) ** 2 * masks[k]).sum() for k in clean)
        return total / sum(m.sum() for m in masks.values())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = ensure_finite(self._dsm_loss(batch, self.net), "score-matching loss", self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The EMA follows each optimiser step at once: a checkpoint saved when a callback sees
        the batch end (``every_n_train_steps``) then holds the EMA of the weights it holds."""
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.net)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        gen = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self._dsm_loss(batch, self.ema.module, gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0], sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warmup = max(1, self.hparams.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- sampling ---------------------------------------------------------------------
    @torch.no_grad()
    def sample_graphs(self, num_samples: int, sampler: Literal["ode", "pc"] = "ode", steps: int | None = None,
                      seed: int = 0, batch_size: int = 1000, progress: bool = False,
                      guidance: Sequence[GuidanceTerm] = ()) -> dict[str, torch.Tensor]:
        """Raw samples in the {0, 1} scale: ``x [S, N, V]``, ``adj [S, N, N]``, ``mask [S, N]``.

        ``guidance`` terms (predictor objectives, budgets) are added to the score at every step."""
        score_fn = guided_score(self.score_fn(), guidance, self.sde.T)
        n, v = self.hparams.data_spec["max_nodes"], self.hparams.data_spec["num_ops"]
        gen = torch.Generator(device=self.device).manual_seed(seed)
        outs = []
        for start in range(0, num_samples, batch_size):
            b = min(batch_size, num_samples - start)
            shapes, masks = {"x": (b, n, v)}, None
            if not self.fixed_topology:
                shapes["adj"] = (b, n, n)
                masks = {"x": torch.ones(b, n, v, device=self.device),
                         "adj": torch.ones(b, n, n, device=self.device).triu(1)}
            kwargs = {"generator": gen, "device": self.device, "mask": masks, "progress": progress}
            if sampler == "ode":
                state = ode_sample(self.sde, score_fn, shapes, num_steps=steps or 50, **kwargs)
            elif sampler == "pc":
                state = pc_sample(self.sde, score_fn, shapes, num_steps=steps or 500, **kwargs)
            else:
                raise NagError(f"sampler={sampler!r}; expected 'ode' or 'pc'")
            x = state["x"]
            real = torch.ones(b, n, dtype=torch.bool, device=x.device) if self.fixed_topology else x.max(-1).values > 0
            onehot = torch.nn.functional.one_hot(x.argmax(-1), v).float() * real.unsqueeze(-1)
            adj = self.fixed_adj.expand(b, -1, -1) if self.fixed_topology else (state["adj"] > 0).float().triu(1)
            outs.append({"x": onehot, "adj": adj * real.unsqueeze(-1) * real.unsqueeze(-2), "mask": real})
        return {k: torch.cat([o[k] for o in outs]).cpu() for k in ("x", "adj", "mask")}
