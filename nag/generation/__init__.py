"""Generation: the :class:`Generator` protocol, the typed :class:`GenerationRequest` and the one
entry point that runs it (:func:`generate`), decoded and scored sets, and loading a trained
generator with its search space from its checkpoint alone.

The names resolve on first use: ``nag generate`` imports :mod:`nag.generation.request` to check
a request before anything heavy, and importing this package must not pull in torch and Lightning.
"""

from __future__ import annotations

import importlib

#: Each public name and the module that defines it.
_EXPORTS = {
    "Conditioning": "nag.generation.request",
    "Conditions": "nag.generation.conditions",
    "DeviceBudget": "nag.generation.request",
    "GeneratedSet": "nag.generation.generated_set",
    "GenerationRequest": "nag.generation.request",
    "Generator": "nag.generation.generator",
    "ModelGenerator": "nag.generation.generator",
    "PredictorGuidance": "nag.generation.request",
    "Sampling": "nag.generation.request",
    "add_predictions": "nag.generation.output",
    "check_output": "nag.io.writers",  # re-exported: benchmark scripts write through nag.generation
    "decode_samples": "nag.generation.generated_set",
    "format_table": "nag.generation.output",
    "generate": "nag.generation.run",
    "generate_for_device": "nag.generation.device",
    "invalid_reasons": "nag.generation.output",
    "load_generator": "nag.generation.loading",
    "rows_for": "nag.generation.output",
    "score_samples": "nag.generation.output",
    "write_rows": "nag.io.writers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nag.generation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
