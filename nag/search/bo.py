"""Bayesian optimisation whose acquisition is maximised by guided generation (DiffusionNAG §BO).

Each round fits an ensemble to every architecture queried so far (the surrogate: ensemble
mean and spread; graph-network predictors, or bootstrap ridge models of the op one-hots
that refit in milliseconds), then proposes candidates that maximise the acquisition (UCB or
EI), and queries the best ``batch_size`` of them. Proposals come from:

- a pool: every unqueried benchmarked architecture, or, where the space has no table,
  ``pool_size`` random ones (within the constraints) drawn once per run;
- a generator: samples guided by the acquisition's gradient (score diffusion) or asked for
  ``conditions`` (a conditional generator, e.g. a latency and FLOPs at the search's budget),
  replacing the random or mutation proposals of classic BO-NAS; its samples are also the
  first ``num_init`` queries, where the other rows query random architectures;
- ``optimizer="evolution"``: either of those seeds a population that mutation and crossover
  evolve on the acquisition (no query spent) before the best are queried — how BO-NAS
  maximises an acquisition where no pool can hold the good architectures.

Rows of a benchmark that share the surrogate differ only in how candidates are proposed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from nag.datamodules.architecture import space_spec
from nag.diffusion.guidance import GuidanceTerm, Schedule
from nag.errors import ConfigError
from nag.generation import Generator, load_generator
from nag.lightning_modules.in_loop import in_loop_trainer
from nag.lightning_modules.predictor import PredictorModule
from nag.search.acquisition_evolution import evolve
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream, distinct_new
from nag.search.proposals import (
    CandidatePool,
    ProposalStats,
    propose,
    score_archs,
    top_k,
)
from nag.search.ridge_ensemble import RidgeEnsemble
from nag.search.strategy import SearchStrategy

_SDE_KEYS = ("sde", "sigma_min", "sigma_max", "beta_min", "beta_max", "eps")


class _DictBatches(TensorDataset):
    """Queried archs as the dict batches PredictorModule trains on."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, adj, mask, y = super().__getitem__(i)
        return {"x": x, "adj": adj, "mask": mask, "y": y}


class PredictorEnsemble:
    """Graph-network predictors as one ensemble: ``[E, B]`` predictions, as :class:`RidgeEnsemble` gives."""

    def __init__(self, members: list[PredictorModule]) -> None:
        self.members = members

    def predict_state(self, state: dict[str, torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.predict_state(state, t)[:, 0] for m in self.members])

    def predict_graphs(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.predict_graphs(x, adj, mask)[:, 0] for m in self.members])


