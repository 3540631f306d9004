"""Sample from the generator every few epochs and log what a user cares about."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from nag.benchmarks.base import Benchmark
from nag.generation import GenerationRequest, ModelGenerator, Sampling, generate, score_samples
from nag.spaces.base import Arch, SearchSpace


class GenerationMetricsCallback(pl.Callback):
    """Logs validity, uniqueness, novelty (vs. the training split) and, with a benchmark, the
    true metrics of generated architectures. Each rank samples ``num_samples // world_size``
    with its own seed; torchmetrics syncs the states, so nothing is counted twice.

    With ``log_images`` and a TensorBoard logger, rank 0 also logs pictures: a grid of
    ``num_drawn`` generated DAGs and a histogram of their true metrics against the benchmark's.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        num_samples: int = 256,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        log_images: bool = True,
        num_drawn: int = 8,
    ) -> None:
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.sampler, self.steps, self.seed = sampler, steps, seed
        self.log_images, self.num_drawn = log_images, num_drawn

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        dm = trainer.datamodule
        benchmark = getattr(dm, "benchmark", None)
        per_rank = max(1, self.num_samples // trainer.world_size)
        sampling = Sampling(per_rank, self.seed + trainer.global_rank, self.sampler, self.steps)
        result = generate(ModelGenerator(pl_module, dm.space), GenerationRequest(sampling))
        summary = score_samples(
            result,
            dm.space,
            dm.train_keys(),
            benchmark,
            dm.targets if benchmark is not None else [],
            device=pl_module.device,
        )
        summary.pop("samples")
        pl_module.log_dict({f"gen/{k.replace('/', '_')}": v for k, v in summary.items()})
        tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if self.log_images and tensorboard is not None and trainer.is_global_zero:
            self._add_figures(
                tensorboard.experiment, trainer.global_step, dm.space, result.valid, benchmark, dm.targets
            )

    def _add_figures(
        self,
        writer: Any,
        step: int,
        space: SearchSpace,
        archs: list[Arch],
        benchmark: Benchmark | None,
        metrics: list[str],
    ) -> None:
        """A grid of this rank's first valid samples (titled with their true first metric) and,
        per metric, their true values against the benchmark's distribution."""
        from nag.report import plots  # matplotlib and networkx are imported only when drawing

        def truth(arch: Arch, metric: str) -> float:
            return benchmark.query(arch, metric) if arch in benchmark else math.nan

        drawn = archs[: self.num_drawn]
        if drawn:
            titles = (
                [f"{metrics[0]} = {truth(a, metrics[0]):.4g}" for a in drawn]
                if benchmark is not None and metrics
                else None
            )
            writer.add_figure("gen/architectures", plots.draw_architectures(space, drawn, titles), step)
        for metric in metrics if benchmark is not None and archs else []:
            values = [truth(a, metric) for a in archs]
            figure = plots.metric_histogram(values, benchmark.column(metric), metric)
            writer.add_figure(f"gen/{metric}_histogram", figure, step)
