"""``nag generate``'s command line: the request's options grouped by mode, each with a
sentence of help, then the output options and the ``nag fit`` YAML sections it reads.

The option names are :meth:`GenerationRequest.from_flags`'s, one each; their help is the
request dataclasses' own (:mod:`nag.generation.request`), so it is written once.
"""

from __future__ import annotations

from argparse import SUPPRESS
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from nag.generation.request import (
    FLAGS,
    Conditioning,
    DeviceBudget,
    GenerationRequest,
    PredictorGuidance,
    Sampling,
    flag_spec,
)

#: The title of each part's group in ``--help``.
TITLES = {
    Sampling: "sampling",
    Conditioning: "classifier-free conditions (a conditional generator)",
    PredictorGuidance: "predictor guidance (a score-diffusion generator)",
    DeviceBudget: "device budget",
}

DATA_HELP = "The data (space, benchmark, split): class_path and init_args, as in fit."
PREDICTOR_HELP = (
    "A trained PredictorModule of this space: --guide reads its gradients (noise-aware), the device budget ranks by "
    "its first target, and its predictions are listed beside the true metrics."
)


def _field_help(cls: type) -> dict[str, str]:
    """``name -> sentence`` from the ``Args:`` section of ``cls``'s docstring."""
    out: dict[str, str] = {}
    name = None
    in_args = False
    for line in (cls.__doc__ or "").splitlines():
        text = line.strip()
        if text == "Args:":
            in_args = True
            continue
        if not in_args or not text:
            continue
        head, sep, rest = text.partition(": ")
        if sep and " " not in head and line.startswith(" " * 8) and not line.startswith(" " * 12):
            name = head
            out[name] = rest
        elif name is not None:
            out[name] += " " + text
    return out


def generate_parser(resolve: bool = False) -> ArgumentParser:
    """The parser of ``nag generate``: its own options first, the YAML sections last. With
    ``resolve`` the data section is typed (a ``LightningDataModule`` to instantiate); without,
    it is read as a mapping, so the request can be checked before Lightning is imported."""
    parser = ArgumentParser(
        prog="nag generate",
        description="Sample architectures from a trained generator, score them on the config's benchmark beside "
        "uniform random ones, and write them to --output.",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="The `nag fit` YAML the generator was trained with.")
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="The generator's checkpoint (`nag fit`).")
    parser.add_argument("--output", type=str, default="generated.csv", help="Where to write every sample (.csv/.json).")
    for kind, names in FLAGS.items():
        group, helps = parser.add_argument_group(TITLES[kind]), _field_help(kind)
        for name in names:
            annotation, default = flag_spec(kind, name)
            group.add_argument(f"--{name}", type=annotation, default=default, help=helps[name])
        if kind is PredictorGuidance:
            group.add_argument("--predictor_ckpt", type=str | None, default=None, help=PREDICTOR_HELP)
    shown = parser.add_argument_group("what is shown")
    shown.add_argument(
        "--metrics",
        type=list[str] | None,
        default=None,
        help="Benchmark metrics to report (default: the data's targets).",
    )
    shown.add_argument("--show", type=int, default=10, help="How many of the best distinct architectures to print.")
    shown.add_argument("--quiet", type=bool, default=False, help="Print nothing but errors.")
    shown.add_argument("--verbose", type=bool, default=False, help="Print every distinct architecture and failures.")
    sections = parser.add_argument_group("`nag fit` YAML sections (read from --config; see `nag fit --help`)")
    if resolve:
        import pytorch_lightning as pl

        sections.add_subclass_arguments(pl.LightningDataModule, "data", required=False, as_group=False, help=DATA_HELP)
    else:  # plain mappings: resolving class paths would import Lightning before the request is checked
        sections.add_argument("--data", type=dict | None, default=None, help=DATA_HELP)
    trainer = dict[str, Any] if resolve else dict
    sections.add_argument(
        "--trainer", type=trainer | None, default=None, help="accelerator, devices, precision are used."
    )
    for name in ("model", "seed_everything", "test_after_fit", "generate_after_fit", "generate_conditions"):
        sections.add_argument(f"--{name}", type=dict | int | float | bool | None, default=None, help=SUPPRESS)
    return parser


def request_from_config(config: Namespace) -> GenerationRequest:
    """The request a parsed command line describes, validated (one line naming the flag)."""
    names = [name for names in FLAGS.values() for name in names] + ["predictor_ckpt"]
    return GenerationRequest.from_flags(**{name: config[name] for name in names})
