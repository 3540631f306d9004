"""The one draw-until-enough loop: sample in rounds (seeds ``seed, seed + 1, ...``) until the
caller has enough, or the draw budget is spent. Filtering generators (a device budget, a
search's usable proposals) differ only in what "enough" means."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nag.diffusion.guidance import GuidanceTerm
from nag.generation.generator import Generator
from nag.spaces.base import Arch


@dataclass
class Draws:
    """Every architecture drawn, in sampling order (``None`` where a sample failed), and how many."""

    archs: list[Arch | None]
    drawn: int
    rounds: int


def draw_until(
    generator: Generator,
    enough: Callable[[list[Arch | None]], bool],
    max_draws: int,
    *,
    batch: int,
    seed: int = 0,
    steps: int | None = None,
    conditions: Mapping[str, Any] | None = None,
    guidance: Sequence[GuidanceTerm] | None = None,
    progress: bool = False,
) -> Draws:
    """Draw ``batch`` samples a round (the last round fewer) until ``enough(archs so far)`` or
    ``max_draws`` were drawn."""
    archs: list[Arch | None] = []
    drawn = rounds = 0
    while drawn < max_draws:
        n = min(batch, max_draws - drawn)
        result = generator.sample(
            n, seed=seed + rounds, steps=steps, conditions=conditions, guidance=guidance, progress=progress
        )
        archs += result.archs
        drawn += n
        rounds += 1
        if enough(archs):
            break
    return Draws(archs, drawn, rounds)
