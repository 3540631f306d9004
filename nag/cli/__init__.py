"""``nag``: one table of subcommands (:data:`COMMANDS`), each a function of its arguments, all
behind one error wrapper: errors a user can fix print one line (``error: ...``) and exit 2;
``--debug`` shows the traceback instead.

``fit | validate | test | predict`` are Lightning's (:mod:`nag.cli.lightning`); ``generate``,
``search``, ``search-hierarchical``, ``export`` and ``measure-latency`` are nag's own
(:mod:`nag.cli.commands`). A command's module is imported when it runs, so ``nag --help`` and
a bad ``nag generate`` value answer before torch and Lightning load.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import yaml
from jsonargparse import ArgumentError

from nag.errors import ConfigError, NagError

#: Every subcommand: its one-line purpose and the function that runs its arguments ("module:name").
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("train a model from a YAML config (Lightning's Trainer; --help lists every option)", "lightning:fit"),
    "validate": ("score a checkpoint on the validation split", "lightning:validate"),
    "test": ("score a checkpoint on the held-out test split", "lightning:test"),
    "predict": ("run a checkpoint's predict step", "lightning:predict"),
    "generate": (
        "sample architectures from a trained generator: conditions, predictor guidance, a device budget",
        "commands:generate_main",
    ),
    "search": ("search a benchmark with a strategy under a query budget, over seeds", "commands:search_main"),
    "search-hierarchical": (
        "the hierarchical generative pipeline on a real task under FLOPs/params budgets",
        "commands:search_hierarchical_main",
    ),
    "export": ("write an architecture as a standalone PyTorch file or a torch.export program", "commands:export_main"),
    "measure-latency": ("time architectures on this machine and write a device table", "commands:measure_latency_main"),
}


#: CPU threads of a nag command unless the environment sets them. nag's models are small: on
#: the 2-core machine the main job (``nag fit --config configs/quickstart.yaml``) takes 54 s
#: with torch's two threads when idle but 156 s beside one busy process, as OpenMP's threads spin
#: at each barrier for a core the other process holds; with one thread, 59 s idle and 61 s beside
#: it (waiting passively instead: 88 s idle, 66 s busy). One thread also keeps a run's numbers
#: the same whatever else the machine runs. On a machine of your own, set OMP_NUM_THREADS.
THREADS = {"OMP_NUM_THREADS": "1"}


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
        _check_list_indices(rest)
        if "torch" not in sys.modules:  # torch reads them when it loads, below; a caller's torch is its own
            for variable, value in THREADS.items():
                os.environ.setdefault(variable, value)
        module, name = COMMANDS[command][1].split(":")
        run = getattr(importlib.import_module(f"nag.cli.{module}"), name)
        with _quiet_lightning(quiet="--quiet=true" in rest):
            run(rest)
    except Exception as e:
        cause = _user_error(e)
        if cause is None or debug:
            raise
        print(f"error: {_one_line(str(cause))}", file=sys.stderr)
        sys.exit(2)


def _switches(args: list[str]) -> list[str]:
    """``--quiet`` / ``--verbose`` without a value mean ``=true`` (jsonargparse wants a value)."""
    return [
        f"{a}=true" if a in ("--quiet", "--verbose") and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]


def _check_list_indices(args: list[str]) -> None:
    """jsonargparse cannot set one element of a list by index (``--data.init_args.benchmarks.0
    .init_args.path``) and its own error does not say what to do instead."""
    for a in args:
        m = re.match(r"--((?:[\w-]+\.)*?[\w-]+)\.(\d+)(\.|=|$)", a)
        if m:
            raise ConfigError(
                f"{a.split('=', 1)[0]}: a list element cannot be set by its index; give the whole list, e.g. "
                f'--{m.group(1)} \'[{{"class_path": ..., "init_args": {{...}}}}]\', or put it in a YAML passed '
                "as a second --config"
            )


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
    lightning = sys.modules.get("lightning_fabric.utilities.exceptions")  # absent: nothing of Lightning ran
    kinds = (NagError, ArgumentError) + ((lightning.MisconfigurationException,) if lightning else ())
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, kinds):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


#: Every subcommand: its one-line purpose and the function that runs its arguments.
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
