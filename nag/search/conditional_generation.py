"""Conditional generation as search (DiNAS's scenario), with every label counted.

DiNAS trains a classifier-free-guidance discrete diffusion model on (architecture, accuracy)
pairs and asks it for the top accuracy. Run as a search, those pairs are queries: this loop
starts from ``num_init`` random queries and then, each round, fits (or fine-tunes) the model
on everything queried on the target task so far, samples with the condition set at the best
value found (optionally ``condition_margin`` training standard deviations beyond it), and
queries the ``batch_size`` best distinct *new* proposals (one per space key, never one
already queried). The model's training labels come from the oracle and nowhere else, so the
query count is everything the task cost, and no architecture the model was trained on can be
a new query: whatever the search reaches beyond its random start, generation proposed.

The model may start from an *unconditionally* pre-trained checkpoint (``init_ckpt``: a
:class:`~nag.lightning_modules.discrete_diffusion.DiscreteDiffusionModule` fitted on the
space's architectures with no conditions; architectures cost no labels). Training is a plain
loop over the module's own ``loss`` with its own optimiser and warm-up, so a 100-query search
with the default tiny model (dim 32, one layer) takes 15-30 s on NB201 on one CPU thread.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from nag.datamodules.architecture import space_spec
from nag.errors import ConfigError
from nag.generation import Conditioning, GenerationRequest, ModelGenerator, Sampling, generate, load_generator
from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
from nag.lightning_modules.in_loop import in_loop_fabric
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.proposals import ProposalStats
from nag.search.strategy import SearchStrategy
from nag.spaces.base import Arch

#: Hyper-parameters that shape the network; taken from ``init_ckpt`` when there is one.
ARCHITECTURE_KEYS = ("T", "dim", "edge_dim", "layers", "heads", "dropout", "edge_weight")
#: Candidates whose per-position class frequencies set a from-scratch model's marginals.
MARGINAL_SAMPLE = 5000
#: Seed offset between the draws of one round.
DRAW_STRIDE = 1_000_003

Source = Literal["init", "generated", "random"]


@dataclass
class RunStats:
    """What one run's generation yielded, and where each query came from.

    ``sampled``: samples drawn over all rounds; ``raw_valid``: valid as sampled;
    ``valid``: valid after the space's projection; ``in_table``: valid and benchmarked;
    ``new``: in the table and not queried when sampled, nor any cell with its space key
    (an isomorph); ``distinct_new``: of those, distinct space keys (what a round could
    choose from). ``sources[i]`` says whether query ``i + 1``
    was a random start (``init``), a generated proposal, or a random fill-in because
    generation fell short (``random``)."""

    seed: int
    rounds: int = 0
    sampled: int = 0
    raw_valid: int = 0
    valid: int = 0
    in_table: int = 0
    new: int = 0
    distinct_new: int = 0
    sources: list[str] = field(default_factory=list)
    train_seconds: float = 0.0
    sample_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def generated_queries(self) -> int:
        return self.sources.count("generated")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "generated_queries": self.generated_queries}


class ConditionalGenerationSearch(SearchStrategy):
    """Fit a CFG discrete diffusion model on the queries, generate at the best value, repeat.

    Args:
        init_ckpt: an unconditional ``DiscreteDiffusionModule`` checkpoint on the oracle's
            space to start from (its network shape is used; conditional checkpoints are
            refused: their labels would be uncounted). None: a fresh model of ``dim``,
            ``layers``, ... whose marginals are the candidates' class frequencies (no labels).
        num_init: random queries before the first model.
        batch_size: queries per round.
        num_samples: samples per round.
        steps: sampling steps (exact step skipping of the T-step process).
        guidance_scale: classifier-free guidance weight ``w`` (default the generator's own).
        condition_margin: ask for the best value found plus this many standard deviations
            of the queried values (in the metric's better direction); above 0 the condition
            lies outside the training range and is asked for with ``extrapolate``.
        rank: order of a round's distinct new proposals: ``frequency`` (most often sampled
            first: the mode of ``p(G | c)``, ties in sampling order) or ``order`` (sampling order).
        max_draws: rounds of ``num_samples`` samples at most while fewer than ``batch_size``
            distinct new cells turned up; then random unqueried cells fill the batch.
        train_steps: optimiser steps of the first fit.
        finetune_steps: optimiser steps of each later round.
        warm_start: later rounds continue from the previous round's weights (else each round
            starts again from ``init_ckpt`` or from scratch, with ``train_steps``).
        train_batch: architectures per optimiser step (drawn with replacement).
        lr, cond_drop, warmup_steps, ema_decay: the module's training settings; the EMA is
            restarted from the current weights each round, so its warm-up applies per round.
        grad_clip: gradient-norm clip (as the configs' ``gradient_clip_val``).
        dim, edge_dim, layers, heads, T, dropout, edge_weight: network of a fresh model.
        device: where the model trains and samples.
    """

    name = "conditional-generation"

    def __init__(
        self,
        init_ckpt: str | None = None,
        num_init: int = 10,
        batch_size: int = 10,
        num_samples: int = 500,
        steps: int = 20,
        guidance_scale: float | None = None,
        condition_margin: float = 0.0,
        rank: Literal["frequency", "order"] = "frequency",
        max_draws: int = 3,
        train_steps: int = 300,
        finetune_steps: int = 100,
        warm_start: bool = True,
        train_batch: int = 64,
        lr: float = 2e-3,
        cond_drop: float = 0.1,
        warmup_steps: int = 20,
        ema_decay: float = 0.99,
        grad_clip: float = 1.0,
        dim: int = 32,
        edge_dim: int = 8,
        layers: int = 1,
        heads: int = 2,
        T: int = 500,
        dropout: float = 0.0,
        edge_weight: float = 5.0,
        device: str = "cpu",
    ) -> None:
        if num_init < 2 or batch_size < 1 or num_samples < 1 or steps < 1:
            raise ConfigError(
                "strategy.init_args: conditional generation needs num_init >= 2 (a condition needs a "
                "spread of values), batch_size, num_samples and steps >= 1"
            )
        if train_steps < 1 or finetune_steps < 0 or train_batch < 1:
            raise ConfigError("strategy.init_args: train_steps and train_batch must be >= 1, finetune_steps >= 0")
        if max_draws < 1:
            raise ConfigError(f"strategy.init_args.max_draws={max_draws}: must be >= 1")
        if rank not in ("frequency", "order"):
            raise ConfigError(f"strategy.init_args.rank={rank!r}; expected 'frequency' or 'order'")
        if condition_margin < 0:
            raise ConfigError(f"strategy.init_args.condition_margin={condition_margin}: must be >= 0")
        self.init_ckpt, self.num_init, self.batch_size = init_ckpt, num_init, batch_size
        self.num_samples, self.steps, self.guidance_scale = num_samples, steps, guidance_scale
        self.condition_margin, self.rank, self.max_draws = condition_margin, rank, max_draws
        self.train_steps, self.finetune_steps, self.warm_start = train_steps, finetune_steps, warm_start
        self.train_batch, self.grad_clip = train_batch, grad_clip
        self.training = {"lr": lr, "cond_drop": cond_drop, "warmup_steps": warmup_steps, "ema_decay": ema_decay}
        self.network = {
            "T": T,
            "dim": dim,
            "edge_dim": edge_dim,
            "layers": layers,
            "heads": heads,
            "dropout": dropout,
            "edge_weight": edge_weight,
        }
        self.device = torch.device(device)
        self.name = "conditional-generation+init" if init_ckpt else "conditional-generation"
        #: Over every run, like the other generative strategies (usable = distinct new).
        self.stats = ProposalStats()
        #: Per run, by seed.
        self.runs: dict[int, RunStats] = {}
        self._init: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None
        self._marginals: dict[str, dict[str, torch.Tensor]] = {}

    # --- the loop ----------------------------------------------------------------------
    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        start = time.perf_counter()
        stats = self.runs[seed] = RunStats(seed)
        init = self._load_init(oracle)
        goal = oracle.target(budget)
        rng = np.random.default_rng(seed)
        stream = candidate_stream(oracle, rng)
        for _, arch in zip(range(min(goal, oracle.num_queries + self.num_init) - oracle.num_queries), stream):
            self._query(oracle, arch, "init", stats)
        previous: dict[str, torch.Tensor] | None = None
        while oracle.num_queries < goal:
            paid = oracle.num_queries
            need = min(self.batch_size, goal - paid)
            history = [(a, v) for a, v in oracle.history if np.isfinite(oracle.score(v))]
            picks: list[Arch] = []
            if len({v for _, v in history}) >= 2:  # a condition needs values to tell apart
                tick = time.perf_counter()
                model = self._fit(oracle, history, init, previous, seed * 1000 + stats.rounds)
                stats.train_seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                picks = self._propose(model, oracle, history, need, seed * 1000 + stats.rounds, stats)
                stats.sample_seconds += time.perf_counter() - tick
                previous = {k: v for k, v in model.state_dict().items() if k.startswith("net.")}
                stats.rounds += 1
            for arch in picks:
                self._query(oracle, arch, "generated", stats)
            for _, arch in zip(range(need - len(picks)), stream):  # generation fell short
                self._query(oracle, arch, "random", stats)
            if oracle.num_queries == paid:  # nothing generated and no candidate left
                break
        self.stats.add(stats.sampled, stats.valid, stats.in_table, stats.distinct_new)
        stats.seconds = time.perf_counter() - start
        return SearchResult.from_oracle(self.name, seed, oracle)

    @staticmethod
    def _query(oracle: QueryOracle[Any], arch: Arch, source: str, stats: RunStats) -> None:
        paid = oracle.num_queries
        oracle.query(arch)
        if oracle.num_queries > paid:
            stats.sources.append(source)

    # --- the model -----------------------------------------------------------------------
    def _fit(
        self,
        oracle: QueryOracle[Any],
        history: list[tuple[Arch, float]],
        init: tuple[dict[str, Any], dict[str, torch.Tensor]] | None,
        previous: dict[str, torch.Tensor] | None,
        seed: int,
    ) -> DiscreteDiffusionModule:
        """A module conditioned on the metric, trained on the queried ``history``.

        Its ``data_spec`` holds this round's statistics of the queried values (what
        ``normalize_conditions`` reads when sampling), its condition encoder's quantiles
        are fitted on them, and its weights start from the previous round (``warm_start``),
        else from ``init_ckpt``'s EMA weights, else from a seeded initialisation."""
        metric = oracle.metric
        raw = np.array([v for _, v in history], dtype=np.float64)
        mean, std = float(raw.mean()), float(raw.std()) or 1.0
        spec = {
            **(init[0]["data_spec"] if init else space_spec(oracle.space)),
            "targets": [metric],
            "target_stats": {metric: {"mean": mean, "std": std, "min": float(raw.min()), "max": float(raw.max())}},
        }
        network = {k: init[0][k] for k in ARCHITECTURE_KEYS} if init else self.network
        torch.manual_seed(seed)
        model = DiscreteDiffusionModule(spec, conditions=[metric], **network, **self.training).to(self.device)
        warm = previous is not None and self.warm_start
        start = previous if warm else (init[1] if init else None)
        if start is not None:  # the condition encoder of an unconditional start is new; EMA set below
            loaded = model.load_state_dict({k: v.to(self.device) for k, v in start.items()}, strict=False)
            if loaded.unexpected_keys:
                raise ConfigError(f"{self.name}: start weights do not fit the model ({loaded.unexpected_keys[:3]})")
        if init is not None:  # the pre-trained per-position marginals (of the space's architectures)
            model.diffusion.load_state_dict(
                {k[len("diffusion.") :]: v for k, v in init[1].items() if k.startswith("diffusion.")}
            )
        else:
            model.diffusion.set_marginals({k: v.to(self.device) for k, v in self._space_marginals(oracle).items()})
        model.init_ema()  # the average starts from the weights this round starts from
        x, adj, mask = oracle.space.encode_batch([a for a, _ in history])
        y = torch.tensor((raw - mean) / std, dtype=torch.float32).unsqueeze(-1)
        data = {k: v.to(self.device) for k, v in {"x": x, "adj": adj, "mask": mask, "y": y}.items()}
        values = model.condition_values(data)
        for net in (model.net, model.ema.module):
            net.conditions.fit(values)
        self._train(model, data, self.finetune_steps if warm else self.train_steps, seed)
        return model.eval()

    def _train(self, model: DiscreteDiffusionModule, data: dict[str, torch.Tensor], steps: int, seed: int) -> None:
        """``steps`` optimiser steps on batches drawn with replacement: the module's loss, its
        optimiser and warm-up schedule, the EMA after each step (what ``nag fit`` does, without
        Lightning's per-epoch overhead on a few dozen points)."""
        configured = model.configure_optimizers()
        scheduler = configured["lr_scheduler"]["scheduler"]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        n = data["x"].shape[0]
        model.train()
        with in_loop_fabric(self.device.type) as fabric:
            net, optimizer = fabric.setup(model.net, configured["optimizer"], move_to_device=False)
            for _ in range(steps):
                index = torch.randint(n, (self.train_batch,), generator=generator, device=self.device)
                loss, _ = model.loss({k: v[index] for k, v in data.items()}, net, generator)
                if not torch.isfinite(loss):
                    raise ConfigError(f"{self.name}: the diffusion loss became {loss.item()}; lower strategy lr")
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.net.parameters(), self.grad_clip)
                optimizer.step()
                scheduler.step()
                model.ema.update_parameters(model.net)

    def _propose(
        self,
        model: DiscreteDiffusionModule,
        oracle: QueryOracle[Any],
        history: list[tuple[Arch, float]],
        need: int,
        seed: int,
        stats: RunStats,
    ) -> list[Arch]:
        """Up to ``need`` distinct benchmarked unqueried samples at the top condition, drawing
        ``num_samples`` more (another seed) while fewer than ``need`` turned up, at most
        ``max_draws`` times: a model fitted on a few dozen cells mostly samples those again."""
        values = np.array([v for _, v in history], dtype=np.float64)
        best = float(values.max() if oracle.sign > 0 else values.min())
        target = best + oracle.sign * self.condition_margin * (float(values.std()) or 1.0)
        generator = ModelGenerator(model, oracle.space, batch_size=self.num_samples)
        asked = Conditioning({oracle.metric: target}, self.guidance_scale, extrapolate=self.condition_margin > 0)
        counts: Counter[str] = Counter()
        first: dict[str, Arch] = {}
        queried = {oracle.space.key(a) for a, _ in oracle.history}
        for draw in range(self.max_draws):
            if len(first) >= need:
                break
            sampling = Sampling(self.num_samples, seed + DRAW_STRIDE * draw, steps=self.steps)
            result = generate(generator, GenerationRequest(sampling, asked))
            stats.sampled += len(result)
            stats.raw_valid += sum(result.raw_valid)
            for arch in result.archs:
                if arch is None:
                    continue
                stats.valid += 1
                if not oracle.contains(arch):
                    continue
                stats.in_table += 1
                key = oracle.space.key(arch)
                if key in queried or oracle.queried(arch):  # an isomorph of a queried cell is not new
                    continue
                stats.new += 1
                counts[key] += 1
                first.setdefault(key, arch)
        stats.distinct_new += len(first)
        keys = list(first)  # sampling order
        if self.rank == "frequency":
            keys.sort(key=lambda k: -counts[k])  # stable: ties keep sampling order
        return [first[k] for k in keys[:need]]

    def _space_marginals(self, oracle: QueryOracle[Any]) -> dict[str, torch.Tensor]:
        """Clean states of up to :data:`MARGINAL_SAMPLE` candidates (a fixed draw, no labels),
        once per space: the per-position prior of a from-scratch model."""
        key = repr(oracle.space.identity)
        if key not in self._marginals:
            pool = oracle.candidates()
            if len(pool) > MARGINAL_SAMPLE:
                pool = [pool[i] for i in np.random.default_rng(0).choice(len(pool), MARGINAL_SAMPLE, replace=False)]
            x, adj, mask = oracle.space.encode_batch(pool)
            probe = DiscreteDiffusionModule(space_spec(oracle.space), T=1, dim=8, edge_dim=4, layers=1, heads=1)
            self._marginals[key] = probe.clean_state({"x": x, "adj": adj, "mask": mask})
        return self._marginals[key]

    def _load_init(self, oracle: QueryOracle[Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """``init_ckpt``'s hyper-parameters and start weights (its EMA network as ``net.*``, its
        marginals), checked: the oracle's space, a discrete diffusion model, no conditions."""
        if not self.init_ckpt:
            return None
        if self._init is None:
            flag = "strategy.init_args.init_ckpt"
            model = load_generator(self.init_ckpt, oracle.space, "cpu", flag).model
            if not isinstance(model, DiscreteDiffusionModule):
                raise ConfigError(
                    f"{flag} {self.init_ckpt!r} holds a {type(model).__name__}; conditional generation "
                    "fine-tunes a DiscreteDiffusionModule (configs/*/discrete_diffusion.yaml)"
                )
            if model.condition_names:
                raise ConfigError(
                    f"{flag} {self.init_ckpt!r} was trained with conditions {list(model.condition_names)}: its "
                    "labels would be uncounted queries; pre-train with model.init_args.conditions=[] "
                    "and regressor_scale=0"
                )
            state = {f"net.{k}": v for k, v in model.ema.module.state_dict().items() if not k.startswith("conditions.")}
            state |= {f"diffusion.{k}": v for k, v in model.diffusion.state_dict().items()}
            self._init = (dict(model.hparams), state)
        return self._init

    def __repr__(self) -> str:
        return (
            f"ConditionalGenerationSearch(init_ckpt={self.init_ckpt!r}, num_init={self.num_init}, "
            f"batch_size={self.batch_size}, num_samples={self.num_samples}, steps={self.steps}, "
            f"guidance_scale={self.guidance_scale}, condition_margin={self.condition_margin}, rank={self.rank!r}, "
            f"max_draws={self.max_draws}, "
            f"train_steps={self.train_steps}, finetune_steps={self.finetune_steps}, warm_start={self.warm_start}, "
            f"network={self.network}, training={self.training})"
        )
