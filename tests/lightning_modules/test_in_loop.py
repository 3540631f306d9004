"""The in-loop trainer: quiet, seeded when asked, and the caller's random stream left alone."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from nag.lightning_modules.in_loop import in_loop_fabric, in_loop_trainer


class Line(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(seed: int | None) -> tuple[torch.Tensor, bool]:
    """The fitted weights, and whether the global RNG is as it was before the fit."""
    torch.manual_seed(0)
    model = Line()
    data = TensorDataset(torch.randn(32, 2), torch.randn(32, 1))
    before = torch.random.get_rng_state()
    with in_loop_trainer(max_epochs=2, seed=seed) as trainer:
        trainer.fit(model, DataLoader(data, batch_size=8))
    return torch.cat([p.detach().flatten() for p in model.parameters()]), torch.equal(
        before, torch.random.get_rng_state()
    )


def test_a_seeded_fit_is_quiet_reproducible_and_leaves_the_callers_stream_alone(caplog) -> None:
    with caplog.at_level(logging.INFO):
        weights, untouched = fit(seed=3)
    assert not [r for r in caplog.records if "GPU available" in r.getMessage() or "Tip" in r.getMessage()]
    assert untouched
    assert torch.equal(weights, fit(seed=3)[0]) and not torch.equal(weights, fit(seed=4)[0])


def test_without_a_seed_the_fit_continues_the_callers_stream() -> None:
    weights, untouched = fit(seed=None)
    assert not untouched and torch.equal(weights, fit(seed=None)[0])


def test_fabric_runs_the_callers_loop_as_written() -> None:
    def loop(fabric: object | None) -> torch.Tensor:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        opt = torch.optim.AdamW(net.parameters(), lr=0.1)
        model = net
        if fabric is not None:
            model, opt = fabric.setup(net, opt)
        x = torch.randn(16, 3)
        for _ in range(5):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            fabric.backward(loss) if fabric is not None else loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    with in_loop_fabric() as fabric:
        assert torch.equal(loop(fabric), loop(None))
