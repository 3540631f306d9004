"""Candidate proposals for model-based search: guided generation, or the benchmark's pool.

Generative search loops (transfer, BO) share one shape: propose architectures, rank them
with a model, query the best few. Proposals come from any :class:`~nag.generation.Generator`
(steered by the loop's objective where it takes predictor guidance), or, as the
non-generative reference, from every unqueried benchmarked architecture; both keep only
what the oracle could answer and not yet asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nag.diffusion.guidance import GuidanceTerm
from nag.generation import Conditioning, GenerationRequest, Generator, PredictorGuidance, Sampling, generate
from nag.search.oracle import QueryOracle
from nag.spaces.base import Arch, SearchSpace

#: ``(x, adj, mask) -> [B]`` scores of clean encoded architectures (higher is better).
GraphScorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ProposalStats:
    """What generation yielded, so a search report can say how much of it a search could use:
    ``valid`` samples decode to an architecture of the space, ``in_table`` of those the
    benchmark can answer, ``new`` of those are distinct space keys not yet queried (summed
    over generation calls: what each call offered the search)."""

    sampled: int = 0
    valid: int = 0
    in_table: int = 0
    new: int = 0

    def add(self, sampled: int, valid: int, in_table: int, new: int) -> None:
        self.sampled += sampled
        self.valid += valid
        self.in_table += in_table
        self.new += new

    def __add__(self, other: ProposalStats) -> ProposalStats:
        return ProposalStats(
            self.sampled + other.sampled,
            self.valid + other.valid,
            self.in_table + other.in_table,
            self.new + other.new,
        )


def unqueried(oracle: QueryOracle[Any], archs: Sequence[Arch | None]) -> list[Arch]:
    """Archs the oracle can answer and has not, one per space key, in the given order."""
    seen: set[str] = set()
    out = []
    for arch in archs:
        if arch is None or not oracle.contains(arch) or oracle.queried(arch):
            continue
        key = oracle.space.key(arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


def propose(
    generator: Generator,
    oracle: QueryOracle[Any],
    terms: Sequence[GuidanceTerm],
    num_samples: int,
    steps: int | None,
    seed: int,
    stats: ProposalStats | None = None,
    conditions: Mapping[str, float] | None = None,
) -> list[Arch]:
    """Samples decoded to usable (valid, benchmarked, within the constraints, unqueried,
    distinct) archs, guided by ``terms`` where the generator takes predictor guidance (else
    unguided, ranked afterwards) and asked for ``conditions`` where it is conditional (e.g. a
    latency at the search's budget). The terms' strengths are their own (``guide_scale`` of the
    search), not normalised."""
    guidance = PredictorGuidance(terms=tuple(terms), guide_normalize=False) if generator.supports_guidance else None
    conditioning = Conditioning(dict(conditions)) if conditions else None
    request = GenerationRequest(Sampling(num_samples, seed, steps=steps), conditioning=conditioning, guidance=guidance)
    result = generate(generator, request)
    in_table = [a for a in result.valid if oracle.contains(a)]
    usable = unqueried(oracle, in_table)
    if stats is not None:
        stats.add(len(result), len(result.valid), len(in_table), len(usable))
    return usable


class CandidatePool:
    """Every benchmarked architecture (or the given ``archs``) once per space key, keyed and
    encoded once per search: ranking the whole table each round must not re-hash and re-encode
    26k graphs."""

    def __init__(self, oracle: QueryOracle[Any], archs: Sequence[Arch] | None = None) -> None:
        self.archs = unqueried(oracle, oracle.candidates() if archs is None else archs)
        self.keys = [oracle.space.key(a) for a in self.archs]
        self.position = {k: i for i, k in enumerate(self.keys)}
        self.x, self.adj, self.mask = oracle.space.encode_batch(self.archs)

    def available(self, oracle: QueryOracle[Any]) -> np.ndarray:
        """Indices of the pool's archs whose key has not been queried yet."""
        done = {oracle.space.key(a) for a, _ in oracle.history}
        return np.array([i for i, k in enumerate(self.keys) if k not in done], dtype=np.int64)

    @torch.no_grad()
    def score(
        self, index: np.ndarray, scorer: GraphScorer, device: torch.device | str, chunk: int = 4096
    ) -> torch.Tensor:
        """``scorer`` over the pool entries ``index``, in chunks (``[len(index), ...]``, on CPU)."""
        out = []
        for start in range(0, len(index), chunk):
            i = torch.as_tensor(index[start : start + chunk])
            out.append(scorer(self.x[i].to(device), self.adj[i].to(device), self.mask[i].to(device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def score_archs(
    space: SearchSpace, archs: Sequence[Arch], scorer: GraphScorer, device: torch.device | str, chunk: int = 4096
) -> np.ndarray:
    """``scorer`` over encoded ``archs`` in chunks (the NB201 pool is 15,625 graphs)."""
    scores = []
    for start in range(0, len(archs), chunk):
        x, adj, mask = space.encode_batch(archs[start : start + chunk])
        scores.append(scorer(x.to(device), adj.to(device), mask.to(device)).float().cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first; ties keep proposal order (stable)."""
    return np.argsort(-scores, kind="stable")[:k]