class Surrogate:
    """A fitted ensemble and the acquisition over it, on noisy states (guidance) or clean
    graphs (ranking); scores are in units normalised over the queried values."""

    def __init__(
        self, ensemble: PredictorEnsemble | RidgeEnsemble, best_z: float, acquisition: str, kappa: float
    ) -> None:
        self.ensemble, self.best_z, self.acquisition, self.kappa = ensemble, best_z, acquisition, kappa

    def on_state(self, state: dict[str, torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        return self.acquire(self.ensemble.predict_state(state, t))

    def on_graphs(self, x: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.acquire(self.ensemble.predict_graphs(x, adj, mask))

    def acquire(self, preds: torch.Tensor) -> torch.Tensor:
        """UCB or expected improvement from ensemble predictions ``[E, B]``."""
        mu, sd = preds.mean(0), preds.std(0).clamp_min(1e-6)
        if self.acquisition == "ucb":
            return mu + self.kappa * sd
        z = (mu - self.best_z) / sd
        normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
        return (mu - self.best_z) * normal.cdf(z) + sd * normal.log_prob(z).exp()


class BayesianOptimization(SearchStrategy):
    """Deep-ensemble BO; ``generator_ckpt`` switches proposals to acquisition-guided samples."""

    name = "bo"

    def __init__(
        self,
        generator_ckpt: str | None = None,
        num_init: int = 10,
        batch_size: int = 10,
        ensemble_size: int = 5,
        acquisition: Literal["ucb", "ei"] = "ucb",
        kappa: float = 1.0,
        train_steps: int = 200,
        hidden: int = 64,
        num_layers: int = 3,
        lr: float = 3e-3,
        num_samples: int = 1000,
        steps: int = 20,
        guide_scale: float = 1.0,
        guide_schedule: Schedule = "constant",
        surrogate: Literal["ensemble", "ridge"] = "ensemble",
        optimizer: Literal["pool", "evolution"] = "pool",
        pool_size: int = 10000,
        population: int = 100,
        generations: int = 20,
        conditions: dict[str, float] | None = None,
        candidates: Sequence[Any] | None = None,
        device: str = "cpu",
    ) -> None:
        if acquisition not in ("ucb", "ei"):
            raise ConfigError(f"strategy.init_args.acquisition={acquisition!r}; expected 'ucb' or 'ei'")
        if surrogate not in ("ensemble", "ridge"):
            raise ConfigError(f"strategy.init_args.surrogate={surrogate!r}; expected 'ensemble' or 'ridge'")
        if optimizer not in ("pool", "evolution"):
            raise ConfigError(f"strategy.init_args.optimizer={optimizer!r}; expected 'pool' or 'evolution'")
        if num_init < 2 or batch_size < 1 or ensemble_size < 2:
            raise ConfigError("strategy.init_args: BO needs num_init >= 2, batch_size >= 1 and ensemble_size >= 2")
        if min(pool_size, population, generations) < 1:
            raise ConfigError("strategy.init_args: pool_size, population and generations must be at least 1")
        self.generator_ckpt, self.num_init, self.batch_size = generator_ckpt, num_init, batch_size
        self.ensemble_size, self.acquisition, self.kappa = ensemble_size, acquisition, kappa
        self.train_steps, self.hidden, self.num_layers, self.lr = train_steps, hidden, num_layers, lr
        self.num_samples, self.steps = num_samples, steps
        self.guide_scale, self.guide_schedule, self.device = guide_scale, guide_schedule, torch.device(device)
        self.surrogate, self.optimizer, self.pool_size = surrogate, optimizer, pool_size
        self.population, self.generations = population, generations
        self.conditions, self.candidates = conditions, candidates
        self.name = ("bo+generator" if generator_ckpt else "bo") + ("+evolution" if optimizer == "evolution" else "")
        self.stats = ProposalStats() if generator_ckpt else None
        self._generator: Generator | None = None

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        generator = self._load_generator(oracle)
        goal = oracle.target(budget)
        stream = candidate_stream(oracle, rng)
        first = self._generate(generator, oracle, [], seed * 1000 - 1) if generator is not None else []
        oracle.query_batch(distinct_new(oracle, itertools.chain(first, stream), min(goal, self.num_init)))
        rounds, pool = 0, None
        while oracle.num_queries < goal:
            surrogate = self._fit_surrogate(oracle, generator, seed * 1000 + rounds)
            need = min(self.batch_size, goal - oracle.num_queries)
            if generator is None:
                pool = pool or CandidatePool(oracle, self._random_pool(oracle, seed))
                index = pool.available(oracle)
                ranked = top_k(pool.score(index, surrogate.on_graphs, self.device).numpy(), max(need, self.population))
                proposals = [pool.archs[i] for i in index[ranked]]
            else:
                term = GuidanceTerm(surrogate.on_state, self.guide_scale, self.guide_schedule, self.acquisition)
                proposals = self._generate(generator, oracle, [term], seed * 1000 + rounds)
                proposals += [a for a, _ in zip(stream, range(need - len(proposals)))]  # generation fell short
            if self.optimizer == "evolution":
                queried = [a for a, _ in sorted(oracle.history, key=lambda h: -oracle.score(h[1]))]
                proposals = evolve(
                    oracle,
                    functools.partial(score_archs, oracle.space, scorer=surrogate.on_graphs, device=self.device),
                    [*queried[: self.population // 2], *proposals],
                    rng,
                    self.population,
                    self.generations,
                )
            scores = score_archs(oracle.space, proposals, surrogate.on_graphs, self.device)
            picks = [proposals[i] for i in top_k(scores, need)]
            if not picks:
                break
            oracle.query_batch(picks)
            rounds += 1
        return SearchResult.from_oracle(self.name, seed, oracle)

    def _generate(self, generator: Generator, oracle: QueryOracle[Any], terms: list[GuidanceTerm], seed: int) -> list:
        """Usable samples of ``generator`` (guided by ``terms``, asked for the ``conditions``)."""
        return propose(generator, oracle, terms, self.num_samples, self.steps, seed, self.stats, self.conditions)

    def _random_pool(self, oracle: QueryOracle[Any], seed: int) -> Sequence[Any] | None:
        """The ``candidates`` given, else ``pool_size`` random ones where the benchmark has no
        table to rank (None: the table)."""
        if self.candidates is not None or oracle.tabular:
            return self.candidates
        stream = candidate_stream(oracle, np.random.default_rng([seed, 1]))
        return [a for a, _ in zip(stream, range(self.pool_size))]

    def _load_generator(self, oracle: QueryOracle[Any]) -> Generator | None:
        """Loaded once per strategy (seeds reuse it), checked against the oracle's space."""
        if self.generator_ckpt and self._generator is None:
            self._generator = load_generator(
                self.generator_ckpt, oracle.space, self.device, "strategy.init_args.generator_ckpt"
            )
        return self._generator

    def _fit_surrogate(self, oracle: QueryOracle[Any], generator: Generator | None, seed: int) -> Surrogate:
        """Members differ in initialisation and data order; noise-aware on the generator's SDE
        when there is one, so the acquisition's gradient is meaningful along sampling."""
        archs = [a for a, _ in oracle.history]
        y = np.array([oracle.score(v) for _, v in oracle.history], dtype=np.float64)
        finite = np.isfinite(y)
        mean, std = float(y[finite].mean()), float(y[finite].std()) or 1.0
        y = np.where(finite, (y - mean) / std, -3.0)
        x, adj, mask = oracle.space.encode_batch(archs)
        if self.surrogate == "ridge":
            ridge = RidgeEnsemble(x, mask, y, self.ensemble_size, seed=seed)
            return Surrogate(ridge, float(y.max()), self.acquisition, self.kappa)
        data = _DictBatches(x, adj, mask, torch.tensor(y, dtype=torch.float32).unsqueeze(-1))
        spec = {
            **space_spec(oracle.space),
            "targets": ["objective"],
            "target_stats": {"objective": {"mean": 0.0, "std": 1.0}},
        }
        guided = generator is not None and generator.supports_guidance
        sde = {k: generator.model.hparams[k] for k in _SDE_KEYS} if guided else {}
        members = []
        for m in range(self.ensemble_size):
            torch.manual_seed(seed * 100 + m)
            member = PredictorModule(
                spec,
                hidden=self.hidden,
                num_layers=self.num_layers,
                lr=self.lr,
                rank_weight=0.5,
                noise_aware=guided,
                **sde,
            )
            # one epoch of train_steps batches drawn with replacement: Lightning's per-epoch
            # overhead would otherwise dominate on a few dozen points
            sampler = RandomSampler(
                data,
                replacement=True,
                num_samples=self.train_steps * 32,
                generator=torch.Generator().manual_seed(seed + m),
            )
            loader = DataLoader(data, batch_size=32, sampler=sampler)
            with in_loop_trainer(accelerator=self.device.type) as trainer:
                trainer.fit(member, train_dataloaders=loader)
            members.append(member.to(self.device).eval())
        return Surrogate(PredictorEnsemble(members), float(y.max()), self.acquisition, self.kappa)

    def __repr__(self) -> str:
        return (
            f"BayesianOptimization(generator_ckpt={self.generator_ckpt!r}, acquisition={self.acquisition!r}, "
            f"num_init={self.num_init}, batch_size={self.batch_size}, ensemble_size={self.ensemble_size})"
        )
