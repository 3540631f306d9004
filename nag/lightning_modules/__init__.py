"""LightningModules: what nag trains."""

from nag.lightning_modules.meta_predictor import MetaPredictorModule
from nag.lightning_modules.predictor import PredictorModule

__all__ = ["MetaPredictorModule", "PredictorModule"]
