"""LightningModules: what nag trains."""

from nag.lightning_modules.predictor import PredictorModule

__all__ = ["PredictorModule"]
