"""Generation: the :class:`Generator` protocol, decoded and scored sets, and loading a trained
generator with its search space from its checkpoint alone."""

from nag.generation.generated_set import GeneratedSet, decode_samples
from nag.generation.generator import Conditions, Generator, ModelGenerator
from nag.generation.loading import load_generator
from nag.generation.output import add_predictions, format_table, invalid_reasons, rows_for, score_samples
from nag.io.writers import check_output, write_rows  # re-exported: benchmark scripts write through nag.generation

__all__ = [
    "Conditions",
    "GeneratedSet",
    "Generator",
    "ModelGenerator",
    "add_predictions",
    "check_output",
    "decode_samples",
    "format_table",
    "invalid_reasons",
    "load_generator",
    "rows_for",
    "score_samples",
    "write_rows",
]
