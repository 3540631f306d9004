"""Generation: the :class:`Generator` protocol, the typed :class:`GenerationRequest` and the one
entry point that runs it (:func:`generate`), decoded and scored sets, and loading a trained
generator with its search space from its checkpoint alone."""

from nag.generation.device import generate_for_device
from nag.generation.generate import generate
from nag.generation.generated_set import GeneratedSet, decode_samples
from nag.generation.generator import Conditions, Generator, ModelGenerator
from nag.generation.loading import load_generator
from nag.generation.output import add_predictions, format_table, invalid_reasons, rows_for, score_samples
from nag.generation.request import Conditioning, DeviceBudget, GenerationRequest, PredictorGuidance, Sampling
from nag.io.writers import check_output, write_rows  # re-exported: benchmark scripts write through nag.generation

__all__ = [
    "Conditioning",
    "Conditions",
    "DeviceBudget",
    "GeneratedSet",
    "GenerationRequest",
    "Generator",
    "ModelGenerator",
    "PredictorGuidance",
    "Sampling",
    "add_predictions",
    "check_output",
    "decode_samples",
    "format_table",
    "generate",
    "generate_for_device",
    "invalid_reasons",
    "load_generator",
    "rows_for",
    "score_samples",
    "write_rows",
]
