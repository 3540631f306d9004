"""``nag``: one table of subcommands (:data:`COMMANDS`), each a function of its arguments, all
behind one error wrapper: errors a user can fix print one line (``error: ...``) and exit 2;
``--debug`` shows the traceback instead.

``fit | validate | test | predict`` are Lightning's (through :class:`NagCLI`); ``generate``
runs one :class:`~nag.generation.request.GenerationRequest` with its own short parser, which
refuses a bad value before any model or data is loaded.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from argparse import SUPPRESS
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.model_helpers import is_overridden

from nag.errors import ConfigError, NagError
from nag.generation import ModelGenerator
from nag.generation.baseline import compare_with_random
from nag.generation.request_parser import generate_parser, request_from_config
from nag.io.checkpoints import check_space, last_checkpoint, load_checkpoint
from nag.io.writers import check_output
from nag.lightning_modules.in_loop import quiet_lightning
from nag.search.runner import run_search
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


def lightning_main(subcommand: str) -> Callable[[list[str]], None]:
    """Lightning's ``subcommand`` through :class:`NagCLI`."""

    def run(args: list[str]) -> None:
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

    return run


def generate_main(args: list[str]) -> dict[str, float]:
    """``nag generate --config fit.yaml --ckpt_path last.ckpt [request options]``: the request
    and the paths are checked first (no model or data loaded), then the config's data and
    trainer settings are built and :meth:`NagTrainer.generate` runs the request."""
    parser = generate_parser()
    config = parser.parse_args(args)
    request = request_from_config(config)
    check_output(config.output)
    if config.ckpt_path is None:
        raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
    load_checkpoint(config.ckpt_path, "--ckpt_path")
    if config.data is None:
        raise ConfigError("generate needs --config: the `nag fit` YAML whose data the generator was trained on")
    datamodule = parser.instantiate_classes(config).data
    with quiet_lightning():  # the accelerator lines are about training; sampling's device is the config's
        trainer = NagTrainer(**_generation_trainer_settings(config.trainer or {}))
    return trainer.generate(
        None,
        datamodule,
        config.ckpt_path,
        config.output,
        request=request,
        metrics=config.metrics,
        show=config.show,
        quiet=config.quiet,
        verbose=config.verbose,
    )


def _generation_trainer_settings(trainer: dict[str, Any]) -> dict[str, Any]:
    """The config's trainer settings that sampling uses (device and precision); the rest
    (epochs, callbacks, loggers) belong to ``fit``."""
    kept = {k: trainer[k] for k in ("accelerator", "devices", "precision", "enable_progress_bar") if k in trainer}
    return {**kept, "logger": False, "enable_checkpointing": False, "enable_model_summary": False}


