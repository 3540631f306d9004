"""MBV3Space: the OFA MobileNetV3 subnets (stages and input resolution) round-trip through
strings, OFA lists and graphs, only active layers and the resolution define a subnet, and
malformed input fails with a message naming the fix."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.diffusion.graph_state import end_runs_at_stop
from nag.errors import ConfigError, InvalidArchitecture
from nag.spaces.mbv3 import RESOLUTIONS, MBV3Arch, MBV3Space, MBV3Subnet

SPACE = MBV3Space()

layers = st.tuples(st.sampled_from((3, 5, 7)), st.sampled_from((3, 4, 6)))
stage_lists = st.tuples(*[st.lists(layers, min_size=2, max_size=4).map(tuple) for _ in range(5)])
archs = st.builds(MBV3Subnet, stage_lists, st.sampled_from(RESOLUTIONS))

SMALL: MBV3Arch = MBV3Subnet((((3, 3), (3, 3)),) * 5, 224)
DEEP: MBV3Arch = MBV3Subnet(
    (
        ((7, 6), (5, 4), (3, 3), (7, 3)),
        ((5, 6), (5, 6), (5, 6)),
        ((3, 4), (7, 4)),
        ((5, 3), (5, 3)),
        ((7, 6), (7, 6), (3, 6)),
    ),
    176,
)
#: The sides of the HELP latency table: 128 to 224 in steps of 4.
HELP_SPACE = MBV3Space(resolutions=range(128, 225, 4))


@pytest.fixture(scope="module")
def csv_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "mbv3" / "ofa_mbv3_latency.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def ofa_lists(row: dict[str, str]) -> tuple[list[int], list[int], list[int], int]:
    ks, e, d = ([int(v) for v in row[c].split("-")] for c in ("ks", "e", "d"))
    return ks, e, d, int(row["r"])


def test_vocabulary_and_shape() -> None:
    assert SPACE.name == "ofa_mbv3"
    assert SPACE.resolutions == RESOLUTIONS == (160, 176, 192, 208, 224)
    assert SPACE.ops[:6] == ("input", "r160", "r176", "r192", "r208", "r224")
    assert SPACE.ops[-2:] == ("skip", "output")
    assert len(SPACE.ops) == 17 and SPACE.max_nodes == 23
    assert SPACE.fixed_topology and not SPACE.is_finite
    assert repr(SPACE) == "MBV3Space(resolutions=[160, 176, 192, 208, 224])"


def test_resolutions_are_per_space_sorted_and_distinct() -> None:
    space = MBV3Space(resolutions=[224, 128, 224])
    assert space.resolutions == (128, 224)
    assert space.ops[:3] == ("input", "r128", "r224") and len(space.ops) == 14
    assert SPACE.ops[1] == "r160"  # ops belong to the instance, not the class
    assert space.input_shape_for(MBV3Subnet(SMALL.stages, 128)) == (3, 128, 128)


@pytest.mark.parametrize("resolutions", [[], [16], [160.5]])
def test_bad_resolutions_fail_in_one_line(resolutions: list) -> None:
    with pytest.raises(ConfigError, match=r"MBV3Space\(resolutions=.*whole numbers of at least 32") as err:
        MBV3Space(resolutions=resolutions)
    assert "\n" not in str(err.value)


def test_graph_is_the_chain_with_the_resolution_and_trailing_skips() -> None:
    labels, adj = SPACE.to_graph(DEEP)
    assert labels[:7] == ["input", "r176", "k7_e6", "k5_e4", "k3_e3", "k7_e3", "k5_e6"]
    assert labels[8:14] == ["k5_e6", "skip", "k3_e4", "k7_e4", "skip", "skip"]
    assert labels[-1] == "output" and len(labels) == 23
    assert np.array_equal(adj, np.eye(23, k=1))
    x, _ = SPACE.encode(DEEP)
    assert x.shape == (23, 17) and torch.equal(x.sum(-1), torch.ones(23))
    assert x[1, SPACE.op_index("r176")] == 1


def test_soft_graph_decodes_by_argmax() -> None:
    x, a = SPACE.encode(DEEP)
    soft_x = 0.7 * x + 0.3 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) / 3
    soft_a = 0.8 * a + 0.1
    assert SPACE.decode(soft_x, soft_a) == DEEP


def test_every_csv_row_parses_and_round_trips(csv_rows: list[dict[str, str]]) -> None:
    assert len(csv_rows) == 5000
    keys = set()
    for row in csv_rows:
        arch = HELP_SPACE.from_ofa(*ofa_lists(row))
        assert [len(stage) for stage in arch.stages] == ofa_lists(row)[2]
        assert arch.resolution == int(row["r"])
        assert HELP_SPACE.from_string(HELP_SPACE.to_string(arch)) == arch
        assert HELP_SPACE.from_string(f"ks={row['ks']}|e={row['e']}|d={row['d']}|r={row['r']}") == arch
        assert HELP_SPACE.decode(*HELP_SPACE.encode(arch)) == arch
        keys.add(HELP_SPACE.key(arch))
    assert len(keys) == 5000


def test_inactive_slots_do_not_change_the_key_but_the_resolution_does() -> None:
    ks, e, d, r = SPACE.to_ofa(DEEP)
    assert d == [4, 3, 2, 2, 3] and r == 176
    rng = np.random.default_rng(1)
    for _ in range(20):
        ks2, e2 = list(ks), list(e)
        for j in range(20):
            if j % 4 >= d[j // 4]:
                ks2[j], e2[j] = int(rng.choice([3, 5, 7, 99])), int(rng.choice([0, 3, 4, 6]))
        arch = SPACE.from_ofa(ks2, e2, d, r)
        assert arch == DEEP and SPACE.key(arch) == SPACE.key(DEEP)
    changed = list(ks)
    changed[0] = 3
    assert SPACE.key(SPACE.from_ofa(changed, e, d, r)) != SPACE.key(DEEP)
    other = SPACE.from_ofa(ks, e, d, 224)
    assert other.stages == DEEP.stages and other != DEEP and SPACE.key(other) != SPACE.key(DEEP)


def test_canonical_string_zeroes_inactive_slots_and_ends_with_the_resolution() -> None:
    text = SPACE.to_string(SMALL)
    lists = "ks=" + "-".join(["3-3-0-0"] * 5) + "|e=" + "-".join(["3-3-0-0"] * 5) + "|d=2-2-2-2-2"
    assert text == lists + "|r=224"
    assert SPACE.key(SMALL) == text
    assert SPACE.to_string(MBV3Subnet(SMALL.stages, 160)) == lists + "|r=160"


@settings(max_examples=200, derandomize=True, deadline=None)
@given(archs)
def test_random_archs_round_trip(arch: MBV3Arch) -> None:
    assert SPACE.validate(arch) == arch
    assert SPACE.from_string(SPACE.to_string(arch)) == arch
    assert SPACE.from_ofa(*SPACE.to_ofa(arch)) == arch
    assert SPACE.decode(*SPACE.encode(arch)) == arch
    assert isinstance(SPACE.from_string(SPACE.to_string(arch)), MBV3Subnet)


def test_sample_is_deterministic_and_valid() -> None:
    first = SPACE.sample(200, np.random.default_rng(7))
    assert first == SPACE.sample(200, np.random.default_rng(7))
    assert first != SPACE.sample(200, np.random.default_rng(8))
    assert all(SPACE.is_valid(a) and isinstance(a, MBV3Subnet) for a in first)
    depths = {len(stage) for a in first for stage in a.stages}
    kernels = {k for a in first for stage in a.stages for k, _ in stage}
    expands = {e for a in first for stage in a.stages for _, e in stage}
    assert depths == {2, 3, 4} and kernels == {3, 5, 7} and expands == {3, 4, 6}
    counts = np.bincount([RESOLUTIONS.index(a.resolution) for a in first], minlength=5)
    assert counts.min() > 20  # uniform over the 5 sides: 40 each expected
    assert {a.resolution for a in MBV3Space(resolutions=[192]).sample(20, np.random.default_rng(0))} == {192}


def replace_stage(arch: MBV3Arch, index: int, stage: tuple) -> MBV3Subnet:
    return MBV3Subnet(arch.stages[:index] + (stage,) + arch.stages[index + 1 :], arch.resolution)


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        (replace_stage(SMALL, 2, ((3, 3),)), "stage 3"),
        (replace_stage(SMALL, 0, ((3, 3),) * 5), "2 to 4"),
        (replace_stage(SMALL, 1, ((4, 3), (3, 3))), "kernel size 4; expected one of 3, 5, 7"),
        (replace_stage(SMALL, 4, ((3, 3), (3, 5))), "expand ratio 5; expected one of 3, 4, 6"),
        (MBV3Subnet(SMALL.stages[:4], 224), "5 stages"),
        (replace_stage(SMALL, 0, ((3, 3), (3,))), "(kernel, expand) pair"),
        (MBV3Subnet(SMALL.stages, 168), "resolution 168 is not one this space searches; expected one of 160, 176"),
        (SMALL.stages, "expected MBV3Subnet(stages, resolution)"),  # the old, resolution-free value
        ([list(s) for s in SMALL.stages], "expected MBV3Subnet(stages, resolution)"),
    ],
)
def test_validate_rejects_with_a_helpful_message(arch: object, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.validate(arch)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not SPACE.is_valid(arch)


def test_a_plain_pair_validates_to_a_subnet() -> None:
    arch = SPACE.validate((SMALL.stages, 224))
    assert isinstance(arch, MBV3Subnet) and arch == SMALL


@pytest.mark.parametrize(
    ("ks", "e", "d", "r", "fragment"),
    [
        ([3] * 20, [3] * 20, [2, 1, 2, 2, 2], 224, "stage 2 has depth 1"),
        ([3] * 20, [3] * 20, [2, 2, 2, 2, 5], 224, "stage 5 has depth 5"),
        ([3, 4] + [3] * 18, [3] * 20, [2] * 5, 224, "kernel size 4"),
        ([3] * 20, [3] * 4 + [5] + [3] * 15, [2] * 5, 224, "stage 2 layer 1 has expand ratio 5"),
        ([3] * 19, [3] * 20, [2] * 5, 224, "ks has 19 values"),
        ([3] * 20, [3] * 20, [2] * 4, 224, "d has 4 values"),
        ([3] * 20, [3] * 20, [2] * 5, 128, "resolution 128 is not one this space searches"),
    ],
)
def test_from_ofa_rejects_bad_lists(ks: list[int], e: list[int], d: list[int], r: int, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_ofa(ks, e, d, r)
    assert fragment in str(err.value)


THREES = "-".join(["3"] * 20)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot parse"),
        ("ks=3-3|e=3-3", "cannot parse"),
        ("e=3|ks=3|d=2|r=224", "cannot parse"),
        ("r=224|ks=3|e=3|d=2", "cannot parse"),
        ("ks=" + "-".join(["x"] * 20) + f"|e={THREES}|d=2-2-2-2-2|r=224", "not a whole number"),
        (f"ks={THREES}|e={THREES}|d=2-2-2-2-2|r=big", "not a whole number"),
        (f"ks={THREES}|e={THREES}|d=2-2-2-2-1|r=224", "depth 1"),
        (f"ks={THREES}|e={THREES}|d=2-2-2-2|r=224", "d has 4 values"),
        (f"ks={THREES}|e={THREES}|d=2-2-2-2-2|r=160-176", "has 2 resolutions; expected one"),
        (f"ks={THREES}|e={THREES}|d=2-2-2-2-2|r=168", "resolution 168 is not one this space searches"),
    ],
)
def test_from_string_rejects_malformed_text(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_string(text)
    assert fragment in str(err.value)


FORMAT = r"expected 'ks=<20 kernel sizes>\|e=<20 expand ratios>\|d=<5 depths>\|r=<resolution>'"


def test_from_string_error_states_the_format() -> None:
    with pytest.raises(InvalidArchitecture, match=FORMAT):
        SPACE.from_string("ks=3")


def test_strings_without_the_resolution_are_refused_showing_the_format() -> None:
    """The old form (no ``|r=``) names no network size, so it is refused rather than given a default."""
    old = SPACE.to_string(SMALL).removesuffix("|r=224")
    assert "r=" not in old
    for text in (old, old + "|", old + "|r="):
        with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
            SPACE.from_string(text)
        assert "r=<resolution>" in str(err.value) and "\n" not in str(err.value)
    assert not SPACE.is_valid(old)


def test_from_graph_rejects_skip_inside_a_stage() -> None:
    labels, adj = SPACE.to_graph(DEEP)
    labels[3], labels[4] = "skip", "k3_e3"
    with pytest.raises(InvalidArchitecture, match="stage 1 has an active layer after 'skip'"):
        SPACE.from_graph(labels, adj)


def test_a_stage_read_with_its_stop_run_ends_at_its_first_skip() -> None:
    """Generators read each stage as ending at its first ``skip``: a drawn layer after it is not
    read (and counted), so a stage's depth is drawn slot by slot and never invalid."""
    labels, adj = SPACE.to_graph(DEEP)
    labels[4], labels[5] = "skip", "k3_e3"  # stage 1: slots 2, 3 (positions 4, 5) drawn skip, layer
    x = torch.nn.functional.one_hot(torch.tensor([SPACE.op_index(op) for op in labels]), SPACE.num_ops).float()
    read, unread = end_runs_at_stop(x.unsqueeze(0), SPACE.stop_runs(), SPACE.op_index("skip"))
    assert unread.tolist() == [1]
    arch = SPACE.decode(read[0], torch.as_tensor(adj))
    assert len(arch.stages[0]) == 2 and arch.stages[1:] == DEEP.stages[1:]
    untouched, none = end_runs_at_stop(x[None, :, :], (), None)
    assert torch.equal(untouched[0], x) and none.tolist() == [0]


