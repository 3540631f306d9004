"""A variational auto-encoder over padded DAG batches ``(X, A, mask)`` of any search space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nag.nn.dag_gnn import BiDirectionalDenseGNN


class GraphEncoder(nn.Module):
    """``(X, A, mask)`` -> Gaussian posterior ``(mu, logvar)`` through the bidirectional DAG
    GNN, which reads edge direction (a cell's function depends on it).

    Node features are the one-hot of the pair (op, place in topological order): the GNN's
    first layer is linear and its readout a mean, so with ops alone (or ops and places side
    by side) the pooled vector would start from op counts and blur which op sits where
    (NB201's six edge nodes differ only by position), while an auto-encoder must tell
    cells apart exactly.
    """

    def __init__(self, num_ops: int, max_nodes: int, latent_dim: int, hidden: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        self.gnn = BiDirectionalDenseGNN(num_ops * max_nodes, hidden, num_layers)
        self.head = nn.Linear(self.gnn.out_dim, 2 * latent_dim)
        self.register_buffer("position", torch.eye(max_nodes), persistent=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = (x.unsqueeze(-1) * self.position.unsqueeze(-2)).flatten(-2)
        h = self.gnn(pairs, adj, mask)
        mu, logvar = self.head(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class GraphDecoder(nn.Module):
    """Latent ``z`` -> per-node op logits over ``num_ops + 1`` classes (the last one is "no
    node", so graphs smaller than ``max_nodes`` are decoded too) and, unless the topology is
    fixed, logits of directed edges ``i -> j``; only ``i < j`` is ever read, so decodes are
    DAGs in topological order by construction.

    The latent is expanded to one token per node position and refined by a transformer
    with full attention, so each node's op and edges are decided jointly with the others.
    """

    def __init__(
        self,
        num_ops: int,
        max_nodes: int,
        latent_dim: int,
        hidden: int = 64,
        num_layers: int = 2,
        heads: int = 4,
        predict_edges: bool = True,
    ) -> None:
        super().__init__()
        self.max_nodes, self.hidden = max_nodes, hidden
        self.expand = nn.Linear(latent_dim, max_nodes * hidden)
        self.position = nn.Parameter(torch.randn(max_nodes, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.op_out = nn.Linear(hidden, num_ops + 1)
        self.edge_src = nn.Linear(hidden, hidden) if predict_edges else None
        self.edge_dst = nn.Linear(hidden, hidden) if predict_edges else None
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 1)) if predict_edges else None

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.expand(z).view(-1, self.max_nodes, self.hidden) + self.position
        h = self.norm(self.transformer(h))
        out = {"ops": self.op_out(h)}
        if self.edge_out is not None:
            out["adj"] = self.edge_out(self.edge_src(h).unsqueeze(2) + self.edge_dst(h).unsqueeze(1)).squeeze(-1)
        return out


class GraphVAE(nn.Module):
    """Encoder + decoder + the reconstruction/KL terms of the ELBO for padded DAG batches.

    With a ``fixed_adj`` (spaces of one topology, e.g. NB201) edges are not decoded: every
    graph gets that adjacency.
    """

    def __init__(
        self,
        num_ops: int,
        max_nodes: int,
        latent_dim: int = 16,
        hidden: int = 64,
        encoder_layers: int = 3,
        decoder_layers: int = 2,
        heads: int = 4,
        fixed_adj: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_ops, self.latent_dim = num_ops, latent_dim
        self.encoder = GraphEncoder(num_ops, max_nodes, latent_dim, hidden, encoder_layers)
        self.decoder = GraphDecoder(
            num_ops, max_nodes, latent_dim, hidden, decoder_layers, heads, predict_edges=fixed_adj is None
        )
        self.register_buffer("fixed_adj", fixed_adj)

    def encode(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, adj, mask)

    def decode_logits(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hard graphs ``x [B, N, V]`` (one-hot, zero rows for absent nodes), ``adj`` (strictly
        upper-triangular among present nodes) and ``mask`` (a prefix), as the space's ``decode``
        reads them."""
        logits = self.decoder(z)
        ops = logits["ops"].argmax(-1)
        # a graph ends at its first absent node: real nodes come first in every space's encoding
        mask = (ops != self.num_ops).long().cumprod(-1).bool()
        x = F.one_hot(ops, self.num_ops + 1)[..., : self.num_ops].float() * mask.unsqueeze(-1)
        if self.fixed_adj is not None:
            adj = self.fixed_adj.expand(z.shape[0], -1, -1).clone()
        else:
            pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
            adj = ((logits["adj"] > 0) & pair).float().triu(1)
        return {"x": x, "adj": adj, "mask": mask}

    def reconstruction_loss(
        self, logits: dict[str, torch.Tensor], x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Negative log-likelihood per graph (summed over nodes and edges, averaged over the batch)."""
        target = torch.where(mask, x.argmax(-1), torch.full_like(mask, self.num_ops, dtype=torch.long))
        nll = F.cross_entropy(logits["ops"].flatten(0, 1), target.flatten(), reduction="sum")
        if "adj" in logits:
            n = adj.shape[-1]
            pairs = (mask.unsqueeze(-1) & mask.unsqueeze(-2)) & torch.ones(
                n, n, dtype=torch.bool, device=adj.device
            ).triu(1)
            nll = nll + F.binary_cross_entropy_with_logits(logits["adj"][pairs], adj[pairs], reduction="sum")
        return nll / x.shape[0]

    def exact_matches(self, z: torch.Tensor, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per graph: does decoding ``z`` give back exactly ``(X, A, mask)``?"""
        g = self.decode(z)
        same_nodes = (g["mask"] == mask).all(-1) & ((g["x"] == x) | ~mask.unsqueeze(-1)).all(-1).all(-1)
        return same_nodes & (g["adj"] == adj).all(-1).all(-1)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, e^logvar) || N(0, I))`` summed over dimensions, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
