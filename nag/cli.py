"""``nag``: LightningCLI over our search spaces, benchmarks, datamodules and modules.

Subcommands: ``fit | validate | test | predict`` (Lightning's), ``generate`` and ``search``. Errors a user can fix print
one line (``error: ...``) and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

from jsonargparse import ActionConfigFile, ArgumentParser
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from nag.checkpoints import load_checkpoint
from nag.errors import NagError
from nag.search.runner import run_search
from nag.trainer import NagTrainer


class NagCLI(LightningCLI):
    """Links the datamodule's ``spec()`` (space identity, sizes, target statistics) into
    every model's ``data_spec`` so that checkpoints carry it."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data", "model.init_args.data_spec", compute_fn=lambda dm: dm.spec(), apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, score the best checkpoint on the held-out test split.",
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "generate": {"model", "datamodule"}}

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit") or self.trainer.fast_dev_run:
            return
        if self.trainer.interrupted:
            return
        rank_zero_info("Scoring the best checkpoint on the held-out test split:")
        ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NAG_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        if args[:1] == ["search"]:
            search_main(args[1:])
            return
        _check_ckpt_arg(args)
        NagCLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_class=NagTrainer,
            args=args,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except Exception as e:
        cause = _user_error(e)
        if cause is None or debug:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


def search_main(args: list[str]) -> dict:
    """``nag search --config search.yaml``: a benchmark, a metric and a strategy (each by
    ``class_path``), a query budget and seeds; the arguments are :func:`run_search`'s."""
    parser = ArgumentParser(prog="nag search", description=run_search.__doc__, print_config="--print_config")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with the arguments below")
    parser.add_function_arguments(run_search)
    init = parser.instantiate_classes(parser.parse_args(args))
    return run_search(**{k: v for k, v in init.items() if k not in ("config", "__path__")})


def _check_ckpt_arg(args: list[str]) -> None:
    """LightningCLI reads ``--ckpt_path`` while parsing; check it first so a missing or
    corrupt file gives one line rather than a deep traceback."""
    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--ckpt_path=") else (
            args[i + 1] if a == "--ckpt_path" and i + 1 < len(args) else None)
        if value and value not in ("last", "best", "hpc", "registry", "null"):
            load_checkpoint(value)


def _user_error(e: BaseException) -> NagError | None:
    """The :class:`NagError` behind ``e``: jsonargparse and Lightning wrap what our classes
    raise while being instantiated or run, and the user needs the original line."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, NagError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


if __name__ == "__main__":
    main()
