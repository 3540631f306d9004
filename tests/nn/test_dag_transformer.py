"""DagTransformer: the lean forward computes what the original per-layer nn.MultiheadAttention
forward computed, on the same parameters (so checkpoints load and sample as before)."""

import pytest
import torch

from nag.nn.dag_transformer import DagTransformer, dag_attention_mask

pytestmark = pytest.mark.usefixtures("single_thread")


def net(predict_edges: bool, seed: int = 0, dropout: float = 0.0) -> DagTransformer:
    torch.manual_seed(seed)
    return DagTransformer(
        num_ops=5, max_nodes=6, dim=16, layers=2, heads=4, dropout=dropout, predict_edges=predict_edges
    )


def inputs(b: int, fixed: bool, shared_t: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 6, 5, generator=g)
    if fixed:
        adj = torch.zeros(1, 6, 6)
        adj[0, [0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 5, 5]] = 1.0
        edges = adj * 2 - 1
    else:
        edges = torch.randn(b, 6, 6, generator=g).triu(1)
        adj = (edges > 0).float()
    node_mask = torch.ones(adj.shape[:2], dtype=torch.bool)
    t = torch.full((b,), 0.3) if shared_t else torch.rand(b, generator=g)
    return x, edges.triu(1), node_mask, t, adj


def run(model: DagTransformer, reference: bool, *args) -> dict[str, torch.Tensor]:
    model.reference = reference
    try:
        return model(*args)
    finally:
        model.reference = False  # back to the default


@pytest.mark.parametrize("mode", ["adjacency", "reachability", "full"])
@pytest.mark.parametrize("fixed", [True, False], ids=["fixed", "variable"])
@pytest.mark.parametrize("shared_t", [True, False], ids=["shared_t", "own_t"])
def test_lean_forward_matches_the_original(mode, fixed, shared_t):
    model = net(predict_edges=not fixed).eval()
    x, edges, node_mask, t, adj = inputs(7, fixed, shared_t)
    allowed = dag_attention_mask(adj, node_mask, mode)
    with torch.no_grad():
        new = run(model, False, x, edges, node_mask, t, allowed)
        old = run(model, True, x, edges.expand(7, -1, -1), node_mask.expand(7, -1), t, allowed.expand(7, -1, -1))
    assert new.keys() == old.keys()
    for k in new:
        assert new[k].shape == old[k].shape
        torch.testing.assert_close(new[k], old[k], atol=1e-5, rtol=1e-5)


def test_gradients_match_the_original():
    """Training runs the lean forward: its gradients are the original's."""
    x, edges, node_mask, t, adj = inputs(5, False, False)
    allowed = dag_attention_mask(adj, node_mask, "adjacency")
    grads = []
    for reference in (False, True):
        model = net(predict_edges=True).train()
        out = run(model, reference, x, edges, node_mask, t, allowed)
        (out["x"].square().sum() + out["adj"].square().sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-4)


def test_parameter_layout_is_unchanged():
    """Checkpoints written before the lean forward load into it: same state_dict keys and shapes."""
    keys = {k: tuple(v.shape) for k, v in net(predict_edges=True).state_dict().items()}
    for i in range(2):
        assert keys[f"layers.{i}.attn.in_proj_weight"] == (48, 16)
        assert keys[f"layers.{i}.attn.out_proj.weight"] == (16, 16)
        assert keys[f"layers.{i}.edge_bias.weight"] == (4, 2)
        assert keys[f"layers.{i}.modulation.weight"] == (64, 16)
    assert {"op_in.weight", "edge_src.weight", "edge_dst.weight", "edge_in.weight", "edge_out.1.weight"} <= set(keys)
    assert not any("position" in k for k in keys)


def test_attention_bias_is_minus_infinity_exactly_where_attention_is_not_allowed():
    model = net(predict_edges=False)
    _, edges, node_mask, _, adj = inputs(1, True, True)
    allowed = dag_attention_mask(adj, node_mask, "adjacency")
    pair = torch.stack([edges, edges.transpose(-1, -2)], dim=-1)
    bias = model.attention_bias(pair, allowed)
    assert bias.shape == (2, 1, 4, 6, 6)
    assert torch.equal(torch.isinf(bias), (~allowed).unsqueeze(1).expand_as(bias))
    assert torch.isfinite(bias[:, :, :, allowed[0]]).all()


def test_fixed_topology_mask_is_built_once_for_the_batch():
    model = net(predict_edges=False).eval()
    x, edges, node_mask, t, adj = inputs(9, True, True)
    allowed = dag_attention_mask(adj, node_mask, "adjacency")
    assert allowed.shape == (1, 6, 6)
    with torch.no_grad():
        assert model(x, edges, node_mask, t, allowed)["x"].shape == (9, 6, 5)


def test_dropout_only_in_training():
    model = net(predict_edges=False, dropout=0.5)
    x, edges, node_mask, t, adj = inputs(4, True, True)
    allowed = dag_attention_mask(adj, node_mask, "full")
    model.eval()
    with torch.no_grad():
        a, b = model(x, edges, node_mask, t, allowed)["x"], model(x, edges, node_mask, t, allowed)["x"]
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    c = model(x, edges, node_mask, t, allowed)["x"]
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed", "variable"])
def test_a_self_conditioned_network_reads_its_estimate_and_none_is_zeros(fixed):
    torch.manual_seed(0)
    model = DagTransformer(5, 6, dim=16, layers=2, heads=4, predict_edges=not fixed, self_condition=True).eval()
    x, edges, node_mask, t, adj = inputs(3, fixed, True)
    allowed = dag_attention_mask(adj, node_mask, "full")
    zeros = {"x": torch.zeros_like(x)} | ({} if fixed else {"adj": torch.zeros(3, 6, 6)})
    estimate = {k: torch.rand_like(v) for k, v in zeros.items()}
    with torch.no_grad():
        none, zero, est = (model(x, edges, node_mask, t, allowed, e) for e in (None, zeros, estimate))
        ref = run(model, True, x, edges, node_mask, t, allowed, estimate)
    for k in none:
        assert torch.equal(none[k], zero[k])
        assert not torch.allclose(none[k], est[k])
        torch.testing.assert_close(est[k], ref[k], atol=1e-5, rtol=1e-5)
