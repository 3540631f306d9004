"""nag's own subcommands: each parses its arguments into one library call (``generate`` into a
:class:`~nag.generation.request.GenerationRequest`, checked before any model or data loads)."""

from __future__ import annotations

from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from nag.errors import ConfigError
from nag.generation.request_parser import generate_parser, request_from_config
from nag.io.writers import check_output


def generate_main(args: list[str]) -> dict[str, float]:
    """``nag generate --config fit.yaml --ckpt_path last.ckpt [request options]``: the request
    and the paths are checked first (no model or data loaded), then the config's data and
    trainer settings are built and :meth:`NagTrainer.generate` runs the request."""
    config = generate_parser().parse_args(args)
    request = request_from_config(config)
    check_output(config.output)
    if config.ckpt_path is None:
        raise ConfigError("generate needs --ckpt_path: the checkpoint written by `nag fit`")
    from nag.io.checkpoints import load_checkpoint  # torch and Lightning from here on
    from nag.lightning_modules.in_loop import quiet_lightning
    from nag.trainer import NagTrainer

    load_checkpoint(config.ckpt_path, "--ckpt_path")
    if config.data is None:
        raise ConfigError("generate needs --config: the `nag fit` YAML whose data the generator was trained on")
    parser = generate_parser(resolve=True)
    sections = parser.parse_args(args)
    datamodule = parser.instantiate_classes(sections).data
    with quiet_lightning():  # the accelerator lines are about training; sampling's device is the config's
        trainer = NagTrainer(**_generation_trainer_settings(sections.trainer or {}))
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
    from nag.search.runner import run_search

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
