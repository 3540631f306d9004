import contextlib
import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.errors import InvalidArchitecture
from nag.spaces.nb201 import EDGE_OPS, EDGES, NB201Space

SPACE = NB201Space()
ALL = list(SPACE.enumerate())


def test_enumerates_every_cell_once():
    assert len(ALL) == 15625 == len(set(ALL))


def test_encode_decode_round_trip_for_every_cell():
    x, a, mask = SPACE.encode_batch(ALL)
    assert mask.all()
    assert all(SPACE.decode(x[i], a[i]) == arch for i, arch in enumerate(ALL))


def test_string_round_trip_for_every_cell():
    assert all(SPACE.from_string(SPACE.to_string(a)) == a for a in ALL)


def test_adjacency_follows_edge_semantics():
    """Edge node (j->i) must feed exactly the edge nodes leaving cell node i."""
    _, a = SPACE.encode(ALL[0])
    for p, (_, dst) in enumerate(EDGES, start=1):
        for q, (src, _) in enumerate(EDGES, start=1):
            assert a[p, q] == float(src == dst), (EDGES[p - 1], EDGES[q - 1])
        assert a[p, -1] == float(dst == 3)
        assert a[0, p] == float(EDGES[p - 1][0] == 0)
    assert a.tril().sum() == 0


def test_iso_keys_reproduce_benchmark_classes(shared_data):
    with open(shared_data / "nb201" / "nb201.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [SPACE.key(SPACE.from_string(r["arch_str"])) for r in rows]
    assert keys == [r["iso_key"] for r in rows]
    assert len(set(keys)) == 6466


def test_isomorphic_cells_share_a_key():
    a = SPACE.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    b = SPACE.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    # node 2 reads conv(conv(x)); only b uses it, so the cells differ
    assert SPACE.key(a) != SPACE.key(b)
    c = SPACE.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|")
    # node 1 and node 2 are dead ends in a and c: both compute x + 0
    assert SPACE.key(a) == SPACE.key(c)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "malformed"),
        ("|nor_conv_3x3~0|+|none~0|", "malformed"),
        ("|conv7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown edge op 'conv7x7'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "should read '<op>~0'"),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "should read '<op>~0'"),
    ],
)
def test_bad_strings_name_the_problem(text, fragment):
    with pytest.raises(InvalidArchitecture, match=fragment):
        SPACE.from_string(text)


def test_bad_graphs_raise():
    x, a = SPACE.encode(ALL[7])
    with pytest.raises(InvalidArchitecture, match="expected X"):
        SPACE.decode(x[:-1], a)
    x_bad = x.clone()
    x_bad[0] = 0
    x_bad[0, SPACE.ops.index("output")] = 1
    with pytest.raises(InvalidArchitecture, match="input/output"):
        SPACE.decode(x_bad, a)
    with pytest.raises(InvalidArchitecture, match="6 edge ops"):
        SPACE.validate(("none",) * 5)


def test_sample_is_seeded_and_valid():
    a = SPACE.sample(50, np.random.default_rng(3))
    assert a == SPACE.sample(50, np.random.default_rng(3))
    assert a != SPACE.sample(50, np.random.default_rng(4))
    assert all(SPACE.is_valid(x) for x in a)


@settings(max_examples=100, derandomize=True)
@given(st.tuples(*[st.sampled_from(EDGE_OPS)] * 6))
def test_round_trips_property(arch):
    assert SPACE.from_string(SPACE.to_string(arch)) == arch
    assert SPACE.decode(*SPACE.encode(arch)) == arch


@settings(max_examples=200, derandomize=True)
@given(st.text(max_size=60))
def test_parser_never_crashes_on_junk(text):
    with contextlib.suppress(InvalidArchitecture):
        SPACE.from_string(text)


# --- neighbourhoods ------------------------------------------------------------------------


@settings(max_examples=50, derandomize=True)
@given(st.tuples(*[st.sampled_from(EDGE_OPS)] * 6))
def test_neighbours_change_exactly_one_edge_op(arch):
    neighbours = SPACE.neighbours(arch)
    assert len(neighbours) == 24 == len(set(neighbours))
    assert arch not in neighbours
    for n in neighbours:
        assert SPACE.is_valid(n)
        assert sum(a != b for a, b in zip(arch, n)) == 1


def test_neighbours_keep_isomorphic_cells():
    """The benchmark trained isomorphic cells separately, so they are distinct neighbours."""
    arch = ("none",) * 6  # everything computes zero: changing edge (0, 1) alone changes nothing
    same = [n for n in SPACE.neighbours(arch) if SPACE.key(n) == SPACE.key(arch)]
    assert ("skip_connect", *arch[1:]) in same


def test_mutate_is_a_seeded_neighbour():
    arch = ALL[1234]
    draws = [SPACE.mutate(arch, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1] and draws[0] in SPACE.neighbours(arch)
    rng = np.random.default_rng(0)
    assert len({SPACE.mutate(arch, rng) for _ in range(200)}) > 15  # spread over the 24


def test_spaces_without_a_neighbourhood_say_so():
    from nag.errors import NagError
    from nag.spaces.base import SearchSpace

    with pytest.raises(NagError, match="nb201: no neighbourhood defined; implement neighbours"):
        SearchSpace.neighbours(SPACE, ALL[0])
