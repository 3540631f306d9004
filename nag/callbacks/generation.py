"""Sample from the generator every few epochs and log what a user cares about."""

from __future__ import annotations

import pytorch_lightning as pl

from nag.generation import decode_samples, score_samples


class GenerationMetricsCallback(pl.Callback):
    """Logs validity, uniqueness, novelty (vs. the training split) and, with a benchmark, the
    true metrics of generated architectures. Each rank samples ``num_samples // world_size``
    with its own seed; torchmetrics syncs the states, so nothing is counted twice."""

    def __init__(self, every_n_epochs: int = 5, num_samples: int = 256, sampler: str = "ode",
                 steps: int | None = None, seed: int = 0) -> None:
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.sampler, self.steps, self.seed = sampler, steps, seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        dm = trainer.datamodule
        benchmark = getattr(dm, "benchmark", None)
        per_rank = max(1, self.num_samples // trainer.world_size)
        graphs = pl_module.sample_graphs(per_rank, sampler=self.sampler, steps=self.steps,
                                         seed=self.seed + trainer.global_rank)
        result = decode_samples(dm.space, graphs)
        summary = score_samples(result, dm.space, dm.train_keys(), benchmark,
                                dm.targets if benchmark is not None else [], device=pl_module.device)
        summary.pop("samples")
        pl_module.log_dict({f"gen/{k.replace('/', '_')}": v for k, v in summary.items()})
