"""A transformer over DAG nodes that predicts the noise on node ops and (optionally) edges."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from nag.nn.embeddings import TimeEmbedding, sinusoidal

AttentionMode = Literal["adjacency", "reachability", "full"]


def dag_attention_mask(adj: torch.Tensor, node_mask: torch.Tensor, mode: AttentionMode) -> torch.Tensor:
    """Boolean ``[B, N, N]``: which node may attend to which.

    ``adjacency``: a node sees its direct predecessors and successors; ``reachability``: every
    ancestor and descendant; ``full``: every real node. Each node always sees itself, and
    padding nodes see only themselves, so no row is empty. Training and sampling both call
    this one function on the same conditioning adjacency, so the masks cannot drift apart.
    """
    a = adj > 0.5
    n = adj.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=adj.device).expand_as(a)
    real = node_mask.unsqueeze(-1) & node_mask.unsqueeze(-2)
    if mode == "full":
        allowed = real
    else:
        if mode == "reachability":
            reach = a
            for _ in range(n - 1):
                reach = reach | ((reach.float() @ a.float()) > 0)
            a = reach
        elif mode != "adjacency":
            raise ValueError(f"unknown attention mode {mode!r}; expected adjacency, reachability or full")
        allowed = (a | a.transpose(-1, -2)) & real
    return allowed | eye


class DagTransformerLayer(nn.Module):
    """Pre-norm attention + MLP; time enters every layer through a scale/shift (adaLN)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.modulation = nn.Linear(dim, 4 * dim)
        self.edge_bias = nn.Linear(2, heads)
        self.heads = heads

    def forward(self, h: torch.Tensor, temb: torch.Tensor, allowed: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        s1, b1, s2, b2 = self.modulation(temb).unsqueeze(1).chunk(4, dim=-1)
        bias = self.edge_bias(pair).permute(0, 3, 1, 2)
        bias = bias.masked_fill(~allowed.unsqueeze(1), float("-inf")).flatten(0, 1)
        x = self.norm1(h) * (1 + s1) + b1
        h = h + self.attn(x, x, x, attn_mask=bias.to(x.dtype), need_weights=False)[0]
        return h + self.mlp(self.norm2(h) * (1 + s2) + b2)


class DagTransformer(nn.Module):
    """Noise prediction for graph diffusion over ``(X, A)``.

    Nodes are embedded from their (noisy) op vector plus a sinusoidal encoding of their
    index, which is their place in topological order. ``edges`` are the (noisy, continuous)
    edge values ``A_t[i, j]``: every layer's attention is biased by them in both directions,
    so edge direction is kept, and the edge head reads them too, so its score for ``(i, j)``
    knows where ``A_t[i, j]`` stands (a thresholded mask alone would hide it). Attention is
    masked by :func:`dag_attention_mask`. With ``predict_edges`` the edge head scores every
    ordered pair ``(i, j)``; callers keep only ``i < j``, so samples are DAGs by construction.
    """

    def __init__(
        self,
        num_ops: int,
        max_nodes: int,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        predict_edges: bool = False,
    ) -> None:
        super().__init__()
        self.op_in = nn.Linear(num_ops, dim)
        self.register_buffer("position", sinusoidal(torch.arange(max_nodes), dim), persistent=False)
        self.time = TimeEmbedding(dim)
        self.layers = nn.ModuleList(DagTransformerLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.op_out = nn.Linear(dim, num_ops)
        self.edge_src = nn.Linear(dim, dim) if predict_edges else None
        self.edge_dst = nn.Linear(dim, dim) if predict_edges else None
        self.edge_in = nn.Linear(2, dim) if predict_edges else None
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 1)) if predict_edges else None

    def forward(
        self, x: torch.Tensor, edges: torch.Tensor, node_mask: torch.Tensor, t: torch.Tensor, allowed: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        temb = self.time(t)
        h = self.op_in(x) + self.position + temb.unsqueeze(1)
        pair = torch.stack([edges, edges.transpose(-1, -2)], dim=-1).to(h.dtype)
        for layer in self.layers:
            h = layer(h, temb, allowed, pair)
        h = self.norm(h)
        out = {"x": self.op_out(h)}
        if self.edge_out is not None:
            feats = self.edge_src(h).unsqueeze(2) + self.edge_dst(h).unsqueeze(1) + self.edge_in(pair)
            out["adj"] = self.edge_out(feats).squeeze(-1)
        return out
