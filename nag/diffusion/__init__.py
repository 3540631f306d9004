"""Score-based diffusion (Song et al. 2021): forward SDEs and samplers over graph states; categorical
diffusion (D3PM/DiGress) for discrete graph generation."""

from nag.diffusion.discrete import CategoricalDiffusion
from nag.diffusion.samplers import ScoreFn, ode_sample, pc_sample
from nag.diffusion.sde import SDE, VESDE, VPSDE, sde_from_config

__all__ = ["SDE", "VESDE", "VPSDE", "CategoricalDiffusion", "ScoreFn", "ode_sample", "pc_sample", "sde_from_config"]
