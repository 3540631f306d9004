"""A task as a set: encodes K measured (architecture, score) pairs into one task vector."""

from __future__ import annotations

import os
import torch
from torch import nn
from torch_geometric.nn.aggr import SetTransformerAggregation


def context_zscore(y: torch.Tensor, valid: torch.Tensor, min_std: float = 1e-6) -> torch.Tensor:
    """``y`` z-scored over the valid items of each set (``[B, K]``; invalid items -> 0).

    Scores are read relative to the context so that an unseen task needs no global
    statistics; ``min_std`` makes a single item (or a set of equal scores) read as 0.
    """
    v = valid.to(y.dtype)
    n = v.sum(1, keepdim=True).clamp_min(1.0)
    mean = (y * v).sum(1, keepdim=True) / n
    std = (((y - mean) * v).square().sum(1, keepdim=True) / n).sqrt().clamp_min(min_std)
    return (y - mean) / std * v


class ContextSetEncoder(nn.Module):
    """Maps ``[B, K]`` (architecture embedding, score) pairs with a ``valid`` mask to a task
    vector ``[B, hidden]``, invariant to the order of the pairs.

    Each item is ``[arch, z, z * arch]``: the product makes "which arch features go with a
    high score" (what tells tasks apart, since context scores are z-scored and sum to zero)
    available to pooling without first having to learn a multiplication. Aggregation is
    PyG's :class:`SetTransformerAggregation` (self-attention between the measured archs,
    then attention pooling), so items are weighed against each other rather than summed.
    A set with no valid item maps to a learned "unknown task" vector: a transfer search
    starts with nothing measured.
    """

    def __init__(self, arch_dim: int, hidden: int, heads: int = 4) -> None:
        super().__init__()
        self.hidden = hidden
        self.item = nn.Sequential(nn.Linear(2 * arch_dim + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.aggr = SetTransformerAggregation(hidden, heads=heads, layer_norm=os.environ.get('LN','1')=='1', num_encoder_blocks=int(os.environ.get('ENC','1')), num_decoder_blocks=int(os.environ.get('DEC','1')))
        self.unknown = nn.Parameter(torch.zeros(hidden))

    def forward(self, arch: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``arch [B, K, D]``, ``y [B, K]`` (any scale), ``valid [B, K]`` bool -> ``[B, hidden]``."""
        b = arch.shape[0]
        out = self.unknown.to(arch.dtype).expand(b, -1)
        filled = valid.any(1)
        if not bool(filled.any()):
            return out
        z = context_zscore(y.float(), valid).to(arch.dtype).unsqueeze(-1)
        items = self.item(torch.cat([arch, z, z * arch], dim=-1))
        # Only non-empty sets reach the attention: an all-masked row would softmax to NaN,
        # and NaN activations poison weight gradients even where the result is discarded.
        sets = filled.nonzero().squeeze(1)
        keep = valid[sets]
        index = torch.arange(len(sets), device=arch.device).unsqueeze(1).expand_as(keep)[keep]
        pooled = self.aggr(items[sets][keep], index, dim_size=len(sets), max_num_elements=arch.shape[1])
        return out.index_put((sets,), pooled.to(out.dtype))
