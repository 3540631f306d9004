"""Lightning's Trainer plus ``generate``: LightningCLI turns its signature into the
``nag generate`` subcommand, so generation composes with the same YAML as ``fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from nag.callbacks.rng_state import RNGStateCheckpoint
from nag.diffusion.guidance import GuidanceTerm, check_same_sde, parse_objective, predictor_term
from nag.errors import ConfigError
from nag.generation import (
    ModelGenerator,
    add_predictions,
    format_table,
    invalid_reasons,
    rows_for,
    score_samples,
)
from nag.hardware.generate import generate_for_device_table
from nag.io.checkpoints import load_module
from nag.io.writers import check_output, write_rows
from nag.lightning_modules.diffusion_base import DiffusionModule
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
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        num_samples: int = 1000,
        output: str = "generated.csv",
        sampler: Literal["ode", "pc", "dpm", "edm", "ancestral"] | None = None,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        metrics: Sequence[str] | None = None,
        show: int = 10,
        conditions: dict[str, float] | None = None,
        guidance_scale: float | dict[str, float] = 1.0,
        mode: Literal["compositional", "joint"] = "compositional",
        extrapolate: bool = False,
        guide: Sequence[str] = (),
        guide_scale: float = 1.0,
        guide_normalize: bool = True,
        predictor_ckpt: str | None = None,
        quiet: bool = False,
        verbose: bool = False,
        device_table: str | None = None,
        budget: str | None = None,
        feasible_prob: float = 0.9,
        latency_guidance: float | None = None,
        compile: bool = False,
    ) -> dict[str, float]:
        """Sample ``num_samples`` architectures from a trained generator, score them and write
        ``output`` (.csv/.json). The generator is rebuilt from the checkpoint's own
        hyper-parameters (SDE, network), never from the config's model section.

        ``sampler`` defaults to the generator's own (``ode`` for score diffusion, ``ancestral``
        for discrete diffusion); ``dpm`` and ``edm`` are the few-step score samplers.
        ``conditions`` (raw target values, e.g. ``{"cifar10_test_200ep": 94.3}``) steer a conditional generator by
        classifier-free guidance of strength ``guidance_scale`` (one number, or one per condition in
        ``compositional`` mode; ``joint`` conditions one pass on all of them); a condition
        outside the training split's range is refused unless ``extrapolate``.

        ``guide`` steers a score-diffusion generator with the gradients of ``predictor_ckpt``
        (a noise-aware ``PredictorModule`` trained on the generator's SDE): objectives such as
        ``"max valid_acc"`` and budgets such as ``"latency<=0.004"`` (hinge terms), each of
        strength ``guide_scale`` (a ratio to the score's norm with ``guide_normalize``).

        The terminal shows the ``show`` best distinct architectures (all with ``verbose``, which
        also lists why invalid samples failed; nothing with ``quiet``), with the predictions of
        ``predictor_ckpt`` (a ``PredictorModule`` of this space) beside the true metrics.

        ``device_table`` (a CSV of ``arch,latency`` rows measured on a new device, 10 or more) with
        ``budget`` (``"latency<=5.0"``, the table's unit) generates for that device instead
        (:func:`nag.hardware.generate.generate_for_device_table`): a latency predictor meta-trained on
        the benchmark's device tables is adapted to the CSV, and ``num_samples`` distinct architectures
        with ``P(latency <= budget) >= feasible_prob`` are written, ranked by ``predictor_ckpt``'s first
        target when given, with predicted latency, its uncertainty and the measured value where the CSV
        has it. A score-diffusion generator is also steered by the budget while it samples: the
        adapted predictor's hinge of strength ``latency_guidance`` (default 2, a ratio to the
        score's norm; 0 turns it off), beside any ``guide`` objectives.

        ``compile`` runs a diffusion generator's network through ``torch.compile`` (seconds of
        compilation first; a CPU needs a C++ compiler): faster on some spaces, slower on others,
        see ``benchmarks/results/generation_speed.md``."""
        if ckpt_path is None:
            raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
        if num_samples < 1:
            raise ConfigError(f"--num_samples={num_samples}: ask for at least one architecture")
        check_output(output)
        if batch_size < 1 or (steps is not None and steps < 1):
            raise ConfigError(
                f"--batch_size={batch_size}, --steps={steps}: both must be at least 1 (steps may be unset)"
            )
        space = datamodule.space
        if not hasattr(model, "sample_graphs"):
            raise ConfigError(f"model {type(model).__name__} is not a generator (it has no sample_graphs)")
        module = load_module(type(model), ckpt_path, space, "--ckpt_path", self.strategy.root_device)
        options: dict[str, Any] = {} if sampler is None else {"sampler": sampler}
        if compile:
            if not isinstance(module, DiffusionModule):
                raise ConfigError(f"--compile: {type(module).__name__} has no diffusion network to compile; drop it")
            options["compile"] = True
        if conditions:
            options.update(guidance_scale=guidance_scale, mode=mode, extrapolate=extrapolate)
        predictor = None
        if predictor_ckpt is not None:
            predictor = load_module(
                PredictorModule, predictor_ckpt, space, "--predictor_ckpt", self.strategy.root_device
            )
        terms = self._guidance_terms(guide, guide_scale, predictor, module)
        if terms or (device_table is not None and getattr(module, "supports_guidance", False)):
            options["normalize_guidance"] = guide_normalize
        generator = ModelGenerator(module, space, batch_size=batch_size, **options)
        if conditions and not generator.condition_names:
            raise ConfigError(f"--conditions: {type(model).__name__} is not a conditional generator; drop --conditions")
        if device_table is not None or budget is not None:
            with self.precision_plugin.forward_context():
                return generate_for_device_table(
                    generator,
                    getattr(datamodule, "benchmark", None),
                    device_table,
                    budget,
                    num_samples,
                    output,
                    seed=seed,
                    steps=steps,
                    conditions=conditions,
                    predictor=predictor,
                    threshold=feasible_prob,
                    guidance=terms,
                    latency_guidance=latency_guidance,
                    metrics=list(metrics if metrics is not None else datamodule.targets or []),
                    show=None if verbose else show,
                    quiet=quiet or not self.is_global_zero,
                    write=self.is_global_zero,
                )
        with self.precision_plugin.forward_context():  # --trainer.precision bf16-mixed samples in bf16 too
            result = generator.sample(
                num_samples,
                seed=seed,
                steps=steps,
                conditions=conditions,
                guidance=terms,
                progress=not quiet and self.progress_bar_callback is not None,
            )
        benchmark = getattr(datamodule, "benchmark", None)
        metrics = list(
            metrics if metrics is not None else (datamodule.targets or (benchmark.metrics[:1] if benchmark else []))
        )
        if metrics and benchmark is None:
            raise ConfigError(f"--metrics {metrics}: the config's data has no benchmark to look them up in")
        metrics += [m for m in [latency_metric(benchmark, metrics)] if m is not None]
        summary = score_samples(result, space, datamodule.train_keys(), benchmark, metrics)
        rows = rows_for(result, space, benchmark, metrics)
        if predictor is not None:
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

    @staticmethod
    def _guidance_terms(
        guide: Sequence[str], scale: float, predictor: PredictorModule | None, generator: pl.LightningModule
    ) -> list[GuidanceTerm]:
        """``--guide`` objectives as guidance terms on ``--predictor_ckpt``'s targets."""
        if not guide:
            return []
        if predictor is None:
            raise ConfigError(
                "--guide needs --predictor_ckpt: a PredictorModule trained with "
                "model.init_args.noise_aware: true on the generator's SDE"
            )
        if not getattr(generator, "supports_guidance", False):
            raise ConfigError(
                f"--guide: {type(generator).__name__} takes no predictor guidance; use a "
                "score-diffusion generator, or --conditions with a conditional one"
            )
        if not predictor.hparams.noise_aware:
            raise ConfigError(
                "--predictor_ckpt: guidance reads noisy graphs; train the predictor with "
                "model.init_args.noise_aware: true"
            )
        check_same_sde(generator.sde, predictor.sde)
        return [predictor_term(predictor, *parse_objective(text), scale=scale) for text in guide]
