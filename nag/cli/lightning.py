"""Lightning's subcommands (``fit``, ``validate``, ``test``, ``predict``) through LightningCLI,
with nag's links between data and model and fit's own options."""

from __future__ import annotations

import os
from argparse import SUPPRESS
from typing import Any

from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.model_helpers import is_overridden

from nag.generation import ModelGenerator
from nag.generation.baseline import compare_with_random
from nag.io.checkpoints import check_space, last_checkpoint, load_checkpoint
from nag.trainer import NagTrainer


class NagCLI(LightningCLI):
    """Links the datamodule's ``spec()`` (space identity, sizes, target statistics) into
    every model's ``data_spec`` so that checkpoints carry it."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data", "model.init_args.data_spec", compute_fn=lambda dm: dm.spec(), apply_on="instantiate"
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any):
        """Fit-only options are documented only on ``fit``; the other subcommands accept them
        (a fit YAML may set them) without listing them."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self._add_fit_arguments(parser, listed=subcommand == "fit")
        return parser

    @staticmethod
    def _add_fit_arguments(parser, listed: bool) -> None:
        def help_(text: str) -> str:
            return text if listed else SUPPRESS

        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help=help_("After `fit`, score the best checkpoint on the held-out test split."),
        )
        parser.add_argument(
            "--generate_after_fit",
            type=int,
            default=0,
            help=help_(
                "After `fit` of a generator, sample this many architectures and print their true metrics "
                "beside as many uniform random ones (same seed); 0: off."
            ),
        )
        parser.add_argument(
            "--generate_conditions",
            type=dict[str, float] | None,
            default=None,
            help=help_(
                "Raw condition values (e.g. '{\"valid_acc\": 0.85}') for a second, conditioned row of "
                "--generate_after_fit."
            ),
        )

    def before_fit(self) -> None:
        """``--ckpt_path last`` means the newest ``last*.ckpt`` of any earlier run of this config;
        Lightning's own "last" looks only in the new run's (empty) version folder."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            found = last_checkpoint(self.trainer)
            config["ckpt_path"] = None if found is None else str(found)
            rank_zero_info(
                f"Resuming from {found}" if found else "--ckpt_path last: no earlier checkpoint; starting afresh"
            )
        self._check_checkpoint()

    def _check_checkpoint(self) -> None:
        """A truncated checkpoint, or one of another search space, fails in one line here
        rather than deep inside Lightning's ``load_state_dict``."""
        path = self.config_init[self.subcommand].get("ckpt_path")
        space = getattr(self.datamodule, "space", None)
        if path and os.path.isfile(path):
            ckpt = load_checkpoint(path)
            if space is not None:
                check_space(ckpt, space, path)

    before_validate = before_test = before_predict = _check_checkpoint

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run or self.trainer.interrupted:
            return
        if self.config.fit.get("generate_after_fit") and hasattr(self.model, "sample_graphs"):
            self._generate_after_fit(self.config.fit.generate_after_fit, self.config.fit.get("generate_conditions"))
        if not self.config.fit.get("test_after_fit"):
            return
        if self.trainer.interrupted or not is_overridden("test_step", self.model):
            return  # generators have no held-out test metric to report
        rank_zero_info("Scoring the best checkpoint on the held-out test split:")
        ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)

    def _generate_after_fit(self, n: int, conditions: dict[str, float] | None) -> None:
        """The trained generator's samples beside uniform random ones, scored on the benchmark."""
        if not self.trainer.is_global_zero:
            return
        dm = self.datamodule
        benchmark = getattr(dm, "benchmark", None)
        metrics = list(dm.targets[:1]) if benchmark is not None else []
        _, table = compare_with_random(
            ModelGenerator(self.model, dm.space), dm.train_keys(), benchmark, metrics, n, seed=0, conditions=conditions
        )
        print(
            f"{n} generated architectures beside {n} uniform random ones (true {', '.join(metrics) or 'no'} "
            f"metrics from the benchmark):\n{table}"
        )


def run_lightning(subcommand: str, args: list[str]) -> None:
    """Lightning's ``subcommand`` through :class:`NagCLI`."""
    _check_ckpt_arg(args)
    NagCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_class=NagTrainer,
        args=[subcommand, *args],
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False, **{c: {"exit_on_error": False} for c in NagCLI.subcommands()}},
        auto_configure_optimizers=False,
    )


def fit(args: list[str]) -> None:
    run_lightning("fit", args)


def validate(args: list[str]) -> None:
    run_lightning("validate", args)


def test(args: list[str]) -> None:
    run_lightning("test", args)


def predict(args: list[str]) -> None:
    run_lightning("predict", args)


def _check_ckpt_arg(args: list[str]) -> None:
    """LightningCLI reads ``--ckpt_path`` while parsing; check it first so a missing or
    corrupt file gives one line rather than a deep traceback."""
    for i, a in enumerate(args):
        value = (
            a.split("=", 1)[1]
            if a.startswith("--ckpt_path=")
            else (args[i + 1] if a == "--ckpt_path" and i + 1 < len(args) else None)
        )
        if value and value not in ("last", "best", "hpc", "registry", "null"):
            load_checkpoint(value)