def search_main(args: list[str]) -> dict:
    """``nag search --config search.yaml``: a benchmark, a metric and a strategy (each by
    ``class_path``), a query budget and seeds; the arguments are :func:`run_search`'s."""
    parser = ArgumentParser(
        prog="nag search", description=run_search.__doc__, print_config="--print_config", exit_on_error=False
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with the arguments below")
    parser.add_function_arguments(run_search)
    init = parser.instantiate_classes(parser.parse_args(args))
    return run_search(**{k: v for k, v in init.items() if k not in ("config", "__path__")})


def search_hierarchical_main(args: list[str]) -> dict:
    """``nag search-hierarchical --config configs/hierarchical/pipeline.yaml``: a task and
    budgets, the three generator models (fitted and cached unless checkpoints are given), and
    seeds; the arguments are :func:`~nag.search.hierarchical.run_hierarchical_search`'s."""
    from nag.search.hierarchical import run_hierarchical_search

    parser = ArgumentParser(
        prog="nag search-hierarchical",
        description=run_hierarchical_search.__doc__,
        print_config="--print_config",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with the arguments below")
    parser.add_function_arguments(run_hierarchical_search)
    init = parser.instantiate(parser.parse_args(args))
    return run_hierarchical_search(**{k: v for k, v in init.items() if k not in ("config", "__path__")})


def export_main(args: list[str]) -> None:
    """``nag export --arch "<string>" --space nb201 --output model.py|.pt``: the arguments are
    :func:`nag.io.export.export`'s."""
    from nag.io.export import export  # torch.fx/torch.export only for this subcommand

    parser = ArgumentParser(prog="nag export", description=export.__doc__, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with the arguments below")
    parser.add_function_arguments(export)
    config = parser.parse_args(args)
    path = export(**{k: v for k, v in vars(config).items() if k not in ("config", "__path__")})
    print(f"wrote {path}")


def measure_latency_main(args: list[str]) -> None:
    """``nag measure-latency --space nb201 --num_random 20 --output my_device.csv``: time
    architectures on this CPU; the arguments are :func:`nag.hardware.measure_device_table`'s."""
    from nag.hardware import measure_device_table

    parser = ArgumentParser(prog="nag measure-latency", description=measure_device_table.__doc__, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with the arguments below")
    parser.add_function_arguments(measure_device_table)
    config = parser.parse_args(args)
    measure_device_table(**{k: v for k, v in vars(config).items() if k not in ("config", "__path__")})


def _switches(args: list[str]) -> list[str]:
    """``--quiet`` / ``--verbose`` without a value mean ``=true`` (jsonargparse wants a value)."""
    return [
        f"{a}=true" if a in ("--quiet", "--verbose") and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]


def _check_config_files(args: list[str]) -> None:
    """Name the file when a ``--config`` YAML is broken, empty or not a mapping;
    jsonargparse reports these without saying which of several configs it was."""
    for i, a in enumerate(args):
        value = (
            a.split("=", 1)[1]
            if a.startswith(("--config=", "-c="))
            else (args[i + 1] if a in ("--config", "-c") and i + 1 < len(args) else None)
        )
        if value is None or not os.path.isfile(value):
            continue
        try:
            with open(value, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"--config {value!r} is not valid YAML: {getattr(e, 'problem', e)}{where}") from None
        if not isinstance(content, dict):
            got = "nothing" if content is None else f"a {type(content).__name__}"
            raise ConfigError(
                f"--config {value!r} holds {got}; expected a mapping such as 'trainer: {{max_epochs: 5}}'"
            )


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


def _one_line(message: str) -> str:
    """``message`` on one line. jsonargparse explains a Union mismatch over many lines and
    lists "Expected a <class 'NoneType'>" for every optional value; keep what was wrong."""
    if "Does not validate against any of the Union subtypes" not in message:
        return " ".join(message.split())
    lines = message.splitlines()
    bullets: list[str] = []
    given, top, errors_indent = "", len(lines[1]) - len(lines[1].lstrip()), None
    for line in lines[1:]:
        text, indent = line.strip(), len(line) - len(line.lstrip())
        if indent == top:
            errors_indent = indent if text == "Errors:" else None
            if text.startswith("Given value:"):
                given = text.removeprefix("Given value:").strip()
        elif errors_indent is not None and text.startswith("- ") and indent == errors_indent + 2:
            bullets.append(text[2:])
        elif errors_indent is not None and bullets:
            bullets[-1] += " " + text
    bullets = [b for b in bullets if b != "Expected a <class 'NoneType'>"] or bullets
    out = f"{lines[0]} {'; '.join(bullets)}"
    if given and not given.startswith("NestedArg("):
        out += f" (got {given})"
    return " ".join(out.split())


def _user_error(e: BaseException) -> Exception | None:
    """The error a user can fix behind ``e`` (ours, a command-line/YAML error, or a Trainer
    setting Lightning rejects): jsonargparse and Lightning wrap what our classes raise while
    being instantiated or run, and the user needs the original line."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (NagError, ArgumentError, MisconfigurationException)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


#: Every subcommand: its one-line purpose and the function that runs its arguments.
COMMANDS: dict[str, tuple[str, Callable[[list[str]], Any]]] = {
    "fit": ("train a model from a YAML config (Lightning's Trainer; --help lists every option)", lightning_main("fit")),
    "validate": ("score a checkpoint on the validation split", lightning_main("validate")),
    "test": ("score a checkpoint on the held-out test split", lightning_main("test")),
    "predict": ("run a checkpoint's predict step", lightning_main("predict")),
    "generate": (
        "sample architectures from a trained generator: conditions, predictor guidance, a device budget",
        generate_main,
    ),
    "search": ("search a benchmark with a strategy under a query budget, over seeds", search_main),
    "search-hierarchical": (
        "the hierarchical generative pipeline on a real task under FLOPs/params budgets",
        search_hierarchical_main,
    ),
    "export": ("write an architecture as a standalone PyTorch file or a torch.export program", export_main),
    "measure-latency": ("time architectures on this machine and write a device table", measure_latency_main),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {purpose}" for name, (purpose, _) in COMMANDS.items()]
    return (
        "usage: nag <command> [--config FILE] [options] [--debug]\n\n"
        "nag: generate neural architectures with graph diffusion, flows and transformers.\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\n`nag <command> --help` lists a command's options."
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NAG_DEBUG") == "1"
    args = _switches([a for a in args if a != "--debug"])
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return
    command, rest = (args[0], args[1:]) if args else (None, [])
    try:
        if command is None:
            raise ConfigError(f'expected "subcommand": one of {", ".join(COMMANDS)} (nag --help says what each does)')
        if command not in COMMANDS:
            raise ConfigError(f"invalid choice: {command!r} (choose from {', '.join(COMMANDS)}; nag --help)")
        _check_config_files(rest)
        with _quiet_lightning(quiet="--quiet=true" in rest):
            COMMANDS[command][1](rest)
    except Exception as e:
        cause = _user_error(e)
        if cause is None or debug:
            raise
        print(f"error: {_one_line(str(cause))}", file=sys.stderr)
        sys.exit(2)


class _NoTips(logging.Filter):
    """Lightning's promotional tips ("💡 Tip: ... try installing ...") are not ours to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


@contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """For one command: Lightning's tips off; with ``--quiet`` its start-up lines ("GPU
    available: ...") too. Restored afterwards, so nothing leaks into the caller's process."""
    logs = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    sources = [
        logging.getLogger(name)
        for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
    ]
    levels, no_tips = [log.level for log in logs], _NoTips()
    for log in sources:
        log.addFilter(no_tips)
    if quiet:
        for log in logs:
            log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass sys.argv on purpose
            yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)
        for log in sources:
            log.removeFilter(no_tips)


if __name__ == "__main__":
    main()