def test_from_graph_rejects_a_stage_with_one_layer() -> None:
    labels, adj = SPACE.to_graph(SMALL)
    labels[11] = "skip"
    with pytest.raises(InvalidArchitecture, match="stage 3 has 1 active layers"):
        SPACE.from_graph(labels, adj)


@pytest.mark.parametrize(
    ("position", "label", "fragment"),
    [
        (6, "k4_e3", "has op 'k4_e3'"),
        (6, "input", "has op 'input'"),
        (6, "r160", "has op 'r160'"),
        (0, "k3_e3", "'input', the resolution, 20 layer slots"),
        (1, "k3_e3", "node 1 is 'k3_e3'; expected the resolution, one of r160, r176, r192, r208, r224"),
        (1, "r168", "node 1 is 'r168'"),
    ],
)
def test_from_graph_rejects_bad_labels(position: int, label: str, fragment: str) -> None:
    labels, adj = SPACE.to_graph(SMALL)
    labels[position] = label
    with pytest.raises(InvalidArchitecture, match="ofa_mbv3") as err:
        SPACE.from_graph(labels, adj)
    assert fragment in str(err.value)


def test_from_graph_rejects_a_resolution_of_another_space() -> None:
    labels, adj = MBV3Space(resolutions=[128]).to_graph(MBV3Subnet(SMALL.stages, 128))
    with pytest.raises(InvalidArchitecture, match="node 1 is 'r128'"):
        SPACE.from_graph(labels, adj)


