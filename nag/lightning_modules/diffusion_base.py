"""What the two graph-diffusion generators share: EMA weights, optimiser with warm-up,
validation on the EMA, and the batched sampling loop."""

from __future__ import annotations

import ctypes
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from nag.diffusion.graph_state import end_runs_at_stop
from nag.errors import ConfigError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.lightning_modules.generators import GeneratorName

Graphs = dict[str, torch.Tensor]

_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory of up to 32 MiB blocks in glibc's heap instead of handing it back to the
    system after every tensor (once per process; Linux with glibc only; ``NAG_MALLOC_TUNING=0``
    turns it off). Returns whether the settings are in force.

    Sampling allocates and frees the same few-MiB activations on every network evaluation.
    glibc serves blocks that large with ``mmap`` (or trims them off the heap top when freed), so
    each evaluation page-faults its whole working set afresh: about 16,000 faults and a third
    of the CPU time of one forward on 1,000 NB201 graphs. ``M_MMAP_THRESHOLD = 32 MiB`` and
    ``M_TRIM_THRESHOLD = 512 MiB`` keep those pages mapped; the cost is that the process keeps
    up to its peak heap (well under 1 GiB for sampling) instead of shrinking between calls."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("NAG_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(
            libc.mallopt(m_trim_threshold, 512 * 2**20)
        )
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    return _ALLOCATOR_TUNED


class DiffusionModule(GeneratorName, pl.LightningModule, ABC):
    """Base of :class:`ScoreDiffusionModule` and :class:`DiscreteDiffusionModule`.

    A subclass builds ``self.net`` in ``__init__``, then calls :meth:`init_ema`, and defines
    :meth:`loss` (``(batch, net, generator) -> (loss, named parts)``) and
    :meth:`sample_batch` (``b`` samples as ``{x, adj, mask}`` graphs). Training, validation,
    the optimiser and :meth:`sample_graphs` come from here, so both generators average, warm
    up, validate and batch their sampling the same way.

    Class attributes say what a generator supports (read by :mod:`nag.generation`):
    ``supports_guidance`` (predictor-gradient guidance terms) and the instance's
    ``condition_names`` (conditions of classifier-free guidance, in raw benchmark units).
    """

    supports_guidance: bool = False
    condition_names: Sequence[str]
    loss_name: str = "loss"
    #: Whether the running sampling call uses the compiled network (:meth:`sampling_network`).
    _compiled_call: bool = False

    def init_ema(self) -> None:
        """EMA copy of ``self.net``. Buffers are not averaged: they are constants (positions,
        quantile knots, edge directions), and averaging would round integer ones."""
        self.ema = AveragedModel(self.net, avg_fn=self._ema_step, use_buffers=False)

    def _ema_step(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        """EMA whose decay warms up as ``(1 + n) / (10 + n)``: with a fixed decay the average
        would still hold a large share of the random initial weights in short runs."""
        n = float(num_averaged)
        decay = min(self.hparams.ema_decay, (1.0 + n) / (10.0 + n))
        return decay * averaged + (1.0 - decay) * current

    # --- subclass hooks ---------------------------------------------------------------
    @abstractmethod
    def loss(
        self, batch: Mapping[str, torch.Tensor], net: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of ``net`` on ``batch`` and its named parts (logged)."""

    @abstractmethod
    def sample_batch(
        self, b: int, generator: torch.Generator, steps: int | None, progress: bool, start: int, **options: Any
    ) -> Graphs:
        """``b`` samples (``start``: index of the first in the whole request, for per-sample
        conditions)."""

    # --- training ---------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, parts = self.loss(batch, self.net)
        loss = ensure_finite(loss, self.loss_name, self.global_step)
        b = batch["x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        if parts:
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=b)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The EMA follows each optimiser step at once: a checkpoint saved when a callback sees
        the batch end (``every_n_train_steps``) then holds the EMA of the weights it holds."""
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.net)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        gen = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss, _ = self.loss(batch, self.ema.module, gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0], sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warmup = max(1, self.hparams.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- sampling ---------------------------------------------------------------------
    def sampling_network(self) -> nn.Module:
        """The network sampling evaluates: the EMA weights, compiled during a ``compile`` call."""
        if not self._compiled_call:
            return self.ema.module
        compiled = self.__dict__.get("_compiled_ema")  # kept out of the module tree and the checkpoint
        if compiled is None:
            compiled = self.__dict__["_compiled_ema"] = torch.compile(self.ema.module, dynamic=True)
        return compiled

    @torch.no_grad()
    def sample_graphs(
        self,
        num_samples: int,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        progress: bool = False,
        compile: bool = False,
        **options: Any,
    ) -> Graphs:
        """Raw samples in the {0, 1} scale, ``x [S, N, V]``, ``adj [S, N, N]``, ``mask [S, N]``,
        and ``unread [S]``: positions the space's layout read otherwise than drawn: after the end
        of a stop run (``SearchSpace.stop_runs``), read as the stop op, and those a subclass's
        ``sample_batch`` reports (0 where there are none), drawn in batches of ``batch_size``
        from one seeded generator (same seed, same samples). ``options`` are the subclass's
        (sampler, conditions, guidance, ...). On a CPU the first call tunes the C allocator for
        this workload (:func:`tune_cpu_allocator`).

        ``compile`` runs the network through ``torch.compile`` (dynamic shapes: the discrete
        sampler's batch shrinks as samples agree); the first call compiles for seconds (on a CPU
        it needs a C++ compiler). Off by default: on the 2-core CPU of
        ``benchmarks/results/generation_speed.md`` it made NB-Graph's discrete sampling x1.2-1.3
        faster but NB201's several times slower with two threads under ``OMP_WAIT_POLICY=passive``,
        where each small compiled kernel's parallel region wakes sleeping threads (with one thread
        it is x1.1-1.2 faster there); measure it on your machine."""
        if num_samples < 1 or batch_size < 1:
            raise ConfigError(f"num_samples={num_samples}, batch_size={batch_size}: both must be at least 1")
        if steps is not None and steps < 1:
            raise ConfigError(f"steps={steps}: need at least one sampling step")
        if self.device.type == "cpu":
            tune_cpu_allocator()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        self._compiled_call = compile
        try:
            outs = [
                self.sample_batch(min(batch_size, num_samples - start), gen, steps, progress, start, **options)
                for start in range(0, num_samples, batch_size)
            ]
        finally:
            self._compiled_call = False
        graphs = {k: torch.cat([o[k] for o in outs]).cpu() for k in ("x", "adj", "mask")}
        spec = self.hparams.data_spec
        x, unread = end_runs_at_stop(graphs["x"], spec.get("stop_runs", ()), spec.get("stop_op"))
        if all("unread" in o for o in outs):  # the subclass's own reading of the layout
            unread = unread + torch.cat([o["unread"] for o in outs]).cpu()
        return {**graphs, "x": x, "unread": unread}
