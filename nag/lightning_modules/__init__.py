"""LightningModules: what nag trains."""

from nag.lightning_modules.cell_encoder import CellEncoderModule
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.lightning_modules.macro_transformer import MacroTransformerModule
from nag.lightning_modules.meta_predictor import MetaPredictorModule
from nag.lightning_modules.predictor import PredictorModule

__all__ = [
    "CellEncoderModule",
    "CellFlowModule",
    "DiscreteDiffusionModule",
    "MacroTransformerModule",
    "MetaPredictorModule",
    "PredictorModule",
]