def test_from_graph_rejects_other_topologies() -> None:
    labels, adj = SPACE.to_graph(SMALL)
    adj = adj.copy()
    adj[0, 2] = 1
    with pytest.raises(InvalidArchitecture, match=r"fixed chain .* \[0, 2\]"):
        SPACE.from_graph(labels, adj)
    with pytest.raises(InvalidArchitecture, match="fixed chain"):
        SPACE.from_graph(labels, np.eye(22, k=1))


def test_unknown_op_is_rejected() -> None:
    with pytest.raises(InvalidArchitecture, match="unknown op 'k9_e3'; expected one of input, r160, r176"):
        SPACE.op_index("k9_e3")


def test_decode_rejects_wrong_shapes() -> None:
    x, a = SPACE.encode(SMALL)
    with pytest.raises(InvalidArchitecture, match="expected X"):
        SPACE.decode(x[:, :-1], a)


# --- neighbourhoods ------------------------------------------------------------------------


def test_neighbour_counts() -> None:
    # 4 kernel/expand changes per active layer, one deeper per stage below 4, one shallower
    # above 2, and the next resolution down and up where the space has one
    assert len(SPACE.neighbours(SMALL)) == 10 * 4 + 5 + 1  # 224: only 208
    assert len(SPACE.neighbours(DEEP)) == 14 * 4 + 4 + 3 + 2  # depths 4, 3, 2, 2, 3; 160 and 192
    assert len(MBV3Space(resolutions=[224]).neighbours(SMALL)) == 10 * 4 + 5


