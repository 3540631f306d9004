"""Stop training at the first non-finite loss, saying where and what to try."""

from __future__ import annotations

import torch

from nag.errors import NagError


def ensure_finite(loss: torch.Tensor, name: str, global_step: int) -> torch.Tensor:
    """Raise one clear line instead of letting NaN/inf silently destroy the weights."""
    if not torch.isfinite(loss):
        raise NagError(
            f"{name} became {loss.item()} at global step {global_step}; "
            "lower model.lr or check the data/targets for NaN or inf values"
        )
    return loss
