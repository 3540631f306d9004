"""A transformer over DAG nodes that predicts the noise on node ops and (optionally) edges.

Sampling calls this network tens of times on batches of thousands of tiny graphs (``N`` of 6
to 8 nodes), so its forward is kept lean while its parameters (and so every checkpoint) keep
the layout they always had:

- the attention mask and the edge bias of every layer are built once per call, in one
  matmul for all layers, and at batch 1 when the topology is fixed (they broadcast);
- the time embedding and the adaLN modulations are computed once when every sample of the
  batch shares its time (which is how every sampler calls it);
- attention is dense masked attention (``scaled_dot_product_attention`` with an additive
  mask) on the weights of the ``nn.MultiheadAttention`` each layer still holds.

``DagTransformer(..., reference=True)`` runs the original per-layer computation through
``nn.MultiheadAttention`` instead; tests and the speed benchmark compare the two. It is a
setting of the instance (its ``reference`` attribute), so one model's path never changes
another's.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nag.nn.embeddings import TimeEmbedding, sinusoidal

AttentionMode = Literal["adjacency", "reachability", "full"]


def dag_attention_mask(adj: torch.Tensor, node_mask: torch.Tensor, mode: AttentionMode) -> torch.Tensor:
    """Boolean ``[B, N, N]``: which node may attend to which.

    ``adjacency``: a node sees its direct predecessors and successors; ``reachability``: every
    ancestor and descendant; ``full``: every real node. Each node always sees itself, and
    padding nodes see only themselves, so no row is empty. Training and sampling both call
    this one function on the same conditioning adjacency, so the masks cannot drift apart.
    ``B`` may be 1 for a fixed topology: the mask then broadcasts over the batch.
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


def edge_pairs(edges: torch.Tensor) -> torch.Tensor:
    """``[B, N, N, 2]``: each edge value ``e[i, j]`` beside ``e[j, i]``."""
    return torch.stack([edges, edges.transpose(-1, -2)], dim=-1)


def shared_time(t: torch.Tensor) -> torch.Tensor:
    """``t[:1]`` when every entry of ``t [B]`` is the same (samplers step the whole batch at one
    time), else ``t``: the time embedding and modulations are then computed once and broadcast."""
    if t.dim() == 1 and t.shape[0] > 1 and bool((t == t[0]).all()):
        return t[:1]
    return t


