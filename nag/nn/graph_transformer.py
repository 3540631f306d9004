"""A graph transformer over node AND edge features (DiGress-style) for discrete graph diffusion.

The forward fuses what it can without changing the parameters (checkpoints load as before):
scale-and-shift as one ``addcmul``, the time embedding computed once when the whole batch shares
its time, and a fixed graph's edge tokens embedded at batch 1 (they broadcast until the first
edge update). ``GraphTransformer(..., reference=True)`` (a setting of the instance) runs the
original computation instead; tests and the speed benchmark compare the two."""

from __future__ import annotations

import math

import torch
from torch import nn

from nag.nn.dag_transformer import shared_time
from nag.nn.embeddings import TimeEmbedding, sinusoidal


class GraphTransformerLayer(nn.Module):
    """Nodes attend to every node; the edge feature of each ordered pair scales and shifts
    the attention logits (FiLM per head), and each edge is updated by an MLP of itself and
    those logits. The conditioning vector (time + conditions) scales/shifts both streams
    (adaLN). Kept lean (2x MLPs, one edge MLP): sampling runs it hundreds of times on CPU."""

    def __init__(self, dim: int, edge_dim: int, heads: int, dropout: float, update_edges: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.edge_film = nn.Linear(edge_dim, 2 * heads)
        self.node_norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.node_norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.edge_norm = nn.LayerNorm(edge_dim, elementwise_affine=False)
        self.node_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        self.edge_mlp = (
            nn.Sequential(nn.Linear(edge_dim + heads, 2 * edge_dim), nn.SiLU(), nn.Linear(2 * edge_dim, edge_dim))
            if update_edges
            else None
        )
        self.modulation = nn.Linear(dim, 4 * dim + 2 * edge_dim)
        self.dropout = nn.Dropout(dropout)
        self.split = (dim, dim, dim, dim, edge_dim, edge_dim)

    def forward(self, h: torch.Tensor, e: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [B, N, D]``, ``e [B or 1, N, N, De]``, ``c [B or 1, D]``. Without ``update_edges``
        (the last layer when nothing reads the edges afterwards) the edges pass through."""
        ns1, nb1, ns2, nb2, es, eb = self.modulation(c).split(self.split, dim=-1)
        b, n, d = h.shape
        hd = d // self.heads
        x = torch.addcmul(nb1[:, None], self.node_norm1(h), 1 + ns1[:, None])
        y = torch.addcmul(eb[:, None, None], self.edge_norm(e), 1 + es[:, None, None])
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        mul, add = self.edge_film(y).permute(0, 3, 1, 2).chunk(2, dim=1)
        logits = torch.addcmul(add, q @ k.transpose(-1, -2), 1 + mul, value=1.0 / math.sqrt(hd))  # [B, H, N, N]
        attn = self.dropout(logits.softmax(-1))
        h = h + self.out((attn @ v).transpose(1, 2).reshape(b, n, d))
        h = h + self.node_mlp(torch.addcmul(nb2[:, None], self.node_norm2(h), 1 + ns2[:, None]))
        if self.edge_mlp is not None:
            e = e + self.edge_mlp(torch.cat([y.expand(b, -1, -1, -1), logits.permute(0, 2, 3, 1)], dim=-1))
        return h, e

    def reference_forward(self, h: torch.Tensor, e: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The original computation of :meth:`forward`."""
        ns1, nb1, ns2, nb2, es, eb = self.modulation(c).split(self.split, dim=-1)
        b, n, d = h.shape
        x = self.node_norm1(h) * (1 + ns1[:, None]) + nb1[:, None]
        y = self.edge_norm(e) * (1 + es[:, None, None]) + eb[:, None, None]
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mul, add = self.edge_film(y).permute(0, 3, 1, 2).chunk(2, dim=1)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) * (1 + mul) + add  # [B, H, N, N]
        attn = self.dropout(logits.softmax(-1))
        h = h + self.out((attn @ v).transpose(1, 2).reshape(b, n, d))
        h = h + self.node_mlp(self.node_norm2(h) * (1 + ns2[:, None]) + nb2[:, None])
        if self.edge_mlp is not None:
            e = e + self.edge_mlp(torch.cat([y, logits.permute(0, 2, 3, 1)], dim=-1))
        return h, e


class GraphTransformer(nn.Module):
    """Predicts clean node and edge classes (logits) from a noisy discrete graph.

    Nodes are embedded from their class plus a sinusoidal code of their index (their place
    in topological order). The edge token of pair ``(i, j)`` says whether ``i < j``
    (forward, carrying the class of ``i -> j``), ``i > j`` (backward, carrying the class of
    ``j -> i``) or ``i = j``; so attention from a node to a predecessor differs from
    attention to a successor and direction is never lost. ``cond [B, D]`` (e.g. a
    condition embedding) is added to the timestep embedding. With ``reference`` it runs the
    original forward (for comparisons).
    """

    def __init__(
        self,
        node_classes: int,
        edge_classes: int,
        max_nodes: int,
        dim: int = 64,
        edge_dim: int = 16,
        layers: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        predict_edges: bool = True,
        reference: bool = False,
    ) -> None:
        super().__init__()
        self.reference = reference
        self.edge_classes = edge_classes
        self.node_in = nn.Embedding(node_classes, dim)
        self.edge_in = nn.Embedding(2 * edge_classes + 1, edge_dim)
        self.register_buffer("position", sinusoidal(torch.arange(max_nodes), dim), persistent=False)
        n = torch.arange(max_nodes)
        self.register_buffer("direction", torch.sign(n[None, :] - n[:, None]), persistent=False)
        self.time = TimeEmbedding(dim)
        self.layers = nn.ModuleList(
            GraphTransformerLayer(dim, edge_dim, heads, dropout, predict_edges or i < layers - 1) for i in range(layers)
        )
        self.node_norm = nn.LayerNorm(dim)
        self.node_out = nn.Linear(dim, node_classes)
        self.predict_edges = predict_edges
        if predict_edges:
            self.edge_norm = nn.LayerNorm(edge_dim)
            self.edge_src = nn.Linear(dim, edge_dim)
            self.edge_dst = nn.Linear(dim, edge_dim)
            self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(edge_dim, edge_classes))

    def edge_tokens(self, edges: torch.Tensor) -> torch.Tensor:
        """``[B, N, N]`` token ids from the upper-triangular directed classes ``edges``."""
        forward = edges.triu(1)
        backward = forward.transpose(-1, -2) + self.edge_classes
        diagonal = torch.full_like(forward, 2 * self.edge_classes)
        d = self.direction
        return torch.where(d > 0, forward, torch.where(d < 0, backward, diagonal))

    def forward(
        self, nodes: torch.Tensor, edges: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``nodes [B, N]`` and ``edges [B, N, N]`` class ids (``[1, N, N]`` for a graph the whole
        batch shares), ``t [B]`` in ``[0, 1]``.

        Returns logits ``nodes [B, N, Kn]`` and, with ``predict_edges``, ``edges [B, N, N, Ke]``
        (meaningful for ``i < j``); spaces with a fixed graph only read the edges."""
        if self.reference:
            edges = edges.expand(nodes.shape[0], -1, -1)
            c = self.time(t)
        else:
            c = self.time(shared_time(t))  # [1, D] when the batch shares its time: broadcast
        if cond is not None:
            c = c + cond
        h = self.node_in(nodes) + self.position + c[:, None]
        e = self.edge_in(self.edge_tokens(edges))
        for layer in self.layers:
            h, e = layer.reference_forward(h, e, c) if self.reference else layer(h, e, c)
        h = self.node_norm(h)
        out = {"nodes": self.node_out(h)}
        if self.predict_edges:
            pair = self.edge_norm(e) + self.edge_src(h)[:, :, None] + self.edge_dst(h)[:, None, :]
            out["edges"] = self.edge_out(pair)
        return out
