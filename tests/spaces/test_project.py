"""``SearchSpace.allowed_ops`` and ``SearchSpace.project``: any finite soft graph projects to a
member of its space, projection is the identity on members' one-hot graphs, and the allowed-op
tables admit every member while ruling out what no member has."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nag.errors import InvalidArchitecture
from nag.spaces import CellSpace, MacroSpace, MBV3Space, NB101Space, NB201Space, NBGraphSpace, SearchSpace
from nag.spaces.cell import Cell
from nag.spaces.macro import MacroArch, Stage
from nag.spaces.mbv3 import MBV3Subnet
from nag.spaces.nbgraph import PROTEINS_OPS


def _chain_space() -> type[SearchSpace]:
    """The documented example space, loaded from its file (``examples/`` is not a package)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "chain_space.py"
    spec = importlib.util.spec_from_file_location("chain_space_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ChainSpace


ChainSpace = _chain_space()
SPACES = [
    NB201Space(),
    NBGraphSpace(),
    NBGraphSpace(PROTEINS_OPS),
    NB101Space(),
    MBV3Space(),
    CellSpace(),
    ChainSpace(),
]
IDS = [repr(s) for s in SPACES]
PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scores = st.one_of(
    st.floats(-2, 2, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 0.5, 1.0, -1.0]),
)


