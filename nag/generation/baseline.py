"""Generated architectures beside uniform random ones: the first thing a sceptic asks for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nag.benchmarks.base import Benchmark
from nag.diffusion.guidance import GuidanceTerm
from nag.generation.conditions import Conditions
from nag.generation.generated_set import GeneratedSet
from nag.generation.generator import Generator
from nag.generation.output import score_samples
from nag.generation.request import Conditioning, GenerationRequest, Sampling
from nag.generation.run import generate
from nag.report import tables
from nag.spaces.base import SearchSpace


class UniformRandom:
    """The baseline any generator must beat: the space's own sampler, as a
    :class:`~nag.generation.Generator`. It answers every question the same way: conditions,
    guidance and steps are accepted and ignored."""

    condition_names: tuple[str, ...] = ()
    supports_guidance = False

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        steps: int | None = None,
        conditions: Conditions | None = None,
        guidance: Sequence[GuidanceTerm] | None = None,
        progress: bool = False,
    ) -> GeneratedSet:
        return GeneratedSet(self.space.sample(n, np.random.default_rng(seed)), [None] * n)


def compare_with_random(
    generator: Generator,
    train_keys: set[str],
    benchmark: Benchmark | None,
    metrics: Sequence[str],
    n: int = 500,
    seed: int = 0,
    conditions: Conditions | None = None,
) -> tuple[dict[str, dict[str, float]], str]:
    """Score ``n`` samples of ``generator`` (unconditional and, with ``conditions``,
    conditioned) and ``n`` uniform random ones with the same seed; returns the summaries by
    row name and a terminal table of them."""
    sets = {"generated": generate(generator, GenerationRequest(Sampling(n, seed)))}
    if conditions:
        label = ", ".join(f"{k}={v:g}" for k, v in conditions.items() if not isinstance(v, Sequence))
        sets[f"generated | {label}"] = generate(
            generator, GenerationRequest(Sampling(n, seed), Conditioning(conditions))
        )
    sets["uniform random"] = UniformRandom(generator.space).sample(n, seed=seed)
    summaries = {name: score_samples(s, generator.space, train_keys, benchmark, metrics) for name, s in sets.items()}
    return summaries, format_comparison(summaries, metrics)


def format_comparison(summaries: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> str:
    """One row per sample set: validity (raw, before projection; the share projection repaired
    and the node labels and edges it changed in each; where any sample has one, the share whose
    layout was read otherwise than drawn), distinct and novel shares, and the true
    mean, best and top-5 % share of each metric."""
    columns = {
        "validity": "valid",
        "raw_validity": "raw valid",
        "repaired": "repaired",
        "repair_changes": "entries changed",
        "read_by_layout": "read by layout",
        "uniqueness": "distinct",
        "novelty": "novel",
    }
    if not any(s.get("read_by_layout", 0) > 0 for s in summaries.values()):
        del columns["read_by_layout"]  # only where the layout decided something
    for m in metrics:
        columns.update({f"{m}/mean": f"mean {m}", f"{m}/best": f"best {m}", f"{m}/top_share": f"top-5% {m}"})
    rows = [
        {"samples": name, **{label: s.get(key, float("nan")) for key, label in columns.items()}}
        for name, s in summaries.items()
    ]
    return tables.format_table(rows, ["samples", *columns.values()])
