"""Zero-cost proxies of an untrained network, as NAS-Bench-Suite-Zero (NASLib) defines them.

Every proxy is computed on a deep copy of the module (the caller's weights, gradients and BN
statistics are untouched), in train mode so BN uses batch statistics, with cross-entropy as
the loss; only ``nn.Conv2d``/``nn.Linear`` weights are scored. Definitions:

- ``synflow``: BN removed, every parameter made positive, float64, one all-ones input;
  ``sum |w * d(sum logits)/dw|``, reported as its natural log (0 stays 0), as NASLib does.
- ``snip``: ``sum |w * dL/dw|``.  ``grad_norm``: sum over layers of ``||dL/dW||_2``.
- ``fisher``: per output channel ``0.5 * mean_n (sum_hw a * dL/da)^2`` of each layer's output
  ``a``, times the layer's fan-in (NASLib broadcasts each channel value over its weights).
- ``jacov``: ``-sum(log(v + k) + 1 / (v + k))``, ``k = 1e-5``, over the eigenvalues ``v`` of
  the correlation matrix of the per-image input gradients of ``sum logits``.
- ``nwot``: ``log|det K|``, ``K`` counting agreeing signs of every ReLU-family input over each
  pair of images (NASWOT, second version).
- ``params``, ``flops``: millions, in the tables' convention (:mod:`nag.nn.flops`).

``snip``, ``grad_norm``, ``fisher``, ``jacov`` and ``nwot`` share one forward pass (NASLib runs
one per proxy on identical copies, which gives the same numbers). Undefined values (``jacov``
when the output ignores the input) are NaN; a singular ``K`` gives ``nwot = -inf``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nag.errors import UnknownMetric
from nag.nn.flops import count_flops, count_params

PROXIES: tuple[str, ...] = ("synflow", "snip", "grad_norm", "fisher", "jacov", "nwot", "params", "flops")
_BATCH_PROXIES = ("snip", "grad_norm", "fisher", "jacov", "nwot")
_SCORED = (nn.Conv2d, nn.Linear)
_RELUS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU)
_JACOV_K = 1e-5


def _scored_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, _SCORED)]


def _remove_batchnorm(net: nn.Module) -> None:
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())


def synflow(module: nn.Module, input_shape: Sequence[int]) -> float:
    """Log synaptic flow of ``module`` for one all-ones input of ``input_shape`` (no batch dimension)."""
    net = copy.deepcopy(module).double().train()
    _remove_batchnorm(net)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.abs_()
    device = next(net.parameters()).device
    net(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum().backward()
    total = sum(
        float((layer.weight.detach() * layer.weight.grad).abs().sum())
        for layer in _scored_layers(net)
        if layer.weight.grad is not None
    )
    return math.log(total) if total > 0 else 0.0


def _jacov(jacobian: torch.Tensor) -> float:
    rows = jacobian.reshape(jacobian.shape[0], -1).double().cpu().numpy()
    if not np.all(rows.std(axis=1) > 0):
        return math.nan
    eig = np.linalg.eigvalsh(np.corrcoef(rows))
    return float(-np.sum(np.log(eig + _JACOV_K) + 1.0 / (eig + _JACOV_K)))


def _batch_proxies(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, names: set[str]) -> dict[str, float]:
    """The data-dependent proxies in ``names`` from one forward pass and up to two backward passes."""
    net = copy.deepcopy(module).train()
    net.zero_grad(set_to_none=True)
    layers = _scored_layers(net)
    handles = []
    fisher = {layer: torch.zeros(()) for layer in layers}
    loss_backward = False  # fisher reads the loss gradient only, not jacov's

    if "fisher" in names:

        def fisher_hook(layer: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            if not out.requires_grad:
                return
            act = out.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                if loss_backward:
                    per_channel = (act * grad).flatten(2).sum(-1) if act.dim() > 2 else act * grad
                    fisher[layer] = fisher[layer] + per_channel.pow(2).mean(0).mul(0.5).sum().cpu()

            out.register_hook(grad_hook)

        handles += [layer.register_forward_hook(fisher_hook) for layer in layers]

    kernel = torch.zeros((images.shape[0], images.shape[0]), dtype=torch.float64, device=images.device)
    if "nwot" in names:

        def nwot_hook(_module: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
            nonlocal kernel
            codes = (inputs[0].detach().flatten(1) > 0).double()
            kernel = kernel + codes @ codes.T + (1 - codes) @ (1 - codes).T

        handles += [m.register_forward_hook(nwot_hook) for m in net.modules() if isinstance(m, _RELUS)]

    x = images.detach().clone().requires_grad_("jacov" in names)
    try:
        logits = net(x)
    finally:
        for h in handles:
            h.remove()
    values: dict[str, float] = {}
    if "nwot" in names:
        values["nwot"] = float(torch.linalg.slogdet(kernel.cpu())[1])
    if "jacov" in names:
        (jacobian,) = torch.autograd.grad(logits, x, torch.ones_like(logits), retain_graph=True)
        values["jacov"] = _jacov(jacobian)
    if names & {"snip", "grad_norm", "fisher"}:
        loss_backward = True
        F.cross_entropy(logits, labels).backward()
        grads = [(layer.weight, layer.weight.grad) for layer in layers if layer.weight.grad is not None]
        values["snip"] = float(sum((w.detach() * g).abs().sum() for w, g in grads))
        values["grad_norm"] = float(sum(g.norm() for _, g in grads))
        values["fisher"] = float(sum(fisher[layer] * layer.weight[0].numel() for layer in layers))
    return values


def compute_proxies(
    module: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str] = PROXIES,
    seed: int = 0,
) -> dict[str, float]:
    """Zero-cost proxies ``{name: value}`` of ``module`` (whose ``forward`` returns logits) on one
    batch ``images [B, C, H, W]`` with integer ``labels [B]``; the batch sits on the module's
    device. ``seed`` fixes torch's RNG for modules that draw random numbers (dropout), so the
    same module, batch and seed give identical values."""
    names = list(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise UnknownMetric(f"zero-cost proxy {unknown[0]!r} is unknown; expected some of {', '.join(PROXIES)}")
    device = next(module.parameters()).device
    images, labels = images.to(device), labels.to(device)
    cuda = [device] if device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=cuda),
        torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True),
    ):
        torch.manual_seed(seed)
        values: dict[str, float] = {}
        batch = set(names) & set(_BATCH_PROXIES)
        if batch:
            values.update(_batch_proxies(module, images, labels, batch))
        if "synflow" in names:
            torch.manual_seed(seed)
            values["synflow"] = synflow(module, images.shape[1:])
        if "params" in names:
            values["params"] = count_params(module) / 1e6
        if "flops" in names:
            values["flops"] = count_flops(module, images.shape[1:]) / 1e6
    return {n: values[n] for n in names}
