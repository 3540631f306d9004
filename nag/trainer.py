"""Lightning's Trainer with nag's defaults, plus ``generate``: the thin shim ``nag generate``
calls, so sampling runs on the Trainer's device and precision."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from nag.callbacks.rng_state import RNGStateCheckpoint
from nag.datamodules.architecture import ArchitectureDataModule
from nag.errors import ConfigError
from nag.generation import GenerationRequest, ModelGenerator, generate, load_generator
from nag.generation.accuracy_ranker import default_ranker
from nag.generation.report import report
from nag.io.checkpoints import load_module
from nag.io.writers import check_output
from nag.lightning_modules.predictor import PredictorModule
from nag.plugins.atomic_checkpoint_io import AtomicCheckpointIO
from nag.report.tables import latency_metric


class NagTrainer(pl.Trainer):
    """Lightning's Trainer with what a job that may be killed needs, unless the config says
    otherwise: ``ModelCheckpoint(save_last=True)`` when no ModelCheckpoint is configured
    (and checkpointing is on), atomic checkpoint files and RNG states in checkpoints."""

    def __init__(self, **kwargs: Any) -> None:
        callbacks = kwargs.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if kwargs.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
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
        model: pl.LightningModule | None,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | Path | None = None,
        output: str | Path = "generated.csv",
        *,
        request: GenerationRequest | None = None,
        metrics: Sequence[str] | None = None,
        show: int = 10,
        quiet: bool = False,
        verbose: bool = False,
        **flags: Any,
    ) -> dict[str, float]:
        """Run ``request`` (or the request ``flags`` describe, :meth:`GenerationRequest.from_flags`)
        on the generator saved at ``ckpt_path`` (its class and hyper-parameters from the file;
        ``model`` is sampled as it is when no path is given), score the samples on
        ``datamodule``'s benchmark, write ``output`` (.csv/.json) and print the best ``show``
        (all with ``verbose``, nothing with ``quiet``) beside uniform random samples."""
        request = request or GenerationRequest.from_flags(**flags)
        check_output(output)
        if ckpt_path is None and model is None:
            raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
        space, device = datamodule.space, self.strategy.root_device
        if ckpt_path is not None:
            generator = load_generator(ckpt_path, space, device, "--ckpt_path")
        else:
            generator = ModelGenerator(model, space)
        predictor = None
        if request.predictor_ckpt is not None:
            predictor = load_module(PredictorModule, request.predictor_ckpt, space, "--predictor_ckpt", device)
        benchmark = getattr(datamodule, "benchmark", None)
        metrics = list(
            metrics if metrics is not None else (datamodule.targets or (benchmark.metrics[:1] if benchmark else []))
        )
        if metrics and benchmark is None:
            raise ConfigError(f"--metrics {metrics}: the config's data has no benchmark to look them up in")
        for m in metrics:
            benchmark.column(m)  # an unknown metric is refused before sampling
        if request.device is None:
            metrics += [m for m in [latency_metric(benchmark, metrics)] if m is not None]
        accuracy, pool = None, []
        if request.device is not None and isinstance(datamodule, ArchitectureDataModule):
            # a device gets the most accurate feasible architectures: the training split's
            # cells compete with the draws, ranked by the config's accuracy target
            pool = datamodule.archs("train")
            accuracy = default_ranker(datamodule) if predictor is None else None
        with self.precision_plugin.forward_context():  # --trainer.precision bf16-mixed samples in bf16 too
            result = generate(
                generator,
                request,
                predictor=predictor,
                benchmark=benchmark,
                accuracy=accuracy,
                pool=pool,
                progress=not quiet and self.progress_bar_callback is not None,
            )
        return report(
            result,
            space,
            output,
            benchmark=benchmark,
            metrics=metrics,
            train_keys=datamodule.train_keys() if request.device is None else set(),
            predictor=predictor,
            seed=request.sampling.seed,
            show=show,
            quiet=quiet or not self.is_global_zero,
            verbose=verbose,
            write=self.is_global_zero,
            asked=request.device.select if request.device is not None else None,
        )
