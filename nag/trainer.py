"""Lightning's Trainer plus ``generate``: LightningCLI turns its signature into the
``nag generate`` subcommand, so generation composes with the same YAML as ``fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pytorch_lightning as pl

from nag.checkpoints import check_space, load_checkpoint
from nag.errors import ConfigError
from nag.generation import (
    decode_samples,
    format_table,
    rows_for,
    score_samples,
    write_rows,
)


class NagTrainer(pl.Trainer):
    def generate(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        num_samples: int = 1000,
        output: str = "generated.csv",
        sampler: Literal["ode", "pc"] = "ode",
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        metrics: Sequence[str] | None = None,
        show: int = 10,
    ) -> dict[str, float]:
        """Sample ``num_samples`` architectures from a trained generator, score them and write
        ``output`` (.csv/.json). The generator is rebuilt from the checkpoint's own
        hyper-parameters (SDE, network), never from the config's model section."""
        if ckpt_path is None:
            raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
        if num_samples < 1:
            raise ConfigError(f"--num_samples={num_samples}: ask for at least one architecture")
        space = datamodule.space
        check_space(load_checkpoint(ckpt_path), space, ckpt_path)
        if not hasattr(model, "sample_graphs"):
            raise ConfigError(f"model {type(model).__name__} is not a generator (it has no sample_graphs)")
        generator = type(model).load_from_checkpoint(ckpt_path, map_location=self.strategy.root_device)
        generator.eval()
        graphs = generator.sample_graphs(num_samples, sampler=sampler, steps=steps, seed=seed,
                                         batch_size=batch_size, progress=self.progress_bar_callback is not None)
        result = decode_samples(space, graphs)
        benchmark = getattr(datamodule, "benchmark", None)
        metrics = list(metrics if metrics is not None else (datamodule.targets or (benchmark.metrics[:1] if benchmark else [])))
        summary = score_samples(result, space, datamodule.train_keys(), benchmark, metrics)
        rows = rows_for(result, space, benchmark, metrics)
        if self.is_global_zero:
            write_rows(rows, output)
            print(format_table(rows, metrics, show))
            print("  ".join(f"{k}={v:.4g}" for k, v in summary.items()))
            print(f"wrote {len(rows)} rows to {output}")
        return summary
