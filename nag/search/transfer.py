"""Transferable NAS on an unseen task (DiffusionNAG's first scenario), with query counting.

A meta-predictor meta-trained on other tasks scores architectures for this task from a
context of (architecture, score) pairs measured on it. The search starts with an empty
context (the meta-predictor's "unknown task" prior), proposes candidates by generation
guided by the meta-predictor (or scores the whole pool), queries the best, and feeds
every answer back into the context: each query sharpens the task encoding. Context
archs are queries like any other, so the reported count is everything the task cost.
The context holds at most as many pairs as the meta-predictor was trained with (a random
subset of the queries once there are more): a longer one is input it never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nag.diffusion.guidance import GuidanceTerm, Schedule, check_same_state
from nag.errors import ConfigError
from nag.generation import Generator, load_generator
from nag.io.checkpoints import load_module
from nag.lightning_modules.meta_predictor import MetaPredictorModule
from nag.search.oracle import QueryOracle, SearchResult, candidate_stream
from nag.search.other_tasks import SourceTask, check_sources, checked_sources, source_scores
from nag.search.proposals import (
    CandidatePool,
    ProposalStats,
    propose,
    score_archs,
    top_k,
    unqueried,
)
from nag.search.residual_gp import ResidualGP
from nag.search.strategy import SearchStrategy


class TransferSearch(SearchStrategy):
    """Meta-predictor-ranked search; ``generator_ckpt`` makes proposals guided samples.

    With ``adapt`` the ranking is the posterior mean (``+ adapt_beta`` x std, UCB) of a
    :class:`~nag.search.residual_gp.ResidualGP` over the meta-predictor's scores, fitted
    to what this task's measurements say it got wrong.

    ``sources`` replaces the meta-predictor's zero-shot scores as that prior by the source
    tasks' own labels (the naive ranking of :class:`OtherTasksRanking`, where the table has
    them): measured labels of similar tasks are a better prior than a model of them, and the
    meta-learned embedding still decides which candidates a measurement speaks for.
    """

    name = "transfer"

    def __init__(
        self,
        predictor_ckpt: str,
        generator_ckpt: str | None = None,
        batch_size: int = 1,
        num_samples: int = 1000,
        steps: int = 20,
        guide_scale: float = 1.0,
        guide_schedule: Schedule = "constant",
        regenerate_every: int = 10,
        adapt: bool = True,
        adapt_noise: float = 0.1,
        adapt_beta: float = 0.0,
        sources: Sequence[SourceTask] = (),
        device: str = "cpu",
    ) -> None:
        if sources and generator_ckpt:
            raise ConfigError(
                "strategy.init_args.sources ranks the benchmark's own candidates by their source labels, which "
                "generated architectures may lack; drop sources or generator_ckpt"
            )
        if batch_size < 1 or regenerate_every < 1:
            raise ConfigError("strategy.init_args: batch_size and regenerate_every must be at least 1")
        if adapt_noise <= 0 or adapt_beta < 0:
            raise ConfigError("strategy.init_args: adapt_noise must be > 0 and adapt_beta >= 0")
        self.predictor_ckpt, self.generator_ckpt = predictor_ckpt, generator_ckpt
        self.batch_size, self.num_samples, self.steps = batch_size, num_samples, steps
        self.guide_scale, self.guide_schedule, self.regenerate_every = guide_scale, guide_schedule, regenerate_every
        self.adapt, self.adapt_noise, self.adapt_beta = adapt, adapt_noise, adapt_beta
        self.sources = checked_sources(sources)
        self.device = torch.device(device)
        self.name = "transfer+generator" if generator_ckpt else "transfer+sources" if sources else "transfer"
        self.stats = ProposalStats() if generator_ckpt else None
        self._models: tuple[MetaPredictorModule, Generator | None] | None = None

    def run(self, oracle: QueryOracle[Any], budget: int, seed: int) -> SearchResult:
        meta, generator = self._load(oracle)
        goal = oracle.target(budget)
        rng = np.random.default_rng(seed)
        stream = candidate_stream(oracle, rng)
        pool, proposals = None, []
        since_generation, rounds = self.regenerate_every, 0
        while oracle.num_queries < goal:
            task_vec = self._task_vector(meta, oracle, rng)
            need = min(self.batch_size, goal - oracle.num_queries)
            if generator is None:
                if pool is None:  # embeddings do not depend on the task: computed once per run
                    pool = CandidatePool(oracle)
                    embeddings = pool.score(np.arange(len(pool.archs)), meta.embed_graphs, self.device)
                    gp = ResidualGP(embeddings, self.adapt_noise) if self.adapt else None
                    source = self._source_prior(oracle, pool)
                index = pool.available(oracle)
                scores = self._score(meta, task_vec, embeddings, oracle, gp, source, pool.position)[index]
                picks = [pool.archs[i] for i in index[top_k(scores, need)]]
            else:
                if since_generation >= self.regenerate_every or not unqueried(oracle, proposals):
                    term = GuidanceTerm(
                        lambda s, t, v=task_vec: meta.predict_state(s, t, v),
                        self.guide_scale,
                        self.guide_schedule,
                        "meta-predictor",
                    )
                    proposals = propose(
                        generator, oracle, [term], self.num_samples, self.steps, seed * 1000 + rounds, self.stats
                    )
                    since_generation = 0
                proposals = unqueried(oracle, proposals)
                proposals += [a for a, _ in zip(stream, range(need - len(proposals)))]  # generation fell short
                if not proposals:
                    break
                h = torch.from_numpy(score_archs(oracle.space, proposals, meta.embed_graphs, self.device))
                gp = ResidualGP(h, self.adapt_noise) if self.adapt and len(proposals) > 1 else None
                scores = self._score(meta, task_vec, h, oracle, gp)
                picks = [proposals[i] for i in top_k(scores, need)]
            if not picks:
                break
            for arch in picks:
                oracle.query(arch)
            since_generation += need
            rounds += 1
        return SearchResult.from_oracle(self.name, seed, oracle)

    @torch.no_grad()
    def _score(
        self,
        meta: MetaPredictorModule,
        task_vec: torch.Tensor,
        h: torch.Tensor,
        oracle: QueryOracle[Any],
        gp: ResidualGP | None,
        source: torch.Tensor | None = None,
        position: dict[str, int] | None = None,
    ) -> np.ndarray:
        """Scores (higher is better) of the candidates ``gp`` was built on, with embeddings
        ``h``: the meta-predictor's (or ``source``, a prior per candidate), corrected by ``gp``
        once three measured archs can fit it and the correction predicts each of them, left
        out, better than the prior does (else the prior's order stands). ``position`` (space
        key -> row) finds measured archs among the candidates; without it they are embedded
        again."""
        prior = source if source is not None else meta.score_embeddings(h.to(self.device), task_vec).cpu()
        history = [(a, oracle.score(v)) for a, v in oracle.history if np.isfinite(oracle.score(v))]
        if gp is None or len(history) < 3 or len(h) == 0:
            return prior.numpy()
        if position is not None:
            rows = [position[oracle.space.key(a)] for a, _ in history]
            seen_h, seen_prior = h[rows], prior[rows]
        else:
            seen_h = meta.embed_graphs(*(t.to(self.device) for t in oracle.space.encode_batch([a for a, _ in history])))
            seen_prior = meta.score_embeddings(seen_h, task_vec).cpu()
        seen_y = torch.tensor([v for _, v in history])
        if not gp.corrects(prior, seen_prior, seen_h.cpu(), seen_y):
            return prior.numpy()
        mean, std = gp.posterior(prior, seen_prior, seen_h.cpu(), seen_y)
        return (mean + self.adapt_beta * std).numpy()

    def _source_prior(self, oracle: QueryOracle[Any], pool: CandidatePool) -> torch.Tensor | None:
        """Each pool candidate's mean z-score on the source tasks (those no source measured
        rank with the worst measured), or None without ``sources``."""
        if not self.sources:
            return None
        check_sources(self.sources, oracle)
        z = source_scores(self.sources, pool.archs)
        floor = z[np.isfinite(z)].min() if np.isfinite(z).any() else 0.0
        return torch.from_numpy(np.where(np.isfinite(z), z, floor))

    @torch.no_grad()
    def _task_vector(
        self, meta: MetaPredictorModule, oracle: QueryOracle[Any], rng: np.random.Generator
    ) -> torch.Tensor:
        """``[1, hidden]`` encoding of what was measured so far (empty at the start), at most
        the trained context size of it."""
        history = oracle.history
        cap = meta.hparams.data_spec.get("context_size")
        if cap is not None and len(history) > cap:
            history = [history[i] for i in sorted(rng.choice(len(history), cap, replace=False))]
        if history:
            x, adj, mask = (t.unsqueeze(0).to(self.device) for t in oracle.space.encode_batch([a for a, _ in history]))
        else:
            n, v = oracle.space.max_nodes, oracle.space.num_ops
            x, adj, mask = (torch.zeros(1, 0, n, v), torch.zeros(1, 0, n, n), torch.zeros(1, 0, n, dtype=torch.bool))
        y = torch.tensor(
            [[oracle.score(v) if np.isfinite(oracle.score(v)) else 0.0 for _, v in history]], dtype=torch.float32
        )
        return meta.encode_context(x.to(self.device), adj.to(self.device), mask.to(self.device), y.to(self.device))

    def _load(self, oracle: QueryOracle[Any]) -> tuple[MetaPredictorModule, Generator | None]:
        if self._models is None:
            meta = load_module(
                MetaPredictorModule, self.predictor_ckpt, oracle.space, "strategy.init_args.predictor_ckpt", self.device
            )
            generator = None
            if self.generator_ckpt:
                generator = load_generator(
                    self.generator_ckpt, oracle.space, self.device, "strategy.init_args.generator_ckpt"
                )
                if generator.supports_guidance:
                    if not meta.hparams.noise_aware:
                        raise ConfigError(
                            "strategy.init_args.predictor_ckpt: guided generation needs a meta-predictor "
                            "trained with model.init_args.noise_aware: true"
                        )
                    check_same_state(generator.model, meta)
            self._models = (meta, generator)
        self._check_unseen(self._models[0], oracle)
        return self._models

    @staticmethod
    def _check_unseen(meta: MetaPredictorModule, oracle: QueryOracle[Any]) -> None:
        """Transfer to a task the meta-predictor was trained on would report leaked labels."""
        spec = meta.hparams.data_spec
        bench, metric = oracle.task
        names = {bench, metric, f"{bench}/{metric}"}
        tasks = list(spec.get("tasks", []))
        if "task_datasets" in spec:  # by dataset: a task on the target's data under another name leaks too
            trained = {t for t, d in zip(tasks, spec["task_datasets"]) if t != spec.get("held_out")}
            leaked = sorted(t for t, d in zip(tasks, spec["task_datasets"]) if t in trained and d == oracle.dataset)
        else:  # checkpoints from before dataset ids: by task name
            leaked = [] if spec.get("held_out") in names else sorted(names & set(tasks))
        if leaked:
            raise ConfigError(
                f"strategy.init_args.predictor_ckpt was meta-trained on task {leaked[0]!r}, measured on "
                f"{oracle.dataset!r} like the target {metric!r}; transfer must target data it never saw "
                f"(its held-out task is {spec.get('held_out')!r})"
            )