@st.composite
def soft_graphs(draw, space: SearchSpace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Any finite ``(X, A)`` of the space's shapes, with no mask, a prefix mask or any mask."""
    n = space.max_nodes
    x = draw(arrays(np.float32, (n, space.num_ops), elements=scores))
    a = draw(arrays(np.float32, (n, n), elements=scores))
    mask = draw(
        st.one_of(
            st.none(),
            st.integers(0, n).map(lambda k: torch.arange(n) < k),
            arrays(np.bool_, (n,)).map(torch.from_numpy),
        )
    )
    return torch.from_numpy(x), torch.from_numpy(a), mask


def assert_member(space: SearchSpace, arch: object) -> None:
    """A member whose one-hot graph uses allowed ops only and projects back to itself."""
    space.validate(arch)
    x, a, mask = space.encode_batch([arch])
    assert not ((x[0] != 0) & ~space.allowed_ops()).any()
    assert space.project(x[0], a[0], mask[0]) == arch


@pytest.mark.parametrize("space", SPACES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_any_finite_soft_graph_projects_to_a_member(space: SearchSpace, data: st.DataObject) -> None:
    assert_member(space, space.project(*data.draw(soft_graphs(space))))


@pytest.mark.parametrize("space", SPACES, ids=IDS)
@pytest.mark.parametrize("fill", [0.0, -1e30, 1e30, 0.5])
def test_constant_soft_graphs_project_to_members(space: SearchSpace, fill: float) -> None:
    x = torch.full((space.max_nodes, space.num_ops), fill)
    a = torch.full((space.max_nodes, space.max_nodes), fill)
    for mask in (None, torch.ones(space.max_nodes, dtype=torch.bool), torch.zeros(space.max_nodes, dtype=torch.bool)):
        assert_member(space, space.project(x, a, mask))


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_projection_is_the_identity_on_members(space: SearchSpace) -> None:
    archs = space.sample(200, np.random.default_rng(0))
    x, a, mask = space.encode_batch(archs)
    assert [space.project(x[i], a[i], mask[i]) for i in range(len(archs))] == archs
    assert [space.project(x[i], a[i]) for i in range(len(archs))] == archs  # mask from the non-zero rows


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_allowed_ops_admits_every_sampled_member(space: SearchSpace) -> None:
    allowed = space.allowed_ops()
    assert allowed.dtype == torch.bool and allowed.shape == (space.max_nodes, space.num_ops)
    assert torch.equal(allowed, space.allowed_ops())
    x, _, _ = space.encode_batch(space.sample(500, np.random.default_rng(1)))
    assert not ((x != 0) & ~allowed).any()


def allowed_names(space: SearchSpace) -> list[set[str]]:
    return [{space.ops[j] for j in row.nonzero().flatten().tolist()} for row in space.allowed_ops()]


def test_allowed_ops_rule_out_what_no_member_has() -> None:
    nb201 = allowed_names(NB201Space())
    assert nb201[0] == {"input"} and nb201[-1] == {"output"}
    assert all(row == {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"} for row in nb201[1:-1])
    proteins = allowed_names(NBGraphSpace(PROTEINS_OPS))
    assert proteins == [{"input"}, *[set(PROTEINS_OPS)] * 4, {"output"}]
    nb101 = allowed_names(NB101Space())
    assert nb101[0] == {"input"} and nb101[6] == {"output"} and "output" in nb101[1] and "input" not in nb101[1]
    mbv3 = allowed_names(MBV3Space())
    assert mbv3[1] == {"r160", "r176", "r192", "r208", "r224"}  # the resolution node takes a side, nothing else
    assert all(not any(op.startswith("r") for op in row) for row in mbv3[2:])
    assert [("skip" in row) for row in mbv3[2:6]] == [False, False, True, True]
    assert mbv3[0] == {"input"} and mbv3[-1] == {"output"}
    assert allowed_names(MBV3Space(resolutions=[128, 224]))[1] == {"r128", "r224"}
    cell = allowed_names(CellSpace())
    assert "output" not in cell[1] and "output" in cell[2] and cell[7] == {"output"}
    chain = allowed_names(ChainSpace())
    assert chain == [{"input"}, *[{"conv3x3", "conv1x1", "maxpool3x3", "avgpool3x3", "skip"}] * 4, {"output"}]


@pytest.mark.parametrize("space", [NB201Space(), NBGraphSpace(), MBV3Space(), CellSpace()], ids=repr)
def test_the_sampled_default_equals_the_exact_tables(space: SearchSpace) -> None:
    """Where no (position, op) pair is rare, the base default finds exactly the override's table."""
    assert torch.equal(SearchSpace.allowed_ops(space), space.allowed_ops())


def test_wrong_shapes_and_non_finite_scores_are_refused() -> None:
    space = NB201Space()
    x, a = space.encode(space.sample(1, np.random.default_rng(0))[0])
    with pytest.raises(InvalidArchitecture, match="expected X"):
        space.project(x[:-1], a)
    with pytest.raises(InvalidArchitecture, match="non-finite"):
        space.project(x, a.masked_fill(a == 0, float("nan")))


# --- repairs, space by space --------------------------------------------------------------
def test_nbgraph_layers_read_their_best_earlier_node_and_one_computes() -> None:
    space = NBGraphSpace()
    x = torch.zeros(6, space.num_ops)
    x[:, space.op_index("skip")] = 1.0
    x[3, space.op_index("gcn")] = 0.9  # the smallest loss from leaving skip
    a = torch.full((6, 6), 0.8)
    a[1, 3] = a[2, 4] = 0.9
    assert space.project(x, a) == ((0, 0, 1, 2), ("skip", "skip", "gcn", "skip"))


def test_nb101_keeps_the_nine_best_edges() -> None:
    space = NB101Space()
    a = torch.zeros(7, 7)
    for i in range(6):
        a[i, i + 1] = 0.9  # the chain through every node
    for score, (i, j) in zip((0.8, 0.79, 0.78, 0.77, 0.76, 0.75), ((0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (0, 6))):
        a[i, j] = score
    cell = space.project(torch.zeros(7, space.num_ops), a, torch.ones(7, dtype=torch.bool))
    edges = {tuple(e) for e in np.argwhere(np.array(cell.adjacency)).tolist()}
    assert edges == {(i, i + 1) for i in range(6)} | {(0, 2), (1, 3), (2, 4)}


def test_nb101_fills_the_budget_that_pruning_frees() -> None:
    """The 9 best edges include a block unreachable from the input; once it is pruned, weaker
    edges that wire two more nodes in fit the budget."""
    space = NB101Space()
    a = torch.zeros(7, 7)
    a[0, 1], a[1, 2], a[2, 6] = 0.99, 0.99, 0.99
    a[3, 4], a[4, 5], a[3, 5] = 0.95, 0.95, 0.95  # node 3 reads nothing: dead
    a[0, 2], a[1, 6], a[0, 6] = 0.9, 0.9, 0.9
    a[0, 4], a[5, 6] = 0.6, 0.55
    cell = space.project(torch.zeros(7, space.num_ops), a, torch.ones(7, dtype=torch.bool))
    assert len(cell.ops) == 6 and np.sum(cell.adjacency) == 9


def test_nb101_adds_the_cheapest_path_when_the_output_is_unreachable() -> None:
    space = NB101Space()
    a = torch.zeros(7, 7)
    a[0, 1], a[1, 2], a[2, 6], a[0, 3] = 0.9, 0.4, 0.3, 0.9
    cell = space.project(torch.zeros(7, space.num_ops), a, torch.ones(7, dtype=torch.bool))
    assert cell.adjacency == ((0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))


def test_cell_routes_the_input_through_an_op_node() -> None:
    space = CellSpace()
    a = torch.zeros(8, 8)
    a[0, 7] = 1.0
    a[0, 4], a[4, 7] = 0.45, 0.4
    cell = space.project(torch.zeros(8, space.num_ops), a, torch.ones(8, dtype=torch.bool))
    assert cell.adjacency == ((0, 1, 1), (0, 0, 1), (0, 0, 0))


def test_mbv3_skips_only_end_a_stage() -> None:
    space = MBV3Space()
    arch = MBV3Subnet((((3, 3), (5, 4), (7, 6)),) * 5, 192)
    x, a = space.encode(arch)
    x[4] = 0.0
    x[4, space.op_index("skip")] = 0.6  # slot 3 would rather skip, slot 4 still computes
    x[5, space.op_index("k7_e6")], x[5, space.op_index("skip")] = 0.0, 0.3
    projected = space.project(x, a)
    assert projected.stages[0] == ((3, 3), (5, 4)) and projected.resolution == 192


def test_mbv3_takes_the_best_scoring_resolution() -> None:
    space = MBV3Space()
    arch = MBV3Subnet((((3, 3), (5, 4), (7, 6)),) * 5, 192)
    x, a = space.encode(arch)
    x[1] = 0.0
    x[1, space.op_index("r160")], x[1, space.op_index("r224")] = 0.4, 0.5
    x[1, space.op_index("k3_e3")] = 0.9  # a layer op at the resolution node is not a candidate
    assert space.project(x, a) == MBV3Subnet(arch.stages, 224)


# --- the macro space: exact on one-hot graphs, refuses others ------------------------------
MACROS = [MacroSpace(max_stages=2), MacroSpace(num_cells=12, max_stages=2, channels=(8, 16), repeats=(1,))]


@pytest.mark.parametrize("space", MACROS, ids=repr)
def test_macro_projection_is_exact_on_members(space: MacroSpace) -> None:
    archs = space.sample(100, np.random.default_rng(0))
    x, a, mask = space.encode_batch(archs)
    assert [space.project(x[i], a[i], mask[i]) for i in range(len(archs))] == archs
    assert not ((x != 0) & ~space.allowed_ops()).any()


@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_macro_projection_refuses_soft_graphs_it_cannot_read(data: st.DataObject) -> None:
    space = MACROS[1]
    try:
        space.validate(space.project(*data.draw(soft_graphs(space))))
    except InvalidArchitecture as e:
        assert str(e).startswith(f"{space.name}: cannot project") and "\n" not in str(e)


def test_macro_allowed_ops_are_exact_over_every_topological_order() -> None:
    """Brute force: every relabelling of every vocabulary cell in one or two stages."""
    space = MACROS[1]
    variants = []
    for cell in space.cells:
        adjacency, n = np.array(cell.adjacency), len(cell.ops)
        for inner in itertools.permutations(range(1, n - 1)):
            order = [0, *inner, n - 1]
            moved = adjacency[np.ix_(order, order)]
            if not np.tril(moved).any():
                variants.append(Cell(tuple(map(tuple, moved.tolist())), tuple(cell.ops[i] for i in order)))
    archs = [
        MacroArch(8, tuple(Stage(v, 8, 1, 1) for v in combo))
        for k in (1, 2)
        for combo in itertools.product(variants, repeat=k)
    ]
    x, _, _ = space.encode_batch(archs)
    cols = [i for i, op in enumerate(space.ops) if not op.startswith(("stem_", "stage_"))]  # one stem/header used
    assert torch.equal((x != 0).any(0)[:, cols], space.allowed_ops()[:, cols])


@pytest.mark.parametrize("space", [s for s in SPACES if not isinstance(s, MacroSpace)], ids=lambda s: repr(s))
def test_changed_entries_count_what_separates_a_graph_from_an_architecture(space: SearchSpace) -> None:
    first, second = space.sample(2, np.random.default_rng(3))
    x, a, mask = space.encode_batch([first, second])
    assert space.changed_entries(x[0], a[0], mask[0], first) == 0
    labels = [(space.to_graph(arch)[0], np.triu(np.asarray(space.to_graph(arch)[1]), 1)) for arch in (first, second)]
    n = space.max_nodes
    read = [np.array([space.op_index(op) for op in lab] + [-1] * (n - len(lab))) for lab, _ in labels]
    adj = [np.pad(g, ((0, n - len(g)), (0, n - len(g)))) for _, g in labels]
    expected = int((read[0] != read[1]).sum() + (adj[0] != adj[1]).sum())
    assert space.changed_entries(x[0], a[0], mask[0], second) == expected