class DagTransformerLayer(nn.Module):
    """Pre-norm attention + MLP; time enters every layer through a scale/shift (adaLN)."""

    def __init__(self, dim: int, heads: int, dropout: float, pair_channels: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.modulation = nn.Linear(dim, 4 * dim)
        self.edge_bias = nn.Linear(pair_channels, heads)
        self.heads = heads

    def forward(self, h: torch.Tensor, temb: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``h [B, N, D]``, ``temb [B or 1, D]``, ``bias [B or 1, H, N, N]`` (additive, ``-inf``
        where attention is not allowed)."""
        s1, b1, s2, b2 = self.modulation(temb).unsqueeze(1).chunk(4, dim=-1)
        b, n, d = h.shape
        x = torch.addcmul(b1, self.norm1(h), 1 + s1)
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout)
        h = h + self.attn.out_proj(out.transpose(1, 2).reshape(b, n, d))
        return h + self.mlp(torch.addcmul(b2, self.norm2(h), 1 + s2))

    def reference_forward(
        self, h: torch.Tensor, temb: torch.Tensor, allowed: torch.Tensor, pair: torch.Tensor
    ) -> torch.Tensor:
        """The original computation (``nn.MultiheadAttention``, mask and bias rebuilt here)."""
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
    With ``reference`` it runs the original per-layer ``nn.MultiheadAttention`` forward (for
    comparisons).

    With ``self_condition`` (Analog Bits, Chen et al. 2023) the network also reads a clean
    estimate of the graph, its own previous prediction: ``estimate`` ``{"x": [B, N, V]}`` and,
    with ``predict_edges``, ``"adj": [B, N, N]``, zeros where there is none. A sample's edges
    are then decided jointly over the steps instead of each from its own noisy value, which is
    what keeps NB101's samples within its edge cap (``docs/architecture.md``).
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
        reference: bool = False,
        self_condition: bool = False,
    ) -> None:
        super().__init__()
        self.reference = reference
        self.self_condition = self_condition
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.op_in = nn.Linear(num_ops * (2 if self_condition else 1), dim)
        pair_channels = 4 if self_condition and predict_edges else 2
        self.register_buffer("position", sinusoidal(torch.arange(max_nodes), dim), persistent=False)
        self.time = TimeEmbedding(dim)
        self.layers = nn.ModuleList(DagTransformerLayer(dim, heads, dropout, pair_channels) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.op_out = nn.Linear(dim, num_ops)
        self.edge_src = nn.Linear(dim, dim) if predict_edges else None
        self.edge_dst = nn.Linear(dim, dim) if predict_edges else None
        self.edge_in = nn.Linear(pair_channels, dim) if predict_edges else None
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 1)) if predict_edges else None
        self.heads = heads

    def attention_bias(self, pair: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Every layer's additive attention bias, ``[L, B, H, N, N]`` (``B`` that of ``pair`` and
        ``allowed``, 1 for a fixed topology), from one matmul over the layers' edge-bias weights."""
        weight = torch.cat([layer.edge_bias.weight for layer in self.layers])
        bias = torch.cat([layer.edge_bias.bias for layer in self.layers])
        out = F.linear(pair, weight, bias)  # [B, N, N, L * H]
        b, n = out.shape[:2]
        out = out.view(b, n, n, len(self.layers), self.heads).permute(3, 0, 4, 1, 2)
        return out.masked_fill(~allowed.unsqueeze(1), float("-inf"))

    def inputs(
        self, x: torch.Tensor, edges: torch.Tensor, estimate: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node inputs ``[B, N, V or 2V]`` and pair features ``[B, N, N, 2 or 4]``: each edge value
        beside its reverse (so direction is kept), and with ``self_condition`` the estimate's."""
        pair = edge_pairs(edges)
        if not self.self_condition:
            return x, pair
        estimate = estimate or {}
        x = torch.cat([x, estimate.get("x", torch.zeros_like(x))], dim=-1)
        if self.edge_out is not None:  # the edges are generated: their estimate is read too
            clean = estimate.get("adj")
            clean = torch.zeros_like(pair[..., 0]) if clean is None else clean
            pair = torch.cat([pair.expand(clean.shape[0], -1, -1, -1), edge_pairs(clean)], dim=-1)
        return x, pair

    def forward(
        self,
        x: torch.Tensor,
        edges: torch.Tensor,
        node_mask: torch.Tensor,
        t: torch.Tensor,
        allowed: torch.Tensor,
        estimate: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``x [B, N, V]``, ``t [B]``; ``edges`` and ``allowed`` ``[B, N, N]``, or ``[1, N, N]`` when
        every graph of the batch has them in common (a fixed topology). ``node_mask`` is unused
        here (padding is in ``allowed``); it is kept for callers. ``estimate``: the clean
        estimate a ``self_condition`` network reads (None: none yet)."""
        if self.reference:
            return self._reference(x, edges, t, allowed, estimate)
        temb = self.time(shared_time(t))
        x, pair = self.inputs(x, edges, estimate)
        h = self.op_in(x) + self.position + temb.unsqueeze(1)
        pair = pair.to(h.dtype)
        biases = self.attention_bias(pair, allowed)
        for layer, bias in zip(self.layers, biases):
            h = layer(h, temb, bias)
        return self._heads(h, pair)

    def _heads(self, h: torch.Tensor, pair: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.norm(h)
        out = {"x": self.op_out(h)}
        if self.edge_out is not None:
            feats = self.edge_src(h).unsqueeze(2) + self.edge_dst(h).unsqueeze(1) + self.edge_in(pair)
            out["adj"] = self.edge_out(feats).squeeze(-1)
        return out

    def _reference(
        self,
        x: torch.Tensor,
        edges: torch.Tensor,
        t: torch.Tensor,
        allowed: torch.Tensor,
        estimate: dict[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        edges, allowed = edges.expand(b, -1, -1), allowed.expand(b, -1, -1)
        temb = self.time(t)
        x, pair = self.inputs(x, edges, estimate)
        h = self.op_in(x) + self.position + temb.unsqueeze(1)
        pair = pair.to(h.dtype)
        for layer in self.layers:
            h = layer.reference_forward(h, temb, allowed, pair)
        return self._heads(h, pair)
