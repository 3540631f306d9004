import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nas_bench_graph import light_read

from nag.errors import InvalidArchitecture
from nag.spaces.nbgraph import ALL_OPS, PROTEINS_OPS, NBGraphSpace

SPACE = NBGraphSpace()
ALL = list(SPACE.enumerate())


def test_enumeration_gives_exactly_the_benchmarked_architectures():
    keys = {int(SPACE.key(a)) for a in ALL}
    assert len(ALL) == len(keys) == 26206
    assert keys == set(light_read("cora"))


def test_proteins_subspace_matches_its_table():
    archs = list(NBGraphSpace(PROTEINS_OPS).enumerate())
    assert {int(SPACE.key(a)) for a in archs} == set(light_read("proteins"))


def test_encode_decode_round_trip_for_every_architecture():
    x, a, _ = SPACE.encode_batch(ALL)
    assert all(SPACE.decode(x[i], a[i]) == arch for i, arch in enumerate(ALL))
    assert a.tril().sum() == 0


def test_string_round_trip_for_every_architecture():
    assert all(SPACE.from_string(SPACE.to_string(a)) == a for a in ALL)


def test_graph_wires_links_and_leaves_to_output():
    arch = SPACE.from_string("gcn~0|gat~1|skip~1|sage~2")
    labels, adj = SPACE.to_graph(arch)
    assert labels == ["input", "gcn", "gat", "skip", "sage", "output"]
    edges = {tuple(e) for e in np.argwhere(adj).tolist()}
    assert edges == {(0, 1), (1, 2), (1, 3), (2, 4), (3, 5), (4, 5)}


def test_equivalent_wirings_share_a_key():
    # two parallel branches from the input, written in either order
    a = SPACE.from_string("gcn~0|gat~0|sage~1|fc~2")
    b = SPACE.from_string("gat~0|gcn~0|fc~1|sage~2")
    assert SPACE.key(a) == SPACE.key(b)
    assert SPACE.key(a) != SPACE.key(SPACE.from_string("gcn~0|gat~0|fc~1|sage~2"))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("gcn~0|gat~1|skip~1", "malformed"),
        ("gcn-0|gat~1|skip~1|sage~2", "malformed"),
        ("gcn~0|gat~2|skip~1|sage~2", "layer 2 reads node 2"),
        ("gcn~0|transformer~1|skip~1|sage~2", "unknown layer op 'transformer'"),
        ("skip~0|skip~1|skip~1|skip~2", "all four layers are skip"),
    ],
)
def test_bad_strings_name_the_problem(text, fragment):
    with pytest.raises(InvalidArchitecture, match=fragment):
        SPACE.from_string(text)


def test_bad_graphs_raise():
    x, a = SPACE.encode(ALL[0])
    two_inputs = a.clone()
    two_inputs[0, 2] = two_inputs[1, 2] = 1
    with pytest.raises(InvalidArchitecture, match="exactly one earlier node"):
        SPACE.decode(x, two_inputs)
    wrong_output = a.clone()
    wrong_output[:, -1] = 0
    with pytest.raises(InvalidArchitecture, match="output must read"):
        SPACE.decode(x, wrong_output)


def test_unknown_space_op_is_rejected():
    with pytest.raises(InvalidArchitecture, match="unknown layer ops"):
        NBGraphSpace(["gcn", "mlp"])
    with pytest.raises(InvalidArchitecture, match="unknown layer op 'gat'"):
        NBGraphSpace(PROTEINS_OPS).validate(((0, 0, 0, 0), ("gat", "gcn", "gcn", "gcn")))


def test_sample_is_seeded_and_valid():
    a = SPACE.sample(40, np.random.default_rng(0))
    assert a == SPACE.sample(40, np.random.default_rng(0))
    assert all(SPACE.is_valid(x) for x in a)


links = st.tuples(*(st.integers(0, i) for i in range(4)))
ops = st.tuples(*[st.sampled_from(ALL_OPS)] * 4).filter(lambda o: set(o) != {"skip"})


@settings(max_examples=100, derandomize=True)
@given(links, ops)
def test_round_trips_property(link, op):
    arch = (link, op)
    assert SPACE.from_string(SPACE.to_string(arch)) == arch
    assert SPACE.decode(*SPACE.encode(arch)) == arch
    assert SPACE.key(arch) in {SPACE.key(a) for a in [arch]}


# --- neighbourhoods ------------------------------------------------------------------------


def _edits(arch, other):
    """How many layers differ between two architectures: (op changes, link changes)."""
    return sum(a != b for a, b in zip(arch[1], other[1])), sum(a != b for a, b in zip(arch[0], other[0]))


@settings(max_examples=40, derandomize=True)
@given(links, ops)
def test_neighbours_are_single_edits_one_per_key(link, op):
    arch = (link, op)
    neighbours = SPACE.neighbours(arch)
    keys = [SPACE.key(n) for n in neighbours]
    assert neighbours and len(set(keys)) == len(keys) and SPACE.key(arch) not in keys
    for n in neighbours:
        assert SPACE.is_valid(n)
        assert _edits(arch, n) in {(1, 0), (0, 1)}
    # complete: every single edit is a neighbour up to its key, or the arch itself
    for i in range(4):
        for other in ALL_OPS:
            edit = (link, op[:i] + (other,) + op[i + 1 :])
            if SPACE.is_valid(edit):
                assert SPACE.key(edit) in {*keys, SPACE.key(arch)}
        for src in range(i + 1):
            edit = (link[:i] + (src,) + link[i + 1 :], op)
            assert SPACE.key(edit) in {*keys, SPACE.key(arch)}


def test_neighbours_stay_in_a_restricted_space():
    space = NBGraphSpace(PROTEINS_OPS)
    arch = space.from_string("gcn~0|sage~1|skip~1|fc~2")
    assert {o for n in space.neighbours(arch) for o in n[1]} <= set(PROTEINS_OPS)


def test_neighbours_never_make_all_layers_skip():
    arch = SPACE.from_string("skip~0|skip~1|skip~2|gcn~3")
    assert all(SPACE.is_valid(n) for n in SPACE.neighbours(arch))


def test_mutate_is_a_seeded_neighbour():
    arch = ALL[500]
    assert SPACE.mutate(arch, np.random.default_rng(3)) == SPACE.mutate(arch, np.random.default_rng(3))
    keys = {SPACE.key(n) for n in SPACE.neighbours(arch)}
    rng = np.random.default_rng(0)
    assert all(SPACE.key(SPACE.mutate(arch, rng)) in keys for _ in range(50))
