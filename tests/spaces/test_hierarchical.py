"""Hierarchical space: closed-form params/FLOPs against built networks, canonical cell keys
against networkx isomorphism, string/graph round trips, neighbourhoods."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nag.errors import InvalidArchitecture
from nag.spaces.cell import CELL_OPS, Cell, CellSpace
from nag.spaces.macro import MacroArch, MacroConstraints, MacroSpace, Stage

pytestmark = pytest.mark.usefixtures("single_thread")

CELLS = CellSpace()


def cell(ops: str, rows: str) -> Cell:
    return Cell(tuple(tuple(int(c) for c in row) for row in rows.split()), ("input", *ops.split(), "output"))


def as_nx(c: Cell) -> nx.DiGraph:
    c = CELLS.prune(c)
    g = nx.DiGraph()
    g.add_nodes_from((i, {"op": op}) for i, op in enumerate(c.ops))
    g.add_edges_from(zip(*np.nonzero(np.array(c.adjacency))))
    return g


def relabelled(c: Cell, order: list[int]) -> Cell:
    a = np.array(c.adjacency)[np.ix_(order, order)]
    return Cell(tuple(map(tuple, a.tolist())), tuple(c.ops[i] for i in order))


def test_vocabulary_covers_the_issue_ops() -> None:
    assert set(CELL_OPS) == {
        "conv1x1",
        "conv3x3",
        "conv5x5",
        "dwsep3x3",
        "dwsep5x5",
        "maxpool3x3",
        "avgpool3x3",
        "skip",
    }
    assert CELLS.max_nodes == 8 and not CELLS.fixed_topology


@pytest.mark.parametrize(("input_size", "seed"), [(9, 0), (12, 1), (7, 2)])
def test_closed_form_params_and_flops_equal_the_built_network(input_size: int, seed: int) -> None:
    """Odd sizes exercise the stride rounding; any cell (no vocabulary), 3 classes, 2 channels."""
    space = MacroSpace(stem_channels=(4, 6), channels=(4, 8, 12), repeats=(1, 2), max_stages=3)
    for arch in space.sample(5, np.random.default_rng(seed)):
        net = space.to_module(arch, num_classes=3, in_channels=2).eval()
        assert sum(p.numel() for p in net.parameters()) == space.params(arch, num_classes=3, in_channels=2)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = net(torch.randn(1, 2, input_size, input_size))
        assert out.shape == (1, 3)
        assert counter.get_total_flops() == space.flops(arch, num_classes=3, in_channels=2, input_size=input_size)
        constraints = MacroConstraints(3, input_size, 10**9, 10**12, in_channels=2)
        assert space.cost(arch, constraints) == (space.params(arch, 3, 2), space.flops(arch, 3, 2, input_size))


def test_every_op_is_counted_exactly() -> None:
    space = MacroSpace(stem_channels=(4,), channels=(6,), strides=(2,), repeats=(2,))
    for op in CELL_OPS:
        arch = MacroArch(4, (Stage(cell(op, "010 001 000"), 6, 2, 2),))
        net = space.to_module(arch, num_classes=5, in_channels=1).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.randn(1, 1, 10, 10))
        assert sum(p.numel() for p in net.parameters()) == space.params(arch, 5, 1), op
        assert counter.get_total_flops() == space.flops(arch, 5, 1, 10), op


def test_cell_module_changes_width_and_resolution() -> None:
    c = cell("conv3x3 dwsep5x5 maxpool3x3", "01100 00011 00010 00001 00000")
    out = CELLS.to_module(c, c_in=3, c_out=8, stride=2)(torch.randn(2, 3, 9, 9))
    assert out.shape == (2, 8, 5, 5)


def test_pruning_drops_nodes_off_every_path() -> None:
    dead_end = cell("conv3x3 conv1x1", "0110 0001 0000 0000")  # node 2 feeds nothing
    assert CELLS.prune(dead_end) == cell("conv3x3", "010 001 000")
    assert CELLS.key(dead_end) == CELLS.key(cell("conv3x3", "010 001 000"))
    with pytest.raises(InvalidArchitecture, match="no op node"):
        CELLS.validate(cell("conv3x3", "011 000 000"))
    with pytest.raises(InvalidArchitecture, match="no path"):
        CELLS.validate(cell("conv3x3", "010 000 000"))
    with pytest.raises(InvalidArchitecture, match="unknown op 'conv7x7'"):
        CELLS.validate(cell("conv7x7", "010 001 000"))


def test_key_is_invariant_under_every_topological_relabelling() -> None:
    for c in CELLS.sample(60, np.random.default_rng(0)):
        c = CELLS.prune(c)
        orders = itertools.islice(nx.all_topological_sorts(as_nx(c)), 30)
        assert {CELLS.key(relabelled(c, list(o))) for o in orders} == {CELLS.key(c)}
        assert CELLS.key(CELLS.canonical(c)) == CELLS.key(c)


def test_keys_are_equal_exactly_for_isomorphic_cells() -> None:
    rng = np.random.default_rng(1)
    base = CELLS.sample(25, rng)
    # relabelled copies and neighbours give many isomorphic and near-isomorphic pairs
    pool = base + [relabelled(CELLS.prune(c), list(next(nx.all_topological_sorts(as_nx(c))))[::1]) for c in base[:5]]
    pool += [n for c in base[:2] for n in CELLS.neighbours(c)][:30]
    match = nx.algorithms.isomorphism.categorical_node_match("op", None)
    same = 0
    for a, b in itertools.combinations(pool, 2):
        iso = nx.is_isomorphic(as_nx(a), as_nx(b), node_match=match)
        assert iso == (CELLS.key(a) == CELLS.key(b)), (CELLS.to_string(a), CELLS.to_string(b))
        same += iso
    assert same >= 5


def test_cell_string_and_graph_round_trips() -> None:
    for c in CELLS.sample(40, np.random.default_rng(2)):
        assert CELLS.from_string(CELLS.to_string(c)) == CELLS.prune(c)
        x, a = CELLS.encode(c)
        assert CELLS.decode(x, a) == CELLS.prune(c)
    with pytest.raises(InvalidArchitecture, match="'\\|' separators"):
        CELLS.from_string("input,conv3x3,output")


def test_cell_neighbours_are_valid_distinct_and_exclude_the_cell() -> None:
    for c in CELLS.sample(10, np.random.default_rng(3)):
        options = CELLS.neighbours(c)
        keys = [CELLS.key(n) for n in options]
        assert options and all(CELLS.is_valid(n) for n in options)
        assert len(set(keys)) == len(keys) and CELLS.key(c) not in keys
        assert all(len(n.ops) - 2 <= 6 for n in options)


def test_sampling_is_seeded_and_covers_sizes_and_ops() -> None:
    a = CELLS.sample(300, np.random.default_rng(4))
    assert a == CELLS.sample(300, np.random.default_rng(4))
    assert {len(CELLS.prune(c).ops) - 2 for c in a} == set(range(1, 7))
    assert {op for c in a for op in c.ops[1:-1]} == set(CELL_OPS)


# --- macro ----------------------------------------------------------------------------------
SPACE = MacroSpace(num_cells=8, cell_seed=0)


def test_macro_string_graph_round_trips_and_vocabulary() -> None:
    assert len(SPACE.cells) == 8 and len({CELLS.key(c) for c in SPACE.cells}) == 8
    for arch in SPACE.sample(30, np.random.default_rng(5)):
        assert SPACE.from_string(SPACE.to_string(arch)) == arch
        labels, adjacency = SPACE.to_graph(arch)
        assert SPACE.from_graph(labels, adjacency) == arch
        x, a = SPACE.encode(arch)
        assert SPACE.decode(x, a) == arch
    assert MacroSpace(**SPACE.config()).identity == SPACE.identity


def test_macro_validation_names_the_field() -> None:
    arch = SPACE.sample(1, np.random.default_rng(6))[0]
    stage = arch.stages[0]
    with pytest.raises(InvalidArchitecture, match="stage 0 channels=7"):
        SPACE.validate(MacroArch(arch.stem, (stage._replace(channels=7),)))
    outsider = next(c for c in CELLS.sample(50, np.random.default_rng(7)) if CELLS.key(c) not in SPACE.cell_ids)
    with pytest.raises(InvalidArchitecture, match="not in the space's 8-cell vocabulary"):
        SPACE.validate(MacroArch(arch.stem, (stage._replace(cell=outsider),)))
    assert MacroSpace().is_valid(MacroArch(arch.stem, (stage._replace(cell=outsider),)))
    with pytest.raises(InvalidArchitecture, match="cannot parse"):
        SPACE.from_string("16;input,conv3x3,output|010,001,000:32:2")


def test_macro_key_merges_a_stage_that_continues_the_previous_one() -> None:
    c = SPACE.cells[0]
    merged = MacroArch(8, (Stage(c, 16, 2, 3),))
    split = MacroArch(8, (Stage(c, 16, 2, 1), Stage(c, 16, 1, 2)))
    assert SPACE.key(merged) == SPACE.key(split) and merged != split
    x = torch.randn(2, 3, 8, 8)
    outs = []
    for arch in (merged, split):
        torch.manual_seed(0)
        outs.append(SPACE.to_module(arch).eval()(x))
    torch.testing.assert_close(outs[0], outs[1])
    assert SPACE.key(MacroArch(8, (Stage(c, 16, 2, 1), Stage(c, 16, 2, 2)))) != SPACE.key(merged)


def test_macro_neighbours_are_valid_distinct_and_exclude_the_arch() -> None:
    for arch in SPACE.sample(8, np.random.default_rng(8)):
        options = SPACE.neighbours(arch)
        keys = [SPACE.key(n) for n in options]
        assert options and all(SPACE.is_valid(n) for n in options)
        assert len(set(keys)) == len(keys) and SPACE.key(arch) not in keys
        assert SPACE.mutate(arch, np.random.default_rng(0)) in options


def test_satisfies_is_the_exact_budget_check() -> None:
    arch = SPACE.sample(1, np.random.default_rng(9))[0]
    p, f = SPACE.params(arch, 10, 1), SPACE.flops(arch, 10, 1, 28)
    assert SPACE.satisfies(arch, MacroConstraints(10, 28, p, f, 1))
    assert not SPACE.satisfies(arch, MacroConstraints(10, 28, p - 1, f, 1))
    assert not SPACE.satisfies(arch, MacroConstraints(10, 28, p, f - 1, 1))
