"""Macro data generation: constrained evolution under a real ZC fitness, reproducible by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nag.datamodules.macro_evolution import (
    ZCFitness,
    draw_constraints,
    evolve,
    generate_records,
)
from nag.spaces.macro import MacroSpace
from nag.spaces.macro_tokens import MacroTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_tokenizer() -> MacroTokenizer:
    space = MacroSpace(num_cells=6, stem_channels=(4,), channels=(4, 8), repeats=(1, 2), max_stages=2)
    return MacroTokenizer(
        space,
        num_classes=(2, 3),
        input_sizes=(8,),
        in_channels=1,
        params_range=(1e2, 1e5),
        flops_range=(1e4, 1e8),
        num_bins=8,
    )


def params_fitness(space, arch, constraints) -> float:
    return float(space.params(arch, constraints.num_classes, constraints.in_channels))


def test_evolution_stays_within_budgets_and_climbs_the_fitness() -> None:
    tokenizer = tiny_tokenizer()
    rng = np.random.default_rng(0)
    constraints = draw_constraints(tokenizer, rng)
    found = evolve(tokenizer.space, constraints, params_fitness, rng, population_size=4, sample_size=2, cycles=12)
    values = [v for _, v in found]
    assert values == sorted(values, reverse=True)
    assert all(tokenizer.space.satisfies(a, constraints) for a, _ in found)
    assert len({tokenizer.space.key(a) for a, _ in found}) == len(found)
    # evolution beats the best of its initial random population
    assert values[0] >= max(values[-4:])


def test_records_are_reproducible_and_feasible(shared_data: Path) -> None:
    tokenizer = tiny_tokenizer()
    images = shared_data / "images" / "digits.csv.gz"
    runs = [
        generate_records(
            tokenizer,
            ZCFitness(images, "synflow", batch_size=4),
            num_settings=2,
            population_size=3,
            sample_size=2,
            cycles=3,
            top_k=3,
            seed=5,
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0]
    space = tokenizer.space
    for r in runs[0]:
        arch = space.from_string(r["arch"])
        c = (r["num_classes"], r["input_size"], r["max_params"], r["max_flops"], r["in_channels"])
        assert r["params"] <= r["max_params"] and r["flops"] <= r["max_flops"]
        assert (r["params"], r["flops"]) == space.cost(
            arch, type(draw_constraints(tokenizer, np.random.default_rng(0)))(*c)
        )
        assert np.isfinite(r["fitness"])
    other = generate_records(
        tokenizer,
        ZCFitness(images, "synflow", batch_size=4),
        num_settings=2,
        population_size=3,
        sample_size=2,
        cycles=3,
        top_k=3,
        seed=6,
    )
    assert other != runs[0]
