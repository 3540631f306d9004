"""MBV3Space: the OFA MobileNetV3 subnets round-trip through strings, OFA lists and graphs,
only active layers define a subnet, and malformed input fails with a message naming the fix."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.errors import InvalidArchitecture
from nag.spaces.mbv3 import MBV3Arch, MBV3Space

SPACE = MBV3Space()

layers = st.tuples(st.sampled_from((3, 5, 7)), st.sampled_from((3, 4, 6)))
archs = st.tuples(*[st.lists(layers, min_size=2, max_size=4).map(tuple) for _ in range(5)])

SMALL: MBV3Arch = (((3, 3), (3, 3)),) * 5
DEEP: MBV3Arch = (
    ((7, 6), (5, 4), (3, 3), (7, 3)),
    ((5, 6), (5, 6), (5, 6)),
    ((3, 4), (7, 4)),
    ((5, 3), (5, 3)),
    ((7, 6), (7, 6), (3, 6)),
)


@pytest.fixture(scope="module")
def csv_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "mbv3" / "ofa_mbv3_latency.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def ofa_lists(row: dict[str, str]) -> tuple[list[int], list[int], list[int]]:
    return tuple([int(v) for v in row[c].split("-")] for c in ("ks", "e", "d"))


def test_vocabulary_and_shape() -> None:
    assert SPACE.name == "ofa_mbv3"
    assert SPACE.ops[0] == "input" and SPACE.ops[-2:] == ("skip", "output")
    assert len(SPACE.ops) == 12 and SPACE.max_nodes == 22
    assert SPACE.fixed_topology and not SPACE.is_finite


def test_graph_is_the_chain_with_trailing_skips() -> None:
    labels, adj = SPACE.to_graph(DEEP)
    assert labels[:6] == ["input", "k7_e6", "k5_e4", "k3_e3", "k7_e3", "k5_e6"]
    assert labels[7:13] == ["k5_e6", "skip", "k3_e4", "k7_e4", "skip", "skip"]
    assert labels[-1] == "output"
    assert np.array_equal(adj, np.eye(22, k=1))
    x, _ = SPACE.encode(DEEP)
    assert x.shape == (22, 12) and torch.equal(x.sum(-1), torch.ones(22))


def test_soft_graph_decodes_by_argmax() -> None:
    x, a = SPACE.encode(DEEP)
    soft_x = 0.7 * x + 0.3 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) / 3
    soft_a = 0.8 * a + 0.1
    assert SPACE.decode(soft_x, soft_a) == DEEP


def test_every_csv_row_parses_and_round_trips(csv_rows: list[dict[str, str]]) -> None:
    assert len(csv_rows) == 5000
    keys = set()
    for row in csv_rows:
        arch = SPACE.from_ofa(*ofa_lists(row))
        assert [len(stage) for stage in arch] == ofa_lists(row)[2]
        assert SPACE.from_string(SPACE.to_string(arch)) == arch
        assert SPACE.from_string(f"ks={row['ks']}|e={row['e']}|d={row['d']}") == arch
        assert SPACE.decode(*SPACE.encode(arch)) == arch
        keys.add(SPACE.key(arch))
    assert len(keys) == 5000


def test_inactive_slots_do_not_change_the_key() -> None:
    ks, e, d = SPACE.to_ofa(DEEP)
    assert d == [4, 3, 2, 2, 3]
    rng = np.random.default_rng(1)
    for _ in range(20):
        ks2, e2 = list(ks), list(e)
        for j in range(20):
            if j % 4 >= d[j // 4]:
                ks2[j], e2[j] = int(rng.choice([3, 5, 7, 99])), int(rng.choice([0, 3, 4, 6]))
        arch = SPACE.from_ofa(ks2, e2, d)
        assert arch == DEEP and SPACE.key(arch) == SPACE.key(DEEP)
    changed = list(ks)
    changed[0] = 3
    assert SPACE.key(SPACE.from_ofa(changed, e, d)) != SPACE.key(DEEP)


def test_canonical_string_zeroes_inactive_slots() -> None:
    text = SPACE.to_string(SMALL)
    assert text == "ks=" + "-".join(["3-3-0-0"] * 5) + "|e=" + "-".join(["3-3-0-0"] * 5) + "|d=2-2-2-2-2"
    assert SPACE.key(SMALL) == text


@settings(max_examples=200, derandomize=True, deadline=None)
@given(archs)
def test_random_archs_round_trip(arch: MBV3Arch) -> None:
    assert SPACE.validate(arch) == arch
    assert SPACE.from_string(SPACE.to_string(arch)) == arch
    assert SPACE.from_ofa(*SPACE.to_ofa(arch)) == arch
    assert SPACE.decode(*SPACE.encode(arch)) == arch


def test_sample_is_deterministic_and_valid() -> None:
    first = SPACE.sample(200, np.random.default_rng(7))
    assert first == SPACE.sample(200, np.random.default_rng(7))
    assert first != SPACE.sample(200, np.random.default_rng(8))
    assert all(SPACE.is_valid(a) for a in first)
    depths = {len(stage) for a in first for stage in a}
    kernels = {k for a in first for stage in a for k, _ in stage}
    expands = {e for a in first for stage in a for _, e in stage}
    assert depths == {2, 3, 4} and kernels == {3, 5, 7} and expands == {3, 4, 6}


def replace_stage(arch: MBV3Arch, index: int, stage: tuple) -> tuple:
    return arch[:index] + (stage,) + arch[index + 1 :]


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        (replace_stage(SMALL, 2, ((3, 3),)), "stage 3"),
        (replace_stage(SMALL, 0, ((3, 3),) * 5), "2 to 4"),
        (replace_stage(SMALL, 1, ((4, 3), (3, 3))), "kernel size 4; expected one of 3, 5, 7"),
        (replace_stage(SMALL, 4, ((3, 3), (3, 5))), "expand ratio 5; expected one of 3, 4, 6"),
        (SMALL[:4], "5 stages"),
        (replace_stage(SMALL, 0, ((3, 3), (3,))), "(kernel, expand) pair"),
        ([list(s) for s in SMALL], "5 stages"),
    ],
)
def test_validate_rejects_with_a_helpful_message(arch: object, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.validate(arch)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not SPACE.is_valid(arch)


@pytest.mark.parametrize(
    ("ks", "e", "d", "fragment"),
    [
        ([3] * 20, [3] * 20, [2, 1, 2, 2, 2], "stage 2 has depth 1"),
        ([3] * 20, [3] * 20, [2, 2, 2, 2, 5], "stage 5 has depth 5"),
        ([3, 4] + [3] * 18, [3] * 20, [2] * 5, "kernel size 4"),
        ([3] * 20, [3] * 4 + [5] + [3] * 15, [2] * 5, "stage 2 layer 1 has expand ratio 5"),
        ([3] * 19, [3] * 20, [2] * 5, "ks has 19 values"),
        ([3] * 20, [3] * 20, [2] * 4, "d has 4 values"),
    ],
)
def test_from_ofa_rejects_bad_lists(ks: list[int], e: list[int], d: list[int], fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_ofa(ks, e, d)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot parse"),
        ("ks=3-3|e=3-3", "cannot parse"),
        ("e=3|ks=3|d=2", "cannot parse"),
        ("ks=" + "-".join(["x"] * 20) + "|e=" + "-".join(["3"] * 20) + "|d=2-2-2-2-2", "not a whole number"),
        ("ks=" + "-".join(["3"] * 20) + "|e=" + "-".join(["3"] * 20) + "|d=2-2-2-2-1", "depth 1"),
        ("ks=" + "-".join(["3"] * 20) + "|e=" + "-".join(["3"] * 20) + "|d=2-2-2-2", "d has 4 values"),
    ],
)
def test_from_string_rejects_malformed_text(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_string(text)
    assert fragment in str(err.value)


def test_from_string_error_states_the_format() -> None:
    expected = r"expected 'ks=<20 kernel sizes>\|e=<20 expand ratios>\|d=<5 depths>'"
    with pytest.raises(InvalidArchitecture, match=expected):
        SPACE.from_string("ks=3")


def test_from_graph_rejects_skip_inside_a_stage() -> None:
    labels, adj = SPACE.to_graph(DEEP)
    labels[2], labels[3] = "skip", "k3_e3"
    with pytest.raises(InvalidArchitecture, match="stage 1 has an active layer after 'skip'"):
        SPACE.from_graph(labels, adj)


def test_from_graph_rejects_a_stage_with_one_layer() -> None:
    labels, adj = SPACE.to_graph(SMALL)
    labels[10] = "skip"
    with pytest.raises(InvalidArchitecture, match="stage 3 has 1 active layers"):
        SPACE.from_graph(labels, adj)


@pytest.mark.parametrize(
    ("position", "label", "fragment"),
    [(5, "k4_e3", "has op 'k4_e3'"), (5, "input", "has op 'input'"), (0, "k3_e3", "'input', 20 layer slots")],
)
def test_from_graph_rejects_bad_labels(position: int, label: str, fragment: str) -> None:
    labels, adj = SPACE.to_graph(SMALL)
    labels[position] = label
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_graph(labels, adj)
    assert fragment in str(err.value)


def test_from_graph_rejects_other_topologies() -> None:
    labels, adj = SPACE.to_graph(SMALL)
    adj = adj.copy()
    adj[0, 2] = 1
    with pytest.raises(InvalidArchitecture, match=r"fixed chain .* \[0, 2\]"):
        SPACE.from_graph(labels, adj)
    with pytest.raises(InvalidArchitecture, match="fixed chain"):
        SPACE.from_graph(labels, np.eye(21, k=1))


def test_unknown_op_is_rejected() -> None:
    with pytest.raises(InvalidArchitecture, match="unknown op 'k9_e3'; expected one of input, k3_e3"):
        SPACE.op_index("k9_e3")


def test_decode_rejects_wrong_shapes() -> None:
    x, a = SPACE.encode(SMALL)
    with pytest.raises(InvalidArchitecture, match="expected X"):
        SPACE.decode(x[:, :-1], a)


# --- neighbourhoods ------------------------------------------------------------------------


def test_neighbour_counts() -> None:
    # 4 kernel/expand changes per active layer, one deeper per stage below 4, one shallower above 2
    assert len(SPACE.neighbours(SMALL)) == 10 * 4 + 5
    assert len(SPACE.neighbours(DEEP)) == 14 * 4 + 4 + 3  # depths 4, 3, 2, 2, 3


@settings(max_examples=60, derandomize=True)
@given(archs)
def test_neighbours_are_single_edits(arch: MBV3Arch) -> None:
    neighbours = SPACE.neighbours(arch)
    assert arch not in neighbours
    assert len({SPACE.key(n) for n in neighbours}) == len(neighbours)
    for n in neighbours:
        SPACE.validate(n)
        changed = [s for s in range(5) if n[s] != arch[s]]
        assert len(changed) == 1
        old, new = arch[changed[0]], n[changed[0]]
        if len(old) == len(new):  # one layer's kernel or expand ratio
            ((a, b),) = [(x, y) for x, y in zip(old, new) if x != y]
            assert (a[0] == b[0]) != (a[1] == b[1])
        else:  # depth +-1, keeping the shared layers
            assert abs(len(old) - len(new)) == 1 and old[: len(new)] == new[: len(old)]


def test_mutate_is_a_seeded_neighbour() -> None:
    assert SPACE.mutate(DEEP, np.random.default_rng(2)) == SPACE.mutate(DEEP, np.random.default_rng(2))
    rng = np.random.default_rng(0)
    assert all(SPACE.mutate(DEEP, rng) in SPACE.neighbours(DEEP) for _ in range(20))
