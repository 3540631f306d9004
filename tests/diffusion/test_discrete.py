"""Categorical diffusion: transition algebra, Bayes posterior, directed-edge round trip, skip-step sampling."""

import itertools

import numpy as np
import pytest
import torch

from nag.diffusion.discrete import (
    CategoricalDiffusion,
    budgeted_presence,
    cosine_alpha_bar,
    marginal_transition,
    posterior,
)
from nag.spaces import NBGraphSpace
from nag.spaces.nb101 import NB101Space


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    """``torch.testing.assert_close`` costs seconds of lazy imports on first use; this does not."""
    assert a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0), f"max |a - b| = {(a - b).abs().max()}"


def toy(T: int = 6, k: int = 4, positions: int = 3, seed: int = 0) -> CategoricalDiffusion:
    """Nodes only, random per-position marginals (some classes impossible at some positions)."""
    g = torch.Generator().manual_seed(seed)
    d = CategoricalDiffusion(positions, k, None, T)
    m = torch.rand(positions, k, generator=g) + 0.05
    m[0, 1] = 0.0
    d.node_marginals.copy_(m / m.sum(-1, keepdim=True))
    return d


def stepwise(d: CategoricalDiffusion, t: int) -> torch.Tensor:
    """``Q_t`` of step ``t - 1 -> t`` built independently from abar: ``a_t = abar_t / abar_{t-1}``."""
    a = cosine_alpha_bar(d.T)
    return marginal_transition(a[t] / a[t - 1] * torch.ones(d.node_marginals.shape[0]), d.node_marginals)


def test_schedule_runs_from_clean_to_pure_noise():
    a = cosine_alpha_bar(500)
    assert a[0] == 1.0 and a[-1] < 1e-6
    assert torch.all(a[1:] <= a[:-1])


def test_transition_matrices_are_row_stochastic():
    d = toy(T=50)
    t = torch.arange(1, d.T + 1)
    mats = torch.stack(
        [d.cumulative("nodes", t), d.transition("nodes", t, t - 1), torch.stack([stepwise(d, int(i)) for i in t])]
    )
    assert (mats >= 0).all()
    assert_close(mats.sum(-1), torch.ones(mats.shape[:-1]))


def test_cumulative_product_matches_closed_form_and_converges_to_marginals():
    d = toy(T=40)
    prod = torch.eye(4).expand(3, 4, 4)
    for t in range(1, d.T + 1):
        prod = prod @ stepwise(d, t)
        assert_close(prod, d.cumulative("nodes", torch.tensor([t]))[0])
    # at T every row (whatever the clean class) is the position's marginal distribution
    assert_close(prod, d.node_marginals.unsqueeze(-2).expand(3, 4, 4))


def test_posterior_equals_brute_force_bayes():
    """q(z_s | z_t, x_0) by enumerating every path x_0 -> z_s -> z_t with stepwise matrices."""
    d = toy(T=6, k=3, positions=1)
    k = 3
    for t, s in [(4, 3), (6, 2), (3, 0)]:
        q_s = torch.eye(k)
        for r in range(1, s + 1):
            q_s = q_s @ stepwise(d, r)[0]
        q_ts = torch.eye(k)
        for r in range(s + 1, t + 1):
            q_ts = q_ts @ stepwise(d, r)[0]
        tt, ss = torch.tensor([t]), torch.tensor([s])
        for z_t in range(k):
            onehot = torch.nn.functional.one_hot(torch.tensor([[z_t]]), k).float()
            got = posterior(
                onehot, d.transition("nodes", tt, ss), d.cumulative("nodes", ss), d.cumulative("nodes", tt)
            )[0, 0]
            for x0 in range(k):
                joint = torch.tensor([q_s[x0, zs] * q_ts[zs, z_t] for zs in range(k)])
                if joint.sum() == 0:  # z_t impossible from this x_0 (a zero marginal)
                    assert torch.all(got[x0] == 0)
                else:
                    assert_close(got[x0], joint / joint.sum())


