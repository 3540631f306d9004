"""Lightning's Trainer plus ``generate``: LightningCLI turns its signature into the
``nag generate`` subcommand, so generation composes with the same YAML as ``fit``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from nag.callbacks.rng_state import RNGStateCheckpoint
from nag.checkpoints import load_module
from nag.errors import ConfigError
from nag.generation import (
    add_predictions,
    check_output,
    decode_samples,
    format_table,
    invalid_reasons,
    rows_for,
    score_samples,
    write_rows,
)
from nag.lightning_modules.predictor import PredictorModule
from nag.plugins.atomic_checkpoint_io import AtomicCheckpointIO
from nag.tables import latency_metric


class NagTrainer(pl.Trainer):
    """Lightning's Trainer with what a job that may be killed needs, unless the config says
    otherwise: ``ModelCheckpoint(save_last=True)`` when no ModelCheckpoint is configured
    (and checkpointing is on), atomic checkpoint files and RNG states in checkpoints."""

    def __init__(self, **kwargs: Any) -> None:
        callbacks = kwargs.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if kwargs.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(ModelCheckpoint(save_last=True))
        if not any(isinstance(c, RNGStateCheckpoint) for c in callbacks):
            callbacks.append(RNGStateCheckpoint())
        plugins = kwargs.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["callbacks"], kwargs["plugins"] = callbacks, plugins
        try:
            super().__init__(**kwargs)
        except (MisconfigurationException, ValueError) as e:  # an unknown strategy/accelerator name, ...
            raise ConfigError(f"trainer: {e}") from e

    def generate(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        num_samples: int = 1000,
        output: str = "generated.csv",
        sampler: Literal["ode", "pc", "ancestral"] | None = None,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        metrics: Sequence[str] | None = None,
        show: int = 10,
        conditions: dict[str, float] | None = None,
        guidance_scale: float = 1.0,
        predictor_ckpt: str | None = None,
        quiet: bool = False,
        verbose: bool = False,
    ) -> dict[str, float]:
        """Sample ``num_samples`` architectures from a trained generator, score them and write
        ``output`` (.csv/.json). The generator is rebuilt from the checkpoint's own
        hyper-parameters (SDE, network), never from the config's model section.

        ``sampler`` defaults to the generator's own (``ode`` for score diffusion, ``ancestral``
        for discrete diffusion). ``conditions`` (raw target values, e.g.
        ``{"cifar10_test_200ep": 94.3}``) and ``guidance_scale`` steer a conditional generator.

        The terminal shows the ``show`` best distinct architectures (all with ``verbose``, which
        also lists why invalid samples failed; nothing with ``quiet``), with the predictions of
        ``predictor_ckpt`` (a ``PredictorModule`` of this space) beside the true metrics."""
        if ckpt_path is None:
            raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
        if num_samples < 1:
            raise ConfigError(f"--num_samples={num_samples}: ask for at least one architecture")
        check_output(output)
        if batch_size < 1 or (steps is not None and steps < 1):
            raise ConfigError(f"--batch_size={batch_size}, --steps={steps}: both must be at least 1 (steps may be unset)")
        space = datamodule.space
        if not hasattr(model, "sample_graphs"):
            raise ConfigError(f"model {type(model).__name__} is not a generator (it has no sample_graphs)")
        generator = load_module(type(model), ckpt_path, space, "--ckpt_path", self.strategy.root_device)
        extra = {} if sampler is None else {"sampler": sampler}
        if conditions:
            if "conditions" not in inspect.signature(generator.sample_graphs).parameters:
                raise ConfigError(f"--conditions: {type(model).__name__} is not a conditional generator; drop --conditions")
            extra.update(conditions=conditions, guidance_scale=guidance_scale)
        with self.precision_plugin.forward_context():  # --trainer.precision bf16-mixed samples in bf16 too
            graphs = generator.sample_graphs(num_samples, steps=steps, seed=seed, batch_size=batch_size,
                                             progress=not quiet and self.progress_bar_callback is not None, **extra)
        result = decode_samples(space, graphs)
        benchmark = getattr(datamodule, "benchmark", None)
        metrics = list(metrics if metrics is not None else (datamodule.targets or (benchmark.metrics[:1] if benchmark else [])))
        if metrics and benchmark is None:
            raise ConfigError(f"--metrics {metrics}: the config's data has no benchmark to look them up in")
        metrics += [m for m in [latency_metric(benchmark, metrics)] if m is not None]
        summary = score_samples(result, space, datamodule.train_keys(), benchmark, metrics)
        rows = rows_for(result, space, benchmark, metrics)
        if predictor_ckpt is not None:
            predictor = load_module(PredictorModule, predictor_ckpt, space, "--predictor_ckpt", self.strategy.root_device)
            add_predictions(rows, result, space, predictor)
        if self.is_global_zero:
            write_rows(rows, output)
            if not quiet:
                maximize = benchmark.higher_is_better(metrics[0]) if benchmark is not None and metrics else True
                print(format_table(rows, metrics, None if verbose else show, maximize))
                if verbose and not all(r["valid"] for r in rows):
                    print(f"invalid samples, by reason:\n{invalid_reasons(rows)}")
                print("  ".join(f"{k}={v:.4g}" for k, v in summary.items()))
                print(f"wrote {len(rows)} rows to {output}")
        return summary
