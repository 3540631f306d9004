"""``nag``: LightningCLI over our search spaces, benchmarks, datamodules and modules.

Subcommands: ``fit | validate | test | predict`` (Lightning's). Errors a user can fix print
one line (``error: ...``) and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from nag.errors import NagError


def _data_info(dm) -> dict:
    """What the model must know of its data: stored in the checkpoint via hparams."""
    return {
        "num_ops": dm.space.num_ops,
        "max_nodes": dm.space.max_nodes,
        "space": dm.space.identity,
        "targets": list(dm.targets),
        "target_stats": dm.target_stats,
    }


class NagCLI(LightningCLI):
    """Links the datamodule's space and target statistics into the model's init args."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in ("num_ops", "max_nodes", "space", "targets", "target_stats"):
            parser.link_arguments(
                "data",
                f"model.init_args.{name}",
                compute_fn=lambda dm, name=name: _data_info(dm)[name],
                apply_on="instantiate",
            )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, score the best checkpoint on the held-out test split.",
        )

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
        NagCLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
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
