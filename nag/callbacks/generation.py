"""Sample from the generator every few epochs and log what a user cares about."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from nag.generation import decode_samples
from nag.metrics.generation import BenchmarkTruth, Novelty, Uniqueness, Validity


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
        space, benchmark = dm.space, getattr(dm, "benchmark", None)
        per_rank = max(1, self.num_samples // trainer.world_size)
        graphs = pl_module.sample_graphs(per_rank, sampler=self.sampler, steps=self.steps,
                                         seed=self.seed + trainer.global_rank)
        result = decode_samples(space, graphs)
        keys = [space.key(a) for a in result.valid]
        metrics = {"validity": Validity(), "uniqueness": Uniqueness(), "novelty": Novelty(dm.train_keys())}
        metrics["validity"].update(torch.tensor([a is not None for a in result.archs]))
        metrics["uniqueness"].update(keys)
        metrics["novelty"].update(keys)
        values = {f"gen/{k}": m.to(pl_module.device).compute() for k, m in metrics.items()}
        for target in dm.targets if benchmark is not None else []:
            truth = BenchmarkTruth(benchmark, target).to(pl_module.device)
            truth.update(result.valid)
            values |= {f"gen/{target}_{k}": v for k, v in truth.compute().items()}
        pl_module.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()})
