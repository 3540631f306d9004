"""GraphTransformer: the lean forward computes what the original forward computed, on the same
parameters; a graph shared by the batch may come at batch 1."""

import pytest
import torch

from nag.nn.graph_transformer import GraphTransformer

pytestmark = pytest.mark.usefixtures("single_thread")


def net(predict_edges: bool, seed: int = 0) -> GraphTransformer:
    torch.manual_seed(seed)
    return GraphTransformer(
        node_classes=5, edge_classes=2, max_nodes=6, dim=16, edge_dim=4, layers=2, heads=2, predict_edges=predict_edges
    )


def run(model: GraphTransformer, reference: bool, *args) -> dict[str, torch.Tensor]:
    model.reference = reference
    try:
        return model(*args)
    finally:
        model.reference = False


@pytest.mark.parametrize("predict_edges", [True, False], ids=["edges", "fixed"])
@pytest.mark.parametrize("shared_t", [True, False], ids=["shared_t", "own_t"])
@pytest.mark.parametrize("with_cond", [True, False], ids=["cond", "no_cond"])
def test_lean_forward_matches_the_original(predict_edges, shared_t, with_cond):
    g = torch.Generator().manual_seed(0)
    b = 7
    nodes = torch.randint(0, 5, (b, 6), generator=g)
    edges = torch.randint(0, 2, (b, 6, 6), generator=g).triu(1)
    if not predict_edges:
        edges = edges[:1]  # one fixed graph for the whole batch
    t = torch.full((b,), 0.4) if shared_t else torch.rand(b, generator=g)
    cond = torch.randn(b, 16, generator=g) if with_cond else None
    model = net(predict_edges).eval()
    with torch.no_grad():
        new = run(model, False, nodes, edges, t, cond)
        old = run(model, True, nodes, edges.expand(b, -1, -1), t, cond)
    assert new.keys() == old.keys()
    for k in new:
        assert new[k].shape == old[k].shape
        torch.testing.assert_close(new[k], old[k], atol=1e-5, rtol=1e-5)


def test_gradients_match_the_original():
    g = torch.Generator().manual_seed(1)
    nodes = torch.randint(0, 5, (5, 6), generator=g)
    edges = torch.randint(0, 2, (5, 6, 6), generator=g).triu(1)
    t, cond = torch.rand(5, generator=g), torch.randn(5, 16, generator=g)
    grads = []
    for reference in (False, True):
        model = net(True).train()
        out = run(model, reference, nodes, edges, t, cond)
        (out["nodes"].square().sum() + out["edges"].square().sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-4)
