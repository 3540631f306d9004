"""The diffusion state of an architecture graph, and how predictors read a noisy one.

Score diffusion works on a signed state ``{"x": [B, N, V], "adj": [B, N, N]}`` (``adj`` only
where the topology varies), clean values in {-1, 1} and padding rows all -1. Only the entries
the space leaves open are diffused (:func:`diffused_entries`): the ops allowed at each position
and, where each layer reads one earlier node (``single_input``), one source per layer; every
other entry holds 0 at every time, so what a sampler returns is read as one categorical per
position and per layer and is a member of the space by construction. Noise-aware predictors
and guidance must read exactly what the sampler holds at time ``t``; these functions are the
one place that maps between a clean batch, a noised state and the ``(x, adj, mask)`` a graph
encoder takes, used by training and by guidance alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nag.diffusion.sde import SDE

State = dict[str, torch.Tensor]


def reading_nodes(n: int) -> torch.Tensor:
    """``[N]`` True at the nodes that draw a source in a ``single_input`` space: all but the first
    (the input) and the last (the output, which reads what no other node reads)."""
    return (torch.arange(n) > 0) & (torch.arange(n) < n - 1)


def diffused_entries(spec: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Bool masks (no batch dimension) of the state entries a diffusion generates, from a
    datamodule's ``spec()``: ``x [N, V]`` the ops the space allows at each position (all of them
    where the spec predates ``allowed_ops``); ``adj [N, N]`` where the topology varies: node
    ``j``'s column above the diagonal, only for the reading nodes where the space is
    ``single_input`` (the output's column follows from the sources)."""
    n, v = spec["max_nodes"], spec["num_ops"]
    allowed = spec.get("allowed_ops")
    entries = {"x": torch.ones(n, v, dtype=torch.bool) if allowed is None else torch.tensor(allowed, dtype=torch.bool)}
    if not spec.get("fixed_topology", False):
        upper = torch.ones(n, n, dtype=torch.bool).triu(1)
        entries["adj"] = upper & reading_nodes(n) if spec.get("single_input", False) else upper
    return entries


def edges_from_sources(sources: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` edges of ``sources [B, N]`` (node ``j`` reads ``sources[j]``; the entries of the
    first and last node are ignored): the last node reads every node between that no other reads,
    which is what ``single_input`` means."""
    n = sources.shape[1]
    reading = reading_nodes(n).to(sources.device)
    reads = F.one_hot(sources, n).transpose(1, 2) * reading  # reads[b, i, j]: j reads i
    unread = (reads.sum(2) == 0) & reading
    reads[:, :, -1] = unread.long()
    return reads


def to_signed(onehot: torch.Tensor) -> torch.Tensor:
    """{0, 1} -> {-1, 1}: a symmetric target for Gaussian diffusion; an all -1 row is padding."""
    return onehot * 2.0 - 1.0


def end_runs_at_stop(
    x: torch.Tensor, runs: Sequence[Sequence[int]], stop: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [S, N, V]`` op scores with every position of each run after its first ``stop`` (by
    argmax) read as ``stop`` (one-hot): the run's end is drawn slot by slot, and what the network
    drew after it is not read (:meth:`nag.spaces.SearchSpace.stop_runs`). Also ``[S]``: how many
    positions of each sample held another op there (reported beside raw validity)."""
    unread = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if stop is None or not runs:
        return x, unread
    x = x.clone()
    for run in runs:
        index = torch.as_tensor(run, device=x.device)
        drawn = x[:, index].argmax(-1)
        stopped = (drawn == stop).long().cummax(1).values.bool()
        unread += (stopped & (drawn != stop)).sum(1)
        x[:, index] = torch.where(stopped.unsqueeze(-1), F.one_hot(torch.tensor(stop), x.shape[-1]).to(x), x[:, index])
    return x, unread


def clean_state(batch: Mapping[str, torch.Tensor], entries: Mapping[str, torch.Tensor]) -> tuple[State, State]:
    """Signed clean graph, 0 outside the diffused ``entries`` (:func:`diffused_entries`), and those
    masks broadcast to the batch."""
    masks = {k: m.to(batch[k].device).expand_as(batch[k]) for k, m in entries.items()}
    return {k: to_signed(batch[k]) * masks[k] for k in masks}, masks


def perturb_state(
    state: State, masks: State, sde: SDE, t: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[State, State]:
    """A draw of ``x_t ~ p_t(. | x_0)`` for every part, and the unit noise used."""
    noise = {k: torch.randn(v.shape, device=v.device, generator=generator) * masks[k] for k, v in state.items()}
    noisy = {k: sde.perturb(v, t, noise[k]) * masks[k] for k, v in state.items()}
    return noisy, noise


def encoder_inputs(state: State, fixed_adj: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, adj, mask)`` for a graph encoder from a (noisy) signed state.

    The map back to the {0, 1} scale is linear, so the encoder's gradient reaches every
    entry of ``x_t`` (guidance needs it); every node position is kept because padding is
    itself a generated quantity (an all -1 row), not something known in advance.
    """
    x = (state["x"] + 1.0) / 2.0
    b, n = x.shape[:2]
    adj = fixed_adj.expand(b, -1, -1) if "adj" not in state else ((state["adj"] + 1.0) / 2.0).triu(1)
    return x, adj, torch.ones(b, n, dtype=torch.bool, device=x.device)


def sample_times(
    batch_size: int, sde: SDE, eps: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform diffusion times in ``[eps, T)``."""
    return torch.rand(batch_size, device=device, generator=generator) * (sde.T - eps) + eps
