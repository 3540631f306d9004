import math

import numpy as np
import pytest
import torch
from torch import nn

from nag.errors import UnknownMetric
from nag.nn.flops import count_flops, count_params
from nag.spaces import NB201Space
from nag.zc import PROXIES, compute_proxies

pytestmark = pytest.mark.usefixtures("single_thread")

SPACE = NB201Space()
D, H, K, B = 12, 6, 4, 8
CELL = ("nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none", "nor_conv_3x3")


def tiny_nb201(arch=CELL, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return SPACE.to_module(arch, num_classes=K, C=4, N=1)


def batch(seed=0, shape=(3, 16, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((B, *shape), generator=g), torch.randint(0, K, (B,), generator=g)


def linear_model(seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(D, K))


def test_same_seed_gives_identical_values_and_leaves_the_module_alone():
    module = tiny_nb201()
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x, y = batch()
    first = compute_proxies(module, x, y, seed=3)
    assert list(first) == list(PROXIES)
    assert all(math.isfinite(v) for v in first.values())
    assert compute_proxies(module, x, y, seed=3) == first
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert all(p.grad is None for p in module.parameters())


def test_the_seed_drives_random_layers():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(D, H), nn.Dropout(0.5), nn.Linear(H, K))
    x, y = batch(shape=(D,))
    a = compute_proxies(module, x, y, names=["snip"], seed=0)
    assert compute_proxies(module, x, y, names=["snip"], seed=0) == a
    assert compute_proxies(module, x, y, names=["snip"], seed=1) != a


def test_each_proxy_alone_equals_its_value_in_the_shared_pass():
    module, (x, y) = tiny_nb201(), batch()
    together = compute_proxies(module, x, y)
    for name in PROXIES:
        assert compute_proxies(module, x, y, names=[name]) == {name: together[name]}


def test_gradient_proxies_of_a_linear_model_by_hand():
    """Softmax regression: dL/dz = (softmax(z) - onehot) / B, dL/dW = G^T X."""
    module = linear_model()
    x, y = batch(shape=(D,))
    w, b = module[1].weight.detach().double(), module[1].bias.detach().double()
    xd = x.double()
    z = xd @ w.T + b
    g = (torch.softmax(z, 1) - nn.functional.one_hot(y, K)) / B
    grad_w = g.T @ xd
    values = compute_proxies(module, x, y, names=["snip", "grad_norm", "fisher"])
    assert values["snip"] == pytest.approx(float((w * grad_w).abs().sum()), rel=1e-5)
    assert values["grad_norm"] == pytest.approx(float(grad_w.norm()), rel=1e-5)
    fisher = 0.5 * (z * g).pow(2).mean(0).sum() * D  # per output channel, broadcast over D weights
    assert values["fisher"] == pytest.approx(float(fisher), rel=1e-4)


def test_jacov_of_a_linear_model_by_hand():
    """Every image has the same input gradient, so the correlation matrix is all ones:
    eigenvalues B and B-1 zeros."""
    x, y = batch(shape=(D,))
    k = 1e-5
    expected = -(math.log(B + k) + 1 / (B + k) + (B - 1) * (math.log(k) + 1 / k))
    assert compute_proxies(linear_model(), x, y, names=["jacov"])["jacov"] == pytest.approx(expected, rel=1e-6)


def test_nwot_counts_agreeing_relu_signs():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(D, H), nn.ReLU(), nn.Linear(H, K))
    x, y = batch(shape=(D,))
    with torch.no_grad():
        codes = (module[1](x) > 0).double().numpy()
    agree = codes @ codes.T + (1 - codes) @ (1 - codes).T
    expected = np.linalg.slogdet(agree)[1]
    assert compute_proxies(module, x, y, names=["nwot"])["nwot"] == pytest.approx(expected, rel=1e-9)


def test_synflow_removes_batchnorm_and_uses_absolute_weights():
    """With |W|, all-ones input and no BN: R = sum_k |W2| (|W1| 1 + |b1|) + |b2|, so
    synflow = sum |W2| * a + sum |W1| * colsum|W2|; BN in train mode would fail on one image."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(D, H), nn.BatchNorm1d(H), nn.Linear(H, K))
    w1, b1, w2 = (t.detach().double().abs() for t in (module[1].weight, module[1].bias, module[3].weight))
    a = w1.sum(1) + b1
    expected = float((w2 * a).sum() + (w1 * w2.sum(0)[:, None]).sum())
    x, y = batch(shape=(D,))
    assert compute_proxies(module, x, y, names=["synflow"])["synflow"] == pytest.approx(math.log(expected), rel=1e-12)
    with torch.no_grad():
        module[1].weight.neg_()
    assert compute_proxies(module, x, y, names=["synflow"])["synflow"] == pytest.approx(math.log(expected), rel=1e-12)


def test_synflow_ignores_the_data():
    module = tiny_nb201()
    a = compute_proxies(module, *batch(0), names=["synflow"])
    assert compute_proxies(module, *batch(1), names=["synflow"]) == a


def test_a_cell_of_none_ops_passes_no_signal():
    x, y = batch()
    values = compute_proxies(tiny_nb201(("none",) * 6), x, y)
    assert values["synflow"] == values["snip"] == values["grad_norm"] == 0.0
    assert math.isnan(values["jacov"])


def test_params_and_flops_proxies_are_the_counts_in_millions():
    x, y = batch(shape=(D,))
    values = compute_proxies(linear_model(), x, y, names=["flops", "params"])
    assert values == {"flops": D * K / 1e6, "params": (D * K + K) / 1e6}
    module = tiny_nb201()
    x, y = batch()
    values = compute_proxies(module, x, y, names=["params", "flops"])
    assert values == {"params": count_params(module) / 1e6, "flops": count_flops(module, (3, 16, 16)) / 1e6}


def test_unknown_proxy_is_named():
    with pytest.raises(UnknownMetric, match="'zen'"):
        compute_proxies(linear_model(), *batch(shape=(D,)), names=["snip", "zen"])