def test_posterior_row_is_zero_for_an_impossible_clean_class():
    d = toy(T=10)  # class 1 has marginal 0 at position 0: z_t = 1 there can only come from x_0 = 1
    t, s = torch.tensor([5]), torch.tensor([2])
    z = torch.nn.functional.one_hot(torch.tensor([[1, 0, 0]]), 4).float()
    post = posterior(z, d.transition("nodes", t, s), d.cumulative("nodes", s), d.cumulative("nodes", t))
    assert torch.all(post[0, 0, [0, 2, 3]] == 0)
    assert_close(post[0, 0, 1].sum(), torch.tensor(1.0))


@pytest.mark.parametrize("space", [NBGraphSpace(), NB101Space()], ids=["nbgraph", "nb101"])
def test_directed_edges_survive_encode_diffuse_decode(space):
    archs = space.sample(32, np.random.default_rng(0))
    x, adj, mask = space.encode_batch(archs)
    v = space.num_ops
    nodes = torch.where(mask, x.argmax(-1), v)
    edges = adj.long().triu(1)
    assert torch.equal(edges, adj.long()), "encoded adjacency is strictly upper-triangular"
    d = CategoricalDiffusion(space.max_nodes, v + 1, 2, T=500)
    d.set_marginals({"nodes": nodes, "edges": edges})
    noisy = d.noise(
        {"nodes": nodes, "edges": edges}, torch.zeros(32, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy["edges"], edges) and torch.equal(noisy["nodes"], nodes)
    real = noisy["nodes"] < v
    x_out = torch.nn.functional.one_hot(noisy["nodes"].clamp_max(v - 1), v).float() * real.unsqueeze(-1)
    decoded = [space.decode(xo, a.float(), m) for xo, a, m in zip(x_out, noisy["edges"], real)]
    assert [space.key(a) for a in decoded] == [space.key(a) for a in archs]
    assert (edges.transpose(-1, -2) * edges).sum() == 0, "no pair is stored in both directions"


def test_noise_at_small_t_rarely_changes_a_class_and_at_T_matches_the_marginals():
    d = toy(T=500, k=4, positions=3)
    x0 = torch.full((20000, 3), 2)
    gen = torch.Generator().manual_seed(0)
    early = d.noise({"nodes": x0}, torch.full((20000,), 1), gen)["nodes"]
    assert (early != x0).float().mean() < 0.01
    late = d.noise({"nodes": x0}, torch.full((20000,), 500), gen)["nodes"]
    freq = torch.nn.functional.one_hot(late, 4).float().mean(0)
    assert_close(freq, d.node_marginals, atol=0.02)


@pytest.mark.parametrize(("steps", "spacing"), [(50, "time"), (7, "time"), (1, "time"), (7, "alpha"), (1, "alpha")])
def test_skip_step_ancestral_sampler_recovers_the_data_distribution(steps, spacing):
    """With the exact x_0-posterior of a toy data distribution as the denoiser, ancestral
    sampling (with or without skipping steps, however spaced) must reproduce that distribution."""
    k, n = 4, 20000
    data = torch.tensor([0.6, 0.05, 0.3, 0.05])
    d = CategoricalDiffusion(1, k, None, T=50)
    d.node_marginals.copy_(torch.tensor([[0.25, 0.25, 0.25, 0.25]]))
    gen = torch.Generator().manual_seed(1)
    state = d.prior(n, gen)
    times = d.timesteps(steps, spacing)
    assert times[0] == 50 and times[-1] == 0 and len(times) == steps + 1
    for t, s in itertools.pairwise(times):
        likelihood = d.q_probs("nodes", torch.arange(k)[:, None], torch.full((k,), t))[:, 0]  # [x_0, z_t]
        exact = data[:, None] * likelihood  # p(x_0, z_t)
        x0_given_zt = (exact / exact.sum(0, keepdim=True)).T[state["nodes"]]  # [n, 1, k]
        state = d.step(state, {"nodes": x0_given_zt}, t, s, gen)
    freq = torch.nn.functional.one_hot(state["nodes"][:, 0], k).float().mean(0)
    assert_close(freq, data, atol=0.015)


def test_alpha_spacing_redraws_an_even_share_of_positions_per_step():
    d = CategoricalDiffusion(1, 4, None, T=500)
    times = d.timesteps(10, "alpha")
    assert times[0] == 500 and times[-1] == 0 and len(times) == 11 and times == sorted(times, reverse=True)
    assert_close(d.alpha_bar[times[1:]] - d.alpha_bar[times[:-1]], torch.full((10,), 0.1), atol=0.003)
    assert times != d.timesteps(10), "not evenly spaced in time: the cosine schedule is not linear"
    assert len(d.timesteps(500, "alpha")) < 501, "levels closer than one time step merge"
    with pytest.raises(ValueError, match="spacing='log'"):
        d.timesteps(10, "log")


def test_edge_marginals_keep_the_lower_triangle_empty():
    space = NBGraphSpace()
    x, adj, mask = space.encode_batch(space.sample(64, np.random.default_rng(1)))
    d = CategoricalDiffusion(space.max_nodes, space.num_ops + 1, 2, T=50)
    d.set_marginals({"nodes": torch.where(mask, x.argmax(-1), space.num_ops), "edges": adj.long()})
    lower = ~torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert torch.all(d.edge_marginals[lower][:, 0] == 1.0)
    state = d.prior(200, torch.Generator().manual_seed(0))
    assert torch.equal(state["edges"], state["edges"].triu(1))
    # layer 1 always reads the input in NB-Graph: that pair is never noised away
    assert d.edge_marginals[0, 1, 1] == 1.0 and torch.all(state["edges"][:, 0, 1] == 1)


def random_x0_probs(d: CategoricalDiffusion, kind: str, z: torch.Tensor, seed: int) -> torch.Tensor:
    """A prediction that, like the guided one, puts no mass on classes a position never has."""
    g = torch.Generator().manual_seed(seed)
    m = d.marginals(kind)
    p = torch.rand(*z.shape, m.shape[-1], generator=g).masked_fill(m <= 0, 0.0)
    return p / p.sum(-1, keepdim=True)


@pytest.mark.parametrize("t,s", [(6, 5), (6, 0), (4, 1), (1, 0)])
def test_closed_form_reverse_probs_equal_the_dense_matrix_products(t, s):
    d = toy(T=6)
    z = d.prior(500, torch.Generator().manual_seed(0))["nodes"]
    probs = random_x0_probs(d, "nodes", z, seed=t)
    got = d.reverse_probs("nodes", z, probs, t, s)
    assert_close(got, d.reverse_probs_dense("nodes", z, probs, t, s), atol=1e-6)
    assert_close(got.sum(-1), torch.ones(z.shape))


def test_closed_form_reverse_probs_on_directed_edges():
    space = NBGraphSpace()
    x, adj, mask = space.encode_batch(space.sample(64, np.random.default_rng(2)))
    d = CategoricalDiffusion(space.max_nodes, space.num_ops + 1, 2, T=40)
    d.set_marginals({"nodes": torch.where(mask, x.argmax(-1), space.num_ops), "edges": adj.long()})
    state = d.prior(300, torch.Generator().manual_seed(3))
    for kind in d.kinds:
        probs = random_x0_probs(d, kind, state[kind], seed=4)
        for t, s in [(40, 30), (40, 0), (9, 8)]:
            assert_close(
                d.reverse_probs(kind, state[kind], probs, t, s),
                d.reverse_probs_dense(kind, state[kind], probs, t, s),
                atol=1e-6,
            )


def test_closed_form_keeps_the_class_where_no_predicted_x0_could_have_produced_it():
    d = toy(T=10)  # class 1 is impossible at position 0: z_t = 1 there only comes from x_0 = 1
    z = torch.tensor([[1, 0, 2]])
    probs = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.25] * 4, [0.25] * 4]])  # no mass on x_0 = 1 at position 0
    got = d.reverse_probs("nodes", z, probs, 5, 2)
    assert torch.equal(got[0, 0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert_close(got, d.reverse_probs_dense("nodes", z, probs, 5, 2))


def test_reference_flag_switches_to_the_dense_posterior(monkeypatch):
    d = toy(T=6)
    z = d.prior(10, torch.Generator().manual_seed(0))["nodes"]
    probs = random_x0_probs(d, "nodes", z, seed=0)
    calls = []
    dense = CategoricalDiffusion.reverse_probs_dense
    monkeypatch.setattr(
        CategoricalDiffusion, "reverse_probs_dense", lambda self, *a: calls.append(1) or dense(self, *a)
    )
    d.reverse_probs("nodes", z, probs, 3, 1)
    assert not calls
    d.reference = True
    d.reverse_probs("nodes", z, probs, 3, 1)
    assert calls


def test_a_tilt_reweights_the_reverse_step_but_never_reaches_impossible_classes():
    diffusion = CategoricalDiffusion(3, 4, None, T=10)
    diffusion.set_marginals({"nodes": torch.tensor([[0, 1, 2], [3, 1, 2]])})  # node 0 never takes class 2
    state = diffusion.prior(500, torch.Generator().manual_seed(0))
    x0 = {"nodes": torch.full((500, 3, 4), 0.25)}
    x0["nodes"][:, 0] = torch.tensor([1 / 3, 1 / 3, 0.0, 1 / 3])  # as the denoiser masks it
    tilt = {"nodes": torch.zeros(500, 3, 4)}
    tilt["nodes"][..., 2] = 50.0
    out = diffusion.step(state, x0, 10, 0, torch.Generator().manual_seed(1), tilt)["nodes"]
    assert (out[:, 1:] == 2).all(), "an overwhelming tilt picks its class wherever it is possible"
    assert not (out[:, 0] == 2).any(), "a class the step gives no mass stays unreachable"


def test_budgeted_presence_draws_the_bernoullis_conditioned_on_the_cap():
    p = torch.tensor([0.9, 0.6, 0.3, 0.8])
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.bool)
    weight = torch.where(patterns, p, 1 - p).prod(1) * (patterns.sum(1) <= 2)
    expected = weight / weight.sum()
    drawn = budgeted_presence(p.expand(40_000, 4), 2, torch.Generator().manual_seed(0))
    assert drawn.sum(1).max() <= 2
    index = (drawn.long() * torch.tensor([8, 4, 2, 1])).sum(1)
    seen = torch.bincount(index, minlength=16).double() / len(index)
    order = (patterns.long() * torch.tensor([8, 4, 2, 1])).sum(1)
    assert_close(seen[order], expected.double(), atol=0.01)


def test_budgeted_presence_without_a_binding_cap_keeps_each_probability():
    p = torch.tensor([[0.2, 0.7, 0.5]]).expand(20_000, 3)
    drawn = budgeted_presence(p, 3, torch.Generator().manual_seed(0))
    assert_close(drawn.double().mean(0), p[0].double(), atol=0.015)


def test_the_last_step_keeps_a_capped_space_within_its_edge_budget():
    diffusion = CategoricalDiffusion(7, 4, 2, T=10)
    state = diffusion.prior(300, torch.Generator().manual_seed(0))
    x0 = {"nodes": torch.full((300, 7, 4), 0.25), "edges": torch.zeros(300, 7, 7, 2)}
    x0["edges"][..., 0] = 0.1  # every pair an edge with probability 0.9
    x0["edges"][..., 1] = 0.9
    x0["edges"][:, ~torch.ones(7, 7, dtype=torch.bool).triu(1)] = torch.tensor([1.0, 0.0])  # as the denoiser masks it
    g = torch.Generator().manual_seed(1)
    free = diffusion.step(state, x0, 1, 0, g)["edges"]
    capped = diffusion.step(state, x0, 1, 0, g, max_edges=9)["edges"]
    assert free.sum((1, 2)).min() > 9
    assert capped.sum((1, 2)).max() <= 9 and capped.sum((1, 2)).float().mean() > 8.5, "full up to the cap"
    assert (capped.tril() == 0).all(), "the lower triangle stays empty"