@pytest.mark.parametrize(
    ("space", "resolution", "adjacent"),
    [
        (SPACE, 160, {176}),
        (SPACE, 192, {176, 208}),
        (SPACE, 224, {208}),
        (MBV3Space(resolutions=[128, 160, 224]), 160, {128, 224}),
        (MBV3Space(resolutions=[160]), 160, set()),
    ],
)
def test_neighbours_include_exactly_the_adjacent_resolutions(
    space: MBV3Space, resolution: int, adjacent: set[int]
) -> None:
    arch = MBV3Subnet(DEEP.stages, resolution)
    neighbours = space.neighbours(arch)
    resized = [n for n in neighbours if n.resolution != resolution]
    assert {n.resolution for n in resized} == adjacent and len(resized) == len(adjacent)
    assert all(n.stages == arch.stages for n in resized)
    assert all(space.is_valid(n) for n in neighbours)


@settings(max_examples=60, derandomize=True)
@given(archs)
def test_neighbours_are_single_edits(arch: MBV3Arch) -> None:
    neighbours = SPACE.neighbours(arch)
    assert arch not in neighbours
    assert len({SPACE.key(n) for n in neighbours}) == len(neighbours)
    for n in neighbours:
        SPACE.validate(n)
        if n.resolution != arch.resolution:  # the next side up or down, the layers kept
            assert n.stages == arch.stages
            assert abs(RESOLUTIONS.index(n.resolution) - RESOLUTIONS.index(arch.resolution)) == 1
            continue
        changed = [s for s in range(5) if n.stages[s] != arch.stages[s]]
        assert len(changed) == 1
        old, new = arch.stages[changed[0]], n.stages[changed[0]]
        if len(old) == len(new):  # one layer's kernel or expand ratio
            ((a, b),) = [(x, y) for x, y in zip(old, new) if x != y]
            assert (a[0] == b[0]) != (a[1] == b[1])
        else:  # depth +-1, keeping the shared layers
            assert abs(len(old) - len(new)) == 1 and old[: len(new)] == new[: len(old)]


def test_mutate_is_a_seeded_neighbour() -> None:
    assert SPACE.mutate(DEEP, np.random.default_rng(2)) == SPACE.mutate(DEEP, np.random.default_rng(2))
    rng = np.random.default_rng(0)
    assert all(SPACE.mutate(DEEP, rng) in SPACE.neighbours(DEEP) for _ in range(20))


def test_crossover_takes_every_choice_from_a_parent() -> None:
    """OFA's crossover: resolution and each stage's depth from either parent, each active layer
    from a parent that has that slot; over many children both parents contribute."""
    rng = np.random.default_rng(0)
    a, b = SPACE.sample(2, rng)
    children = [SPACE.crossover(a, b, rng) for _ in range(200)]
    for child in children:
        SPACE.validate(child)
        assert child.resolution in (a.resolution, b.resolution)
        for s, stage in enumerate(child.stages):
            assert len(stage) in (len(a.stages[s]), len(b.stages[s]))
            for i, layer in enumerate(stage):
                assert layer in [p.stages[s][i] for p in (a, b) if i < len(p.stages[s])]
    assert len({SPACE.key(c) for c in children}) > 100
    assert SPACE.crossover(a, a, rng) == a
