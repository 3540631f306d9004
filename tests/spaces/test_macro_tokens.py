"""Macro tokenizer: round trips, budget bins, grammar."""

from __future__ import annotations

import numpy as np
import pytest

from nag.errors import ConfigError, InvalidArchitecture
from nag.spaces.macro import MacroConstraints, MacroSpace
from nag.spaces.macro_tokens import PREFIX_LENGTH, MacroTokenizer, budget_edges

TOKENIZER = MacroTokenizer(
    MacroSpace(num_cells=10, max_stages=3),
    num_classes=(2, 10),
    input_sizes=(16, 28),
    in_channels=1,
    params_range=(1e3, 1e6),
    flops_range=(1e5, 1e9),
    num_bins=12,
)


def random_constraints(rng: np.random.Generator) -> MacroConstraints:
    t = TOKENIZER
    return MacroConstraints(
        int(rng.choice(t.num_classes)),
        int(rng.choice(t.input_sizes)),
        int(rng.choice(t.params_edges)),
        int(rng.choice(t.flops_edges)),
        1,
    )


def test_round_trip_of_architecture_and_constraints() -> None:
    rng = np.random.default_rng(0)
    for arch in TOKENIZER.space.sample(200, rng):
        constraints = random_constraints(rng)
        ids = TOKENIZER.encode(arch, constraints)
        assert len(ids) == PREFIX_LENGTH + 1 + 4 * len(arch.stages) + 1 <= TOKENIZER.max_length
        assert TOKENIZER.decode(ids) == (constraints, arch)
        padded = TOKENIZER.pad([ids])[0].tolist()
        assert TOKENIZER.decode(padded) == (constraints, arch)


def test_encoded_sequences_follow_the_grammar_mask() -> None:
    mask = TOKENIZER.grammar_mask()
    rng = np.random.default_rng(1)
    for arch in TOKENIZER.space.sample(50, rng):
        ids = TOKENIZER.encode(arch, random_constraints(rng))
        assert all(mask[p, i] for p, i in enumerate(ids))
    assert mask.any(1).all()  # every position has some allowed token


def test_budgets_round_down_to_the_nearest_bin() -> None:
    edges = TOKENIZER.params_edges
    c = MacroConstraints(10, 28, edges[3] + 1, TOKENIZER.flops_edges[-1] * 10, 1)
    q = TOKENIZER.quantize(c)
    assert q.max_params == edges[3] and q.max_flops == TOKENIZER.flops_edges[-1]
    with pytest.raises(ConfigError, match="below the smallest budget"):
        TOKENIZER.encode_constraints(c._replace(max_params=edges[0] - 1))
    with pytest.raises(ConfigError, match="num_classes=7"):
        TOKENIZER.encode_constraints(c._replace(num_classes=7))
    assert budget_edges(1e3, 1e6, 4) == (1000, 10000, 100000, 1000000)


def test_grammar_violations_are_named() -> None:
    arch = TOKENIZER.space.sample(1, np.random.default_rng(2))[0]
    ids = TOKENIZER.encode(arch, random_constraints(np.random.default_rng(2)))
    swapped = ids[: PREFIX_LENGTH + 1] + [ids[PREFIX_LENGTH + 2], ids[PREFIX_LENGTH + 1]] + ids[PREFIX_LENGTH + 3 :]
    with pytest.raises(InvalidArchitecture, match=f"position {PREFIX_LENGTH + 1}"):
        TOKENIZER.decode(swapped)
    with pytest.raises(InvalidArchitecture, match="no <eos>"):
        TOKENIZER.decode(ids[:-1])
    with pytest.raises(InvalidArchitecture, match="cannot stand at position"):
        TOKENIZER.decode(ids[:PREFIX_LENGTH] + [TOKENIZER.eos_id])


def test_config_rebuilds_the_same_vocabulary() -> None:
    again = MacroTokenizer.from_config(TOKENIZER.config())
    assert again.tokens == TOKENIZER.tokens and again.max_length == TOKENIZER.max_length
    assert again.space.cells == TOKENIZER.space.cells
    with pytest.raises(ConfigError, match="no cell vocabulary"):
        MacroTokenizer(MacroSpace())
