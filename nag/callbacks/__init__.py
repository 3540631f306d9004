"""Lightning callbacks of nag."""

from nag.callbacks.generation import GenerationMetricsCallback

__all__ = ["GenerationMetricsCallback"]
