"""A task as a set: encodes K measured (architecture, score) pairs into one task vector."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn.aggr import SetTransformerAggregation


def context_zscore(v: torch.Tensor, valid: torch.Tensor, min_std: float = 1e-6) -> torch.Tensor:
    """``v`` (``[B, K]`` or ``[B, K, F]``, per feature) z-scored over the valid items of
    each set; invalid items -> 0. ``min_std`` makes a single item (or equal values) read
    as 0, and keeps the gradient finite there.
    """
    m = valid.to(v.dtype).reshape(*valid.shape, *([1] * (v.dim() - 2)))
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (v * m).sum(1, keepdim=True) / n
    std = (((v - mean) * m).square().sum(1, keepdim=True) / n).clamp_min(min_std**2).sqrt()
    return (v - mean) / std * m


class ContextSetEncoder(nn.Module):
    """Maps ``[B, K]`` (architecture embedding, score) pairs with a ``valid`` mask to a task
    vector ``[B, hidden]``, invariant to the order of the pairs.

    Everything is read relative to the context, so an unseen task needs no global
    statistics: scores are z-scored within the set, and so is each arch feature. Each item
    is ``[arch, z, z * arch_rel]``; the product's pooled mean is the set's correlation of
    score with each arch feature, the direction that ranks archs on this task. Without it
    (or with un-centred features, dominated by what all archs share) the task vectors
    collapsed to a constant in training: pooling then has to discover a multiplication.
    Aggregation is PyG's :class:`SetTransformerAggregation` (self-attention between the
    measured archs, then attention pooling). A set with no valid item maps to a learned
    "unknown task" vector: a transfer search starts with nothing measured.
    """

    def __init__(self, arch_dim: int, hidden: int, heads: int = 4) -> None:
        super().__init__()
        self.item = nn.Sequential(nn.Linear(2 * arch_dim + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.aggr = SetTransformerAggregation(hidden, heads=heads, layer_norm=True)
        self.unknown = nn.Parameter(torch.zeros(hidden))

    def forward(self, arch: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``arch [B, K, D]``, ``y [B, K]`` (any scale), ``valid [B, K]`` bool -> ``[B, hidden]``."""
        b = arch.shape[0]
        out = self.unknown.to(arch.dtype).expand(b, -1)
        filled = valid.any(1)
        if not bool(filled.any()):
            return out
        z = context_zscore(y.float(), valid).to(arch.dtype).unsqueeze(-1)
        rel = context_zscore(arch.float(), valid).to(arch.dtype)
        items = self.item(torch.cat([arch, z, z * rel], dim=-1))
        # Only non-empty sets reach the attention: an all-masked row would softmax to NaN,
        # and NaN activations poison weight gradients even where the result is discarded.
        sets = filled.nonzero().squeeze(1)
        keep = valid[sets]
        index = torch.arange(len(sets), device=arch.device).unsqueeze(1).expand_as(keep)[keep]
        pooled = self.aggr(items[sets][keep], index, dim_size=len(sets), max_num_elements=arch.shape[1])
        return out.index_put((sets,), pooled.to(out.dtype))
