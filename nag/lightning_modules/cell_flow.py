"""CCNF: a conditional continuous normalizing flow over the ZC-metric cell latent space."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics.functional import spearman_corrcoef

from nag.datamodules.zc_cells import ProxyNormalizer
from nag.errors import ConfigError
from nag.io.checkpoints import load_checkpoint
from nag.lightning_modules.cell_encoder import CellEncoderModule
from nag.lightning_modules.finite_loss import ensure_finite
from nag.lightning_modules.generators import GeneratorName
from nag.nn.cnf import ConditionalFlowMatching
from nag.nn.conditions import RawValue, check_conditions
from nag.nn.vector_field import ConditionalVectorField

ProxyTargets = torch.Tensor | Mapping[str, float] | None
ENCODER_FLAG = "model.init_args.encoder_ckpt"


class CellFlowModule(GeneratorName, pl.LightningModule):
    """``p(z | c)`` over a frozen :class:`CellEncoderModule`'s latent means ``z``, conditioned on
    normalised ZC vectors ``c``; samples are decoded to cells by the encoder's decoder.

    Trained by **flow matching with conditional OT paths**, not maximum likelihood: each step
    regresses the vector field at one random time on a straight noise-to-data path, with no
    ODE solve and no trace estimate, so training is cheap, stable and unbiased, and the
    straight paths keep sampling to few solver steps. The likelihood is still exact to
    solver tolerance through the instantaneous change of variables (:meth:`log_prob`).

    Conditions may be partial: each proxy of ``c`` is hidden from the field with probability
    ``cond_drop`` during training (all of them with ``uncond_drop``), and the field reads
    ``(c * keep, keep)``. So one model samples given any subset of proxies, e.g. only
    ``synflow`` and ``nwot`` high, or none (the unconditional flow).

    The flow runs in standardised latent coordinates (train-split mean/std of ``z``, saved
    as buffers). The encoder's hyper-parameters are copied into this module's, and its
    weights into the state dict, so a flow checkpoint needs no encoder file to be loaded.
    """

    generator_name = "cell_flow"

    def __init__(
        self,
        data_spec: dict[str, Any],
        encoder_ckpt: str | None = None,
        encoder_hparams: dict[str, Any] | None = None,
        hidden: int = 128,
        layers: int = 3,
        sigma_min: float = 1e-4,
        cond_drop: float = 0.3,
        uncond_drop: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        solver: str = "rk4",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        steps: int = 20,
        val_samples: int = 256,
        logprob_samples: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        state = None
        if encoder_hparams is None:
            if encoder_ckpt is None:
                raise ConfigError(
                    f"{ENCODER_FLAG}: the flow needs a trained CellEncoderModule checkpoint (nag fit "
                    "--config configs/nb201/cell_encoder.yaml writes one)"
                )
            ckpt = load_checkpoint(encoder_ckpt, ENCODER_FLAG)
            encoder_hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
            state = ckpt["state_dict"]
        self.save_hyperparameters()
        self.hparams["encoder_hparams"] = encoder_hparams
        _check_same_data(encoder_hparams.get("data_spec", {}), data_spec, encoder_ckpt)
        try:
            # a fresh context: under LightningCLI, save_hyperparameters() would otherwise record
            # the CLI's arguments for this module as the encoder's hyper-parameters
            self.encoder = contextvars.Context().run(CellEncoderModule, **encoder_hparams)
            if state is not None:
                self.encoder.load_state_dict(state)
        except (TypeError, RuntimeError) as e:
            raise ConfigError(
                f"{ENCODER_FLAG} {encoder_ckpt!r} is not a CellEncoderModule checkpoint ({type(e).__name__})"
            ) from None
        self.encoder.requires_grad_(False)
        self.proxies = list(data_spec["proxies"])
        self.normalizer = ProxyNormalizer.from_spec(data_spec)
        dim, p = self.encoder.hparams.latent_dim, len(self.proxies)
        self.flow = ConditionalFlowMatching(
            ConditionalVectorField(dim, 2 * p, hidden, layers), sigma_min, solver, atol, rtol, steps
        )
        self.register_buffer("latent_mean", torch.zeros(dim))
        self.register_buffer("latent_std", torch.ones(dim))
        self._val_conditions: torch.Tensor | None = None

    # --- conditions -------------------------------------------------------------------
    def conditions(self, conditions: ProxyTargets, num_samples: int | None = None, raw: bool = False) -> torch.Tensor:
        """Normalised condition rows ``[B, P]`` (NaN = unspecified) from ``None`` (all
        unspecified), a mapping ``proxy -> value`` or a tensor ``[P]``/``[B, P]``; ``raw``
        values are in the proxies' own units and normalised with the training statistics."""
        p = len(self.proxies)
        if conditions is None:
            c = torch.full((p,), math.nan)
        elif isinstance(conditions, Mapping):
            unknown = [k for k in conditions if k not in self.proxies]
            if unknown:
                raise ConfigError(f"conditions: unknown proxies {unknown}; the flow knows {self.proxies}")
            c = torch.tensor([float(conditions.get(k, math.nan)) for k in self.proxies])
        else:
            c = torch.as_tensor(conditions, dtype=torch.float32).cpu()
            if c.shape[-1] != p or c.dim() > 2:
                raise ConfigError(
                    f"conditions: expected shape [{p}] or [B, {p}] ({self.proxies}), got {tuple(c.shape)}"
                )
        c = c.float().reshape(-1, p)
        if raw:
            known = ~c.isnan()
            c = torch.where(known, self.normalizer.normalize(c.nan_to_num()), c)
        if num_samples is not None and c.shape[0] != num_samples:
            if c.shape[0] != 1:
                raise ConfigError(f"conditions: {c.shape[0]} rows but num_samples={num_samples}; give 1 row or as many")
            c = c.expand(num_samples, p)
        return c.to(self.device)

    @staticmethod
    def _field_input(c: torch.Tensor) -> torch.Tensor:
        keep = ~c.isnan()
        return torch.cat([c.nan_to_num() * keep, keep.to(c.dtype)], -1)

    # --- latents ----------------------------------------------------------------------
    def _standardize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def sample(
        self, conditions: ProxyTargets = None, num_samples: int | None = None, seed: int = 0, raw: bool = False
    ) -> dict[str, torch.Tensor]:
        """Cells for ``conditions`` (see :meth:`conditions`) as graphs ``{x, adj, mask}`` plus
        their ``latent``; ``nag.generation.decode_samples(space, ...)`` turns them into
        architectures, keeping invalid decodes as counted ``None`` entries. Same seed, same cells."""
        c = self.conditions(conditions, num_samples, raw)
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(c.shape[0], self.latent_mean.numel(), generator=g).to(self.device)
        z = self.flow.sample(noise, self._field_input(c)) * self.latent_std + self.latent_mean
        return {**self.encoder.decode(z), "latent": z}

    @property
    def condition_names(self) -> list[str]:
        """What :mod:`nag.generation` may condition on: the proxies, in their own units."""
        return list(self.proxies)

    @torch.no_grad()
    def sample_graphs(
        self,
        num_samples: int,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        progress: bool = False,
        conditions: Mapping[str, RawValue] | None = None,
        extrapolate: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The generators' sampling call (:class:`nag.generation.Generator`): ``conditions`` in
        the proxies' raw units, refused outside the training range unless ``extrapolate``. The
        ODE solver's steps are the ``steps`` hyper-parameter."""
        if steps is not None:
            raise ConfigError(f"steps={steps}: the cell flow's ODE steps are its model.init_args.steps; drop steps")
        raw = check_conditions(conditions, self.proxies, self.normalizer.ranges(), num_samples, extrapolate)
        graphs = self.sample(raw.float(), num_samples, seed=seed, raw=True)
        return {k: graphs[k].cpu() for k in ("x", "adj", "mask")}

    def log_prob(
        self, latents: torch.Tensor, conditions: ProxyTargets = None, exact: bool = True, seed: int = 0
    ) -> torch.Tensor:
        """``log p(z | c)`` of encoder latents ``[B, D]`` (the standardisation's Jacobian included)."""
        c = self.conditions(conditions, latents.shape[0])
        lp, _ = self.flow.log_prob(
            self._standardize(latents.to(self.device)), self._field_input(c), exact, torch.Generator().manual_seed(seed)
        )
        return lp - self.latent_std.log().sum()

    # --- training ---------------------------------------------------------------------
    @torch.no_grad()
    def on_fit_start(self) -> None:
        data = getattr(self.trainer.datamodule, "datasets", {}).get("train")
        if data is None:
            raise ConfigError("data: CellFlowModule needs ZCCellDataModule (cells with their ZC vectors)")
        z = torch.cat(
            [
                self.encoder.embed(
                    data.x[i : i + 1024].to(self.device),
                    data.adj[i : i + 1024].to(self.device),
                    data.mask[i : i + 1024].to(self.device),
                )
                for i in range(0, len(data), 1024)
            ]
        )
        self.latent_mean.copy_(z.mean(0))
        self.latent_std.copy_(z.std(0).clamp_min(1e-4))

    def _batch_latents(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self._standardize(self.encoder.embed(batch["x"], batch["adj"], batch["mask"]))

    def _dropped(self, y: torch.Tensor) -> torch.Tensor:
        """Conditions with proxies hidden at random (NaN), so partial conditions are learned."""
        hide = torch.rand_like(y) < self.hparams.cond_drop
        hide |= torch.rand(y.shape[0], 1, device=y.device) < self.hparams.uncond_drop
        return y.masked_fill(hide, math.nan)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.flow.loss(self._batch_latents(batch), self._field_input(self._dropped(batch["y"])))
        ensure_finite(loss, "training loss", self.global_step)
        self.log("train/fm_loss", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        n = batch["y"].shape[0]
        self.log(
            f"{stage}/fm_loss",
            self.flow.loss(self._batch_latents(batch), self._field_input(batch["y"])),
            batch_size=n,
            sync_dist=True,
        )
        if batch_idx == 0:
            k = self.hparams.logprob_samples
            z = self.encoder.embed(batch["x"][:k], batch["adj"][:k], batch["mask"][:k])
            nll = -self.log_prob(z, batch["y"][:k]) / z.shape[1]
            self.log(f"{stage}/nll_per_dim", nll.mean(), batch_size=z.shape[0], sync_dist=True)
            self._val_conditions = batch["y"][: self.hparams.val_samples]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        """Sample one cell per held-out condition: the share of invalid decodes, and how well
        the cells' ZC vectors (the encoder's head on the re-encoded cells) follow the targets."""
        space = getattr(self.trainer.datamodule, "space", None)
        if space is None or self._val_conditions is None or self.trainer.sanity_checking:
            return
        c = self._val_conditions
        graphs = self.sample(c, seed=self.hparams.seed)
        valid = torch.tensor(
            [space.decodes(x, a, m) for x, a, m in zip(graphs["x"], graphs["adj"], graphs["mask"])], device=self.device
        )
        self.log("val/invalid_share", 1.0 - valid.float().mean())
        if int(valid.sum()) > 2:
            zc = self.encoder.predict_zc(self.encoder.embed(graphs["x"], graphs["adj"], graphs["mask"].bool()))
            self.log("val/cond_spearman", spearman_corrcoef(zc[valid], c[valid]).nanmean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.flow.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def _check_same_data(encoder_spec: Mapping, data_spec: Mapping, path: str | None) -> None:
    """Conditions and latents mean the same thing only on the encoder's own space and ZC units."""
    for key, what in (
        ("space", "search space"),
        ("proxies", "proxies"),
        ("normalization", "normalization"),
        ("proxy_stats", "proxy statistics (table, split or seed)"),
    ):
        if encoder_spec.get(key) != data_spec.get(key):
            raise ConfigError(
                f"{ENCODER_FLAG} {path!r}: the encoder was trained with other {what} than "
                "this config's data; use the data settings it was trained with"
            )
