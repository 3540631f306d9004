"""A directed GNN over dense DAG batches that passes messages both along and against edges."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import DenseGraphConv


class BiDirectionalDenseGNN(nn.Module):
    """Encodes ``(X, A, mask)`` DAGs into one vector per graph.

    Each layer sums a convolution over predecessors (``A^T``) and one over successors
    (``A``): a DAG's meaning depends on direction, so neither a symmetrised graph nor a
    single direction is enough (the input node would otherwise never hear the output).
    """

    def __init__(self, num_ops: int, hidden: int = 64, num_layers: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Linear(num_ops, hidden)
        self.forward_convs = nn.ModuleList(DenseGraphConv(hidden, hidden) for _ in range(num_layers))
        self.backward_convs = nn.ModuleList(DenseGraphConv(hidden, hidden) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        adj_t = adj.transpose(1, 2)
        for fwd, bwd, norm in zip(self.forward_convs, self.backward_convs, self.norms):
            h = h + self.dropout(torch.relu(norm(fwd(h, adj_t, mask) + bwd(h, adj, mask))))
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        last = h[torch.arange(h.shape[0], device=h.device), mask.sum(1).long() - 1]
        return torch.cat([mean, last], dim=-1)
