"""Lightning callbacks of nag."""

from nag.callbacks.generation import GenerationMetricsCallback
from nag.callbacks.rng_state import RNGStateCheckpoint

__all__ = ["GenerationMetricsCallback", "RNGStateCheckpoint"]
