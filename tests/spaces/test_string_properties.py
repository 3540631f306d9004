"""Every search space's string form, by property: valid strings round-trip, and junk or
near-miss strings fail with a one-line InvalidArchitecture, never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nag.spaces
from nag.errors import InvalidArchitecture
from nag.spaces.base import SearchSpace

#: Every space the package exports, so a new one is covered without editing this file.
SPACES = [
    getattr(nag.spaces, n)()
    for n in nag.spaces.__all__
    if isinstance(getattr(nag.spaces, n), type)
    and issubclass(getattr(nag.spaces, n), SearchSpace)
    and getattr(nag.spaces, n) is not SearchSpace
]
PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_refuse(space: SearchSpace, text: str) -> None:
    """The contract: a member of the space, or InvalidArchitecture in one line."""
    try:
        arch = space.from_string(text)
    except InvalidArchitecture as e:
        assert "\n" not in str(e) and str(e)
        return
    space.validate(arch)
    assert space.from_string(space.to_string(arch)) == arch


def test_every_exported_space_is_covered():
    assert {type(s).__name__ for s in SPACES} >= {"NB201Space", "NB101Space", "NBGraphSpace", "MBV3Space"}


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1))
def test_sampled_architectures_round_trip_through_their_string(space, seed):
    arch = space.sample(1, np.random.default_rng(seed))[0]
    text = space.to_string(arch)
    parsed = space.from_string(text)
    assert space.to_string(parsed) == text
    assert space.key(parsed) == space.key(arch)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
@PROPERTY
@given(text=st.text(max_size=80))
def test_junk_strings_give_invalid_architecture(space, text):
    parse_or_refuse(space, text)


@st.composite
def near_misses(draw, space: SearchSpace) -> str:
    """A valid string with a few character edits: deletions, insertions from the string's
    own alphabet, swaps and truncations land where parsers index and convert."""
    text = space.to_string(space.sample(1, np.random.default_rng(draw(st.integers(0, 2**16))))[0])
    alphabet = sorted(set(text) | set("0123456789-,|~:;+ "))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(0, len(text) - 1)))
        edit = draw(st.sampled_from(["delete", "insert", "swap", "truncate", "double"]))
        if edit == "delete":
            text = text[:i] + text[i + 1 :]
        elif edit == "insert":
            text = text[:i] + draw(st.sampled_from(alphabet)) + text[i:]
        elif edit == "swap" and len(text) > i + 1:
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif edit == "truncate":
            text = text[:i]
        else:
            text = text[:i] + text[i : i + 5] + text[i:]
    return text


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_near_miss_strings_give_invalid_architecture_or_a_member(space, data):
    parse_or_refuse(space, data.draw(near_misses(space)))


@pytest.mark.parametrize(
    "suffix",
    ["", "|", "|r", "|r=", "|r=16", "|r=168", "|r=1600", "|r=160-", "|r=-160", "|r= 160", "|r=160|r=160", "|R=160"],
)
def test_mbv3_resolution_field_near_misses(suffix):
    """The resolution is the last field of an OFA-MobileNetV3 string: edits there parse to a
    member or fail in one line, like edits anywhere else."""
    space = nag.spaces.MBV3Space()
    lists = space.to_string(space.sample(1, np.random.default_rng(0))[0]).rsplit("|r=", 1)[0]
    parse_or_refuse(space, lists + suffix)
