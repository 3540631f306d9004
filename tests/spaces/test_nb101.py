"""NAS-Bench-101 space: the official hash, ModelSpec pruning, round trips and one-line errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nag.errors import InvalidArchitecture
from nag.spaces.nb101 import CELL_OPS, NB101Cell, NB101Space, _path_complete_adjacencies

SPACE = NB101Space()


def raw(ops: str, rows: str) -> NB101Cell:
    """An unchecked, unpruned cell from space-separated ops and 0/1 rows."""
    return NB101Cell(tuple(tuple(int(c) for c in row) for row in rows.split()), tuple(ops.split()))


@pytest.fixture(scope="module")
def table(shared_data: Path) -> dict:
    return json.loads((shared_data / "nb101" / "nb101_1k.json").read_text())


@pytest.fixture(scope="module")
def cells(table: dict) -> list[NB101Cell]:
    return [NB101Space.from_benchmark_record(a, o) for a, o in zip(table["adjacency"], table["operations"])]


def test_identity() -> None:
    assert SPACE.name == "nb101"
    assert SPACE.ops == ("input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output")
    assert (SPACE.max_nodes, SPACE.fixed_topology, SPACE.is_finite) == (7, False, False)


def test_key_reproduces_every_stored_hash(table: dict, cells: list[NB101Cell]) -> None:
    assert [SPACE.key(c) for c in cells] == table["key"]


def test_records_drop_padding_and_are_already_pruned(table: dict, cells: list[NB101Cell]) -> None:
    for cell, ops in zip(cells, table["operations"]):
        assert len(cell.ops) == sum(o != -3 for o in ops)
        assert SPACE.prune(cell) == cell


def test_pruning_removes_nodes_off_every_path() -> None:
    # node 2 is a dead end, node 3 is unreachable from the input
    cell = raw("input conv3x3-bn-relu maxpool3x3 conv1x1-bn-relu output", "01100 00001 00000 00001 00000")
    pruned = raw("input conv3x3-bn-relu output", "010 001 000")
    assert SPACE.validate(cell) is cell
    assert SPACE.prune(cell) == pruned
    assert SPACE.key(cell) == SPACE.key(pruned)
    assert SPACE.from_string(SPACE.to_string(cell)) == pruned
    x, a = SPACE.encode(cell)
    assert torch.equal(x, SPACE.encode(pruned)[0]) and torch.equal(a, SPACE.encode(pruned)[1])
    assert SPACE.encode_batch([cell])[2].tolist() == [[True] * 3 + [False] * 4]


def test_disconnected_cell_is_invalid() -> None:
    cell = raw("input conv3x3-bn-relu conv1x1-bn-relu output", "0100 0000 0001 0000")
    assert not SPACE.is_valid(cell)
    with pytest.raises(InvalidArchitecture, match="no path from input to output"):
        SPACE.key(cell)


def test_edge_limit_applies_after_pruning() -> None:
    ops = "input " + " ".join(["conv3x3-bn-relu"] * 5) + " output"
    # chain 0-1-2-3-4-6 plus 0->2, 0->3, 0->4, 1->3 (9 edges); node 5 is a dead end fed by 0 and 1
    nine_after_pruning = raw(ops, "0111110 0001011 0001000 0000100 0000001 0000000 0000000")
    assert sum(map(sum, nine_after_pruning.adjacency)) == 11
    assert len(SPACE.prune(nine_after_pruning).ops) == 6
    ten = raw(ops, "0111110 0010000 0001000 0000100 0000010 0000001 0000000")
    with pytest.raises(InvalidArchitecture, match="10 edges after pruning; expected at most 9"):
        SPACE.validate(ten)


def test_isomorphic_relabelling_keeps_the_key(cells: list[NB101Cell]) -> None:
    checked = 0
    for cell in [c for c in cells if len(c.ops) == 7][:30]:
        adjacency = np.array(cell.adjacency)
        key = SPACE.key(cell)
        for perm in itertools.permutations(range(1, 6)):
            position = [0, *perm, 6]  # old node i moves to position[i]
            moved = np.zeros_like(adjacency)
            moved[np.ix_(position, position)] = adjacency
            if not np.array_equal(np.triu(moved, 1), moved) or np.array_equal(moved, adjacency):
                continue
            ops = [""] * 7
            for old, new in enumerate(position):
                ops[new] = cell.ops[old]
            assert SPACE.key(SPACE.from_graph(ops, moved)) == key
            checked += 1
    assert checked > 30


def test_changing_an_op_changes_the_key(cells: list[NB101Cell]) -> None:
    for cell in cells[:50]:
        ops = list(cell.ops)
        ops[1] = next(op for op in CELL_OPS if op != ops[1])
        assert SPACE.key(NB101Cell(cell.adjacency, tuple(ops))) != SPACE.key(cell)


def test_encode_decode_round_trip_for_every_cell(cells: list[NB101Cell]) -> None:
    for cell in cells:
        x, a = SPACE.encode(cell)
        assert x.shape == (7, 5) and a.shape == (7, 7)
        assert SPACE.decode(x, a) == cell


def test_decode_projects_soft_tensors() -> None:
    cell = SPACE.from_string("input,conv1x1-bn-relu,maxpool3x3,output|0110,0001,0001,0000")
    x, a = SPACE.encode(cell)
    noise = torch.rand(7, 5, generator=torch.Generator().manual_seed(0)) * 0.4
    assert SPACE.decode(x + noise * (x.sum(-1, keepdim=True) > 0), a * 0.8 + 0.1) == cell


def test_string_form() -> None:
    cell = SPACE.from_string(" input, conv3x3-bn-relu ,output | 011, 001, 000 ")
    assert cell == raw("input conv3x3-bn-relu output", "011 001 000")
    assert SPACE.to_string(cell) == "input,conv3x3-bn-relu,output|011,001,000"


def test_string_round_trip_for_every_cell(cells: list[NB101Cell]) -> None:
    for cell in cells:
        assert SPACE.from_string(SPACE.to_string(cell)) == cell


CHAIN = "0100000 0010000 0001000 0000100 0000010 0000001 0000000"


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        (raw("input conv5x5 output", "011 001 000"), "unknown op 'conv5x5' at node 1; expected one of"),
        (raw("input input output", "011 001 000"), "unknown op 'input' at node 1"),
        (raw("input " + "maxpool3x3 " * 6 + "output", " ".join(["0" * 8] * 8)), "has 8 nodes; expected 2 to 7"),
        (raw("input", "0"), "has 1 nodes; expected 2 to 7"),
        (raw("input conv3x3-bn-relu output", "011 101 000"), "edge 1->0; expected a strictly upper-triangular"),
        (raw("input conv3x3-bn-relu output", "011 011 000"), "edge 1->1"),
        (raw("input conv3x3-bn-relu output", "012 001 000"), "adjacency entry 2 at \\(0, 2\\); expected 0 or 1"),
        (raw("conv3x3-bn-relu input output", "011 001 000"), "expected 'input' first and 'output' last"),
        (raw("input " + "maxpool3x3 " * 5 + "output", CHAIN.replace("0100000", "0111110")), "10 edges"),
        (raw("input conv3x3-bn-relu output", "01 00"), "needs a 3x3 adjacency"),
        (NB101Cell([[0, 1], [0, 0]], ["input", "output"]), "must hold tuples"),
        ("input,output|01,00", "is not a cell; expected NB101Cell"),
    ],
)
def test_invalid_cells_raise_one_line_naming_the_value(arch: object, match: str) -> None:
    assert not SPACE.is_valid(arch)
    with pytest.raises(InvalidArchitecture, match=match) as info:
        SPACE.validate(arch)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("nb101: ")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "found 0 '\\|' separators"),
        ("input,output", "found 0 '\\|' separators"),
        ("input,output|01|00", "found 2 '\\|' separators"),
        ("input,output|01", "2 ops but 1 adjacency rows"),
        ("input,output|01,0x", "row 1 is '0x', not 2 characters of 0/1"),
        ("input,output|011,00", "row 0 is '011'"),
        ("input,conv9x9,output|011,001,000", "unknown op 'conv9x9'"),
        ("input,conv3x3-bn-relu,output|010,000,000", "no path from input to output"),
        (42, "got a int, not a string"),
    ],
)
def test_malformed_strings_raise(text: object, match: str) -> None:
    with pytest.raises(InvalidArchitecture, match=match) as info:
        SPACE.from_string(text)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_from_graph_rejects_bad_matrices() -> None:
    with pytest.raises(InvalidArchitecture, match="3 node labels need a 3x3 adjacency"):
        SPACE.from_graph(["input", "maxpool3x3", "output"], np.zeros((2, 2)))
    with pytest.raises(InvalidArchitecture, match=r"entries \[0.5\]; expected 0 or 1"):
        SPACE.from_graph(["input", "output"], np.array([[0, 0.5], [0, 0]]))


@pytest.mark.parametrize(
    ("adjacency", "operations", "match"),
    [
        (np.zeros((7, 7)), [-1, 0, -3, 1, -2, -3, -3], "padding must be trailing"),
        (np.eye(7, k=1), [-1, 0, 1, -2, -3, -3, -3], "padding must be trailing and edge-free"),
        (np.eye(3, k=1), [-1, 7, -2], "unknown codes \\[7\\]"),
        (np.eye(3, k=1), [-1, -2], "does not match 2 op codes"),
        ([[0, 1], [0]], [-1, -2], "not a 0/1 matrix with integer op codes"),
    ],
)
def test_bad_benchmark_records(adjacency: object, operations: list[int], match: str) -> None:
    with pytest.raises(InvalidArchitecture, match=match):
        NB101Space.from_benchmark_record(adjacency, operations)  # type: ignore[arg-type]


def test_sample_is_deterministic_valid_and_mostly_full_size() -> None:
    drawn = SPACE.sample(500, np.random.default_rng(0))
    assert drawn == SPACE.sample(500, np.random.default_rng(0))
    assert drawn != SPACE.sample(500, np.random.default_rng(1))
    assert all(SPACE.validate(c) is c and SPACE.prune(c) == c for c in drawn)
    sizes = [len(c.ops) for c in drawn]
    assert 0.8 < sizes.count(7) / len(sizes) < 0.97 and sizes.count(6) > 0
    assert len({SPACE.key(c) for c in drawn}) > 480
    assert SPACE.sample(0, np.random.default_rng(0)) == []


def test_sampler_covers_exactly_the_unprunable_cells() -> None:
    for n in range(2, 6):
        upper = [(i, j) for i in range(n) for j in range(i + 1, n)]
        expected = set()
        for bits in itertools.product((0, 1), repeat=len(upper)):
            matrix = np.zeros((n, n), dtype=int)
            for (i, j), b in zip(upper, bits):
                matrix[i, j] = b
            cell = NB101Cell(tuple(map(tuple, matrix.tolist())), ("input", *["maxpool3x3"] * (n - 2), "output"))
            if SPACE.is_valid(cell) and SPACE.prune(cell) == cell:
                expected.add(cell.adjacency)
        assert set(_path_complete_adjacencies(n)) == expected
    # independent brute-force counts over all 2**15 and 2**21 upper-triangular matrices
    assert len(_path_complete_adjacencies(6)) == 1545
    assert len(_path_complete_adjacencies(7)) == 4793


@st.composite
def unpruned_cells(draw: st.DrawFn) -> NB101Cell:
    n = draw(st.integers(2, 7))
    matrix = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i][j] = draw(st.sampled_from((0, 1)))
    ops = ("input", *draw(st.lists(st.sampled_from(CELL_OPS), min_size=n - 2, max_size=n - 2)), "output")
    return NB101Cell(tuple(map(tuple, matrix)), ops)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(unpruned_cells())
def test_round_trips_property(cell: NB101Cell) -> None:
    assume(SPACE.is_valid(cell))
    pruned = SPACE.prune(cell)
    assert SPACE.from_string(SPACE.to_string(cell)) == pruned
    assert SPACE.from_string(SPACE.to_string(pruned)) == pruned
    assert SPACE.decode(*SPACE.encode(pruned)) == pruned
    assert SPACE.decode(*SPACE.encode(cell)) == pruned
    assert SPACE.key(cell) == SPACE.key(pruned)


# --- neighbourhoods ------------------------------------------------------------------------


def test_neighbours_of_a_small_cell() -> None:
    cell = SPACE.from_string("input,conv3x3-bn-relu,output|011,001,000")
    neighbours = SPACE.neighbours(cell)
    strings = {SPACE.to_string(n) for n in neighbours}
    assert "input,output|01,00" in strings  # dropping 0->1 or 1->2 prunes the op node
    assert "input,conv3x3-bn-relu,output|010,001,000" in strings  # dropping 0->2
    assert "input,maxpool3x3,output|011,001,000" in strings  # changing the op
    assert max(len(n.ops) for n in neighbours) == 4  # splitting an edge grows the cell
    keys = [SPACE.key(n) for n in neighbours]
    assert len(set(keys)) == len(keys) and SPACE.key(cell) not in keys


@settings(max_examples=60, deadline=None, derandomize=True)
@given(unpruned_cells())
def test_neighbours_are_valid_pruned_and_distinct(cell: NB101Cell) -> None:
    assume(SPACE.is_valid(cell))
    neighbours = SPACE.neighbours(cell)
    assert neighbours == SPACE.neighbours(SPACE.prune(cell))  # edits act on the trained cell
    keys = [SPACE.key(n) for n in neighbours]
    assert neighbours and len(set(keys)) == len(keys) and SPACE.key(cell) not in keys
    size = len(SPACE.prune(cell).ops)
    for n in neighbours:
        assert SPACE.prune(n) == n and SPACE.is_valid(n)
        assert len(n.ops) <= min(size + 1, 7)


def test_mutate_is_a_seeded_neighbour() -> None:
    cell = SPACE.sample(1, np.random.default_rng(5))[0]
    assert SPACE.mutate(cell, np.random.default_rng(1)) == SPACE.mutate(cell, np.random.default_rng(1))
    rng = np.random.default_rng(0)
    assert all(SPACE.mutate(cell, rng) in SPACE.neighbours(cell) for _ in range(20))
