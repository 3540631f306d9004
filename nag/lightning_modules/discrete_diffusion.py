"""DiNAS's generator: multi-conditioned discrete graph diffusion with classifier-free guidance."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nag.diffusion.discrete import CategoricalDiffusion, Spacing, State
from nag.diffusion.graph_state import edges_from_sources, reading_nodes
from nag.errors import ConfigError, UnknownMetric
from nag.lightning_modules.diffusion_base import DiffusionModule, Graphs
from nag.nn.conditions import ConditionEncoder, RawValue, normalize_conditions
from nag.nn.graph_transformer import GraphTransformer
from nag.nn.state_regressor import StateRegressor

GuidanceMode = Literal["compositional", "joint"]
#: Sampling steps unless asked otherwise: skipping steps is exact for this process, and T = 500
#: steps cost 1-4 min per 1,000 samples on a CPU.
DEFAULT_STEPS = 50
#: Noisy copies of each training example the regressor of the conditions sees per step.
REGRESSOR_DRAWS = 4
#: Classes of a directed pair ``i -> j`` (``i < j``): absent, present.
EDGE_CLASSES = 2


class ConditionalDenoiser(nn.Module):
    """The graph transformer, the condition encoder and the optional regressor of the
    conditions, averaged together by the EMA."""

    def __init__(
        self, transformer: GraphTransformer, conditions: ConditionEncoder, regressor: StateRegressor | None = None
    ) -> None:
        super().__init__()
        self.transformer, self.conditions, self.regressor = transformer, conditions, regressor

    def forward(self, state: State, t: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """``cond [B, D]``: the condition embeddings (``self.conditions(values, keep)``), an input
        rather than computed here so that a sampler embeds its conditions once, not every step."""
        return self.transformer(state["nodes"], state["edges"], t, cond)


class DiscreteDiffusionModule(DiffusionModule):
    """Learns ``p(G | c_1, ..., c_k)`` for any subset of named conditions (DiNAS).

    Node ops (plus a "no node" class for padding, see :mod:`nag.diffusion.discrete`) and,
    where the topology varies, directed edges are diffused with marginal transitions whose
    per-position marginals are the training split's class frequencies (set when fitting
    starts, stored in the checkpoint). The graph transformer predicts ``x_0``; the loss is
    cross-entropy on nodes plus ``edge_weight`` times cross-entropy on the upper-triangle
    edges. Where the space is ``single_input`` (NB-Graph: each layer reads one earlier node, the
    output every layer no other reads) the wiring is diffused as one source per node instead of
    free edges: the network still scores every pair ``i -> j`` and node ``j``'s source is the
    softmax over its column, so every drawn wiring is valid and none needs projection. Each
    condition is a target of the datamodule (normalised with the training
    statistics stored in ``data_spec``), dropped to its own null token with probability
    ``cond_drop``. Validation and sampling use the EMA weights.

    Classifier-free guidance alone steers weakly toward the top of a condition's range: the
    denoiser learns the architectures' structure first and the condition's effect on it late.
    With ``regressor_scale > 0`` a small noise-aware regressor of the conditions
    (:class:`~nag.nn.state_regressor.StateRegressor`) trains beside the denoiser on the same
    noisy states, and sampling toward conditions adds DiGress's regressor guidance: each step's
    ``p(z_s | z_t)`` is tilted by ``exp(scale * <grad_{z_t} log N(c | f(z_t), 1), z_s>)``, the
    asked values ``c`` in the normalised units the regressor predicts. Unconditional samples
    are not tilted.

    Args:
        data_spec: the datamodule's ``spec()`` (linked by the CLI).
        conditions: target names to condition on (a subset of ``data_spec["targets"]``).
        binned: conditions embedded by quantile bin instead of continuously.
        bins: bins of each binned condition.
        T: diffusion steps.
        edge_weight: weight of the edge cross-entropy (lambda).
        cond_drop: per-condition dropout probability in training.
        uncond_drop: probability that a training example drops every condition at once, so
            the unconditional path is trained (see :class:`~nag.nn.conditions.ConditionEncoder`).
        guidance_scale: ``w`` of classifier-free guidance toward asked conditions where a request
            gives none: a trained generator's tuned sampling setting, kept in its checkpoint.
        regressor_scale: strength of regressor guidance toward asked conditions (a request's
            ``regressor_scale`` overrides it); 0 trains no regressor.
        regressor_hidden: width of the regressor's hidden layers.
        reference: sample as before issue 19, for comparisons: the network on every sample,
            shared inputs or not, the original transformer forward and dense posteriors. Not a
            hyperparameter: checkpoints do not keep it.
    """

    generator_name = "discrete_diffusion"

    def __init__(
        self,
        data_spec: dict[str, Any],
        conditions: Sequence[str] = (),
        binned: Sequence[str] = (),
        bins: int = 10,
        T: int = 500,
        dim: int = 64,
        edge_dim: int = 16,
        layers: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        edge_weight: float = 5.0,
        cond_drop: float = 0.1,
        uncond_drop: float = 0.0,
        guidance_scale: float = 1.0,
        regressor_scale: float = 0.0,
        regressor_hidden: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        ema_decay: float = 0.999,
        reference: bool = False,
    ) -> None:
        super().__init__()
        self.reference = reference
        targets = list(data_spec.get("targets", []))
        unknown = [c for c in conditions if c not in targets]
        if unknown:
            raise UnknownMetric(
                f"model.init_args.conditions: {unknown} are not targets of the data; "
                f"valid: {', '.join(targets) or 'none (set data.init_args.targets)'}"
            )
        if len(set(conditions)) != len(conditions):
            raise ConfigError(f"model.init_args.conditions {list(conditions)} names a condition twice")
        for name, value in (("guidance_scale", guidance_scale), ("regressor_scale", regressor_scale)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"model.init_args.{name}={value}: expected a finite number >= 0")
        if regressor_scale > 0 and not conditions:
            raise ConfigError(
                "model.init_args.regressor_scale: the regressor predicts the conditions; set "
                "model.init_args.conditions or drop regressor_scale"
            )
        self.save_hyperparameters(ignore=["reference"])
        self.condition_names = list(conditions)
        self.condition_columns = [targets.index(c) for c in conditions]
        self.fixed_topology = bool(data_spec.get("fixed_topology", False))
        self.single_input = bool(data_spec.get("single_input", False)) and not self.fixed_topology
        n, v = data_spec["max_nodes"], data_spec["num_ops"]
        self.num_ops = v
        free_edges = not (self.fixed_topology or self.single_input)
        self.diffusion = CategoricalDiffusion(
            n, v + 1, EDGE_CLASSES if free_edges else None, T, reference, sources=self.single_input
        )
        sizes = [n * (v + 1)] + ([n * n * EDGE_CLASSES] if free_edges else []) + ([n * n] if self.single_input else [])
        regressor = StateRegressor(sizes, len(conditions), regressor_hidden) if regressor_scale > 0 else None
        self.net = ConditionalDenoiser(
            GraphTransformer(
                v + 1,
                EDGE_CLASSES,
                n,
                dim,
                edge_dim,
                layers,
                heads,
                dropout,
                predict_edges=not self.fixed_topology,
                reference=reference,
            ),
            ConditionEncoder(self.condition_names, dim, binned, bins, cond_drop, uncond_drop),
            regressor,
        )
        self.init_ema()  # buffers (quantile knots, edge directions) are set on both copies in setup()
        fixed = data_spec.get("fixed_adjacency")
        self.register_buffer("fixed_adj", torch.tensor(fixed, dtype=torch.long) if fixed is not None else None)
        self.register_buffer("upper", torch.ones(n, n, dtype=torch.bool).triu(1), persistent=False)
        #: ``[N]`` True at the nodes whose source a single_input space draws: all but the first and last.
        self.register_buffer("reading", reading_nodes(n), persistent=False)

    # --- data <-> states --------------------------------------------------------------
    def clean_state(self, batch: Mapping[str, torch.Tensor]) -> State:
        """Class ids of a batch: op index per real node, "no node" for padding; directed
        edges ``i -> j`` of the upper triangle."""
        nodes = torch.where(batch["mask"].bool(), batch["x"].argmax(-1), self.num_ops)
        state = {"nodes": nodes}
        if self.single_input:
            reads = (batch["adj"] > 0.5) & self.upper
            state["sources"] = reads.long().argmax(1) * self.reading  # the first node and the output: 0
        elif not self.fixed_topology:
            state["edges"] = (batch["adj"] > 0.5).long() * self.upper
        return state

    def _with_edges(self, state: State) -> State:
        """The network always sees edges: the space's fixed graph where it is not diffused, as
        ``[1, N, N]`` (the network broadcasts it over the batch), or the sources' edges."""
        if "edges" in state:
            return state
        if "sources" in state:
            return {**state, "edges": edges_from_sources(state["sources"])}
        return {**state, "edges": self.fixed_adj.unsqueeze(0)}

    def condition_values(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The conditions' (already normalised) columns of ``batch["y"]``: ``[B, C]``."""
        return batch["y"][:, self.condition_columns].float()

    def normalize_conditions(
        self, conditions: Mapping[str, RawValue], num_samples: int, extrapolate: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Asked values to ``values [S, C]`` and ``given [C]`` with this checkpoint's training
        statistics (:func:`nag.nn.conditions.normalize_conditions`)."""
        stats = self.hparams.data_spec.get("target_stats", {})
        return normalize_conditions(conditions, self.condition_names, stats, num_samples, extrapolate)

    # --- the denoiser -----------------------------------------------------------------
    def predict(self, net: nn.Module, state: State, t: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """x_0 logits for the diffused kinds; ``t`` are integer steps ``[B]``, ``cond [B, D]`` the
        condition embeddings (``net.conditions(values, keep)``)."""
        out = net(self._with_edges(state), t.float() / self.diffusion.T, cond)
        if self.single_input:  # node j's source: its column of "i -> j present" scores
            out = {**out, "sources": (out["edges"][..., 1] - out["edges"][..., 0]).transpose(1, 2)}
        return {kind: out[kind] for kind in self.diffusion.kinds}

    def onehots(self, state: State) -> list[torch.Tensor]:
        """Each diffused kind of ``state`` as one-hot floats, the regressor's input."""
        return [F.one_hot(state[k], self.diffusion.marginals(k).shape[-1]).float() for k in self.diffusion.kinds]

    # --- training ---------------------------------------------------------------------
    loss_name = "discrete diffusion loss"

    def loss(
        self, batch: Mapping[str, torch.Tensor], net: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clean = self.clean_state(batch)
        b = clean["nodes"].shape[0]
        t = torch.randint(1, self.diffusion.T + 1, (b,), device=self.device, generator=generator)
        noisy = self.diffusion.noise(clean, t, generator)
        keep = self.net.conditions.sample_keep(b, self.device, generator)
        logits = self.predict(net, noisy, t, net.conditions(self.condition_values(batch), keep))
        parts = {"ce_nodes": F.cross_entropy(logits["nodes"].float().flatten(0, -2), clean["nodes"].flatten())}
        if "edges" in logits:
            upper = self.upper.expand(b, -1, -1)
            parts["ce_edges"] = F.cross_entropy(logits["edges"][upper].float(), clean["edges"][upper])
        if "sources" in logits:
            reading = self.reading.expand(b, -1)
            source_logits = logits["sources"].float().masked_fill(self.diffusion.marginals("sources") <= 0, -1e4)
            parts["ce_edges"] = F.cross_entropy(source_logits[reading], clean["sources"][reading])
        loss = parts["ce_nodes"] + self.hparams.edge_weight * parts.get("ce_edges", 0.0)
        if net.regressor is not None:
            parts["mse_regressor"] = self.regressor_loss(net.regressor, clean, self.condition_values(batch), generator)
            loss = loss + parts["mse_regressor"]
        return loss, parts

    def regressor_loss(
        self, regressor: StateRegressor, clean: State, values: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """MSE of the regressor on :data:`REGRESSOR_DRAWS` noisy copies of each example: it is
        small beside the denoiser and learns slowly from one noise level per example and step."""
        copies = {k: v.repeat(REGRESSOR_DRAWS, *([1] * (v.dim() - 1))) for k, v in clean.items()}
        t = torch.randint(1, self.diffusion.T + 1, (copies["nodes"].shape[0],), device=self.device, generator=generator)
        predicted = regressor(self.onehots(self.diffusion.noise(copies, t, generator)), t.float() / self.diffusion.T)
        return F.mse_loss(predicted.float(), values.repeat(REGRESSOR_DRAWS, 1))

    def setup(self, stage: str) -> None:
        """Fit the per-position marginals and condition bins on the training split."""
        if stage != "fit":
            return
        dm = self.trainer.datamodule
        if dm is None:
            raise ConfigError("DiscreteDiffusionModule needs a datamodule: its training split sets the marginals")
        states, values = [], []
        for batch in DataLoader(dm.train_dataloader().dataset, batch_size=1024):  # the whole split, unsharded
            state = self.clean_state({k: v.to(self.device) for k, v in batch.items()})
            if self.single_input and not torch.equal(
                edges_from_sources(state["sources"]), (batch["adj"].to(self.device) > 0.5).long() * self.upper
            ):
                raise ConfigError(
                    f"{dm.space!r} declares single_input, but its training graphs are not one source per node "
                    "with the output reading the unread nodes; set single_input = False on the space"
                )
            states.append(state)
            values.append(self.condition_values(batch))
        self.diffusion.set_marginals({k: torch.cat([s[k] for s in states]) for k in states[0]})
        if self.condition_names:
            for net in (self.net, self.ema.module):
                net.conditions.fit(torch.cat(values).to(self.device))

    # --- sampling ---------------------------------------------------------------------
    def guidance_plan(
        self,
        conditions: Mapping[str, Any] | None,
        guidance_scale: float | Mapping[str, float],
        mode: GuidanceMode,
        num_samples: int,
        extrapolate: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """The forward passes of classifier-free guidance and their weights.

        Returns ``values [S, C]``, ``keep [P, C]`` (which conditions each pass sees) and
        weights ``w_p`` with ``logits = sum_p w_p logits_p``: compositional
        ``l(0) + sum_i w_i (l(c_i) - l(0))``, joint ``l(0) + w (l(c) - l(0))``. A pass
        whose weight is zero (e.g. the unconditional one at scale 1) is not run."""
        if mode not in ("compositional", "joint"):
            raise ConfigError(f"mode={mode!r}; expected 'compositional' or 'joint'")
        values, given = self.normalize_conditions(conditions or {}, num_samples, extrapolate)
        names = [n for n, g in zip(self.condition_names, given) if g]
        if isinstance(guidance_scale, Mapping):
            extra = [n for n in guidance_scale if n not in names]
            if extra:
                raise ConfigError(f"guidance_scale names {extra} that are not among the requested conditions {names}")
            if mode == "joint":
                raise ConfigError("guidance_scale: joint mode takes one number, not one per condition")
            scales = {n: float(guidance_scale.get(n, 1.0)) for n in names}
        else:
            scales = {n: float(guidance_scale) for n in names}
        c = len(self.condition_names)
        keeps, weights = [torch.zeros(c, dtype=torch.bool)], [1.0]
        if names and mode == "joint":
            keeps.append(given)
            weights = [1.0 - scales[names[0]], scales[names[0]]]
        elif names:
            for n in names:
                keeps.append(torch.arange(c) == self.condition_names.index(n))
                weights.append(scales[n])
            weights[0] = 1.0 - sum(scales.values())
        used = [i for i, w in enumerate(weights) if w != 0.0]
        return values, torch.stack([keeps[i] for i in used]), [weights[i] for i in used]

    def condition_embeddings(
        self, net: nn.Module, values: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the guidance passes condition on, fixed for a whole sampling call and so computed
        once: the embeddings ``[P, B, D]`` of what each pass sees (``keep [P, C]``) of the samples'
        ``values [B, C]``, and ids ``[B]``, equal for samples asking the same values."""
        p, b = keep.shape[0], values.shape[0]
        cond = net.conditions(values.repeat(p, 1), keep.to(values.device).repeat_interleave(b, 0))
        if values.shape[1] == 0:
            return cond.view(p, b, -1), torch.zeros(b, dtype=torch.long, device=values.device)
        return cond.view(p, b, -1), torch.unique(values, dim=0, return_inverse=True)[1]

    def distinct_inputs(self, state: State, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first [U], inverse [B])``: one sample per distinct network input (state and
        condition ``groups``) and, per sample, which one has its input. Late in guided sampling
        most samples share their state (their architecture is decided), and the network need not
        see it twice.

        Rows are compared exactly through int64 ids: each kind's classes are packed into words,
        and every word is merged into the running id through its rank (< B), so none overflows.
        With :attr:`reference` every sample is its own input."""
        b = groups.shape[0]
        every = torch.arange(b, device=groups.device)
        if self.reference:
            return every, every
        ids = groups
        for kind in self.diffusion.kinds:
            bits = max(1, (self.diffusion.marginals(kind).shape[-1] - 1).bit_length())
            shifts = bits * torch.arange(62 // bits, device=groups.device)
            for cols in state[kind].flatten(1).split(62 // bits, 1):
                word = (cols << shifts[: cols.shape[1]]).sum(1)
                ids = torch.unique(ids, return_inverse=True)[1] * b + torch.unique(word, return_inverse=True)[1]
        inverse = torch.unique(ids, return_inverse=True)[1]
        return inverse.new_empty(int(inverse.max()) + 1).scatter_(0, inverse, every), inverse

    def guided_x0(
        self,
        net: nn.Module,
        state: State,
        t: int,
        cond: torch.Tensor,
        groups: torch.Tensor,
        weights: Sequence[float],
    ) -> dict[str, torch.Tensor]:
        """``p(x_0 | z_t)`` from the guided logits, for the passes' condition embeddings
        ``cond [P, B, D]`` and condition ``groups [B]`` (:meth:`condition_embeddings`).

        The network runs once per distinct input (:meth:`distinct_inputs`), all passes in one
        batched forward ``[P * U]`` (on a CPU as fast as one forward per pass, measured, with
        fewer calls). Classes never seen at a position in the training split (its marginal is 0:
        "input" in the middle of an NB201 cell, any edge below the diagonal) get no mass, so an
        under-trained network cannot place them."""
        first, inverse = self.distinct_inputs(state, groups)
        p, u = cond.shape[0], first.shape[0]
        rep = {k: v[first].repeat(p, *([1] * (v.dim() - 1))) for k, v in state.items()}
        tt = torch.full((p * u,), t, dtype=torch.long, device=self.device)
        logits = self.predict(net, rep, tt, cond[:, first].flatten(0, 1))
        out = {}
        for kind, lg in logits.items():
            lg = lg.float().log_softmax(-1).view(p, u, *lg.shape[1:])
            combined = sum(w * lg[i] for i, w in enumerate(weights))
            out[kind] = combined.masked_fill(self.diffusion.marginals(kind) <= 0, -math.inf).softmax(-1)[inverse]
        return out

    def to_graphs(self, state: State) -> dict[str, torch.Tensor]:
        """Class ids to the ``{0, 1}`` graph form: ``x [B, N, V]``, ``adj [B, N, N]``, ``mask [B, N]``."""
        real = state["nodes"] < self.num_ops
        x = F.one_hot(state["nodes"].clamp_max(self.num_ops - 1), self.num_ops).float() * real.unsqueeze(-1)
        adj = self._with_edges(state)["edges"].float() * self.upper
        return {"x": x, "adj": adj * real.unsqueeze(-1) * real.unsqueeze(-2), "mask": real}

    @torch.no_grad()
    def sample_graphs(
        self,
        num_samples: int,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1000,
        progress: bool = False,
        sampler: Literal["ancestral"] = "ancestral",
        conditions: Mapping[str, float | Sequence[float]] | None = None,
        guidance_scale: float | Mapping[str, float] | None = None,
        mode: GuidanceMode = "compositional",
        extrapolate: bool = False,
        spacing: Spacing = "time",
        compile: bool = False,
        regressor_scale: float | None = None,
    ) -> Graphs:
        """Ancestral sampling (``p(z_s | z_t)`` from the predicted ``x_0``); see
        :meth:`DiffusionModule.sample_graphs`.

        Args:
            steps: sampling steps (default ``min(50, T)``); fewer than ``T`` skip steps exactly.
            conditions: target values in the benchmark's raw units, e.g.
                ``{"cifar10_test_200ep": 94.3, "hwnb_cifar10_fpga_latency": 2.1}``; one value
                for all samples or one per sample. Conditions left out are not imposed.
            guidance_scale: ``w`` of classifier-free guidance; per condition in compositional mode
                (default the checkpoint's ``guidance_scale``).
            mode: ``compositional`` (one pass per condition) or ``joint`` (one pass with all).
            extrapolate: allow conditions outside the training split's range.
            spacing: steps evenly spaced in ``t`` (``"time"``) or in ``abar_t`` (``"alpha"``), see
                :meth:`CategoricalDiffusion.timesteps`.
            compile: run the network through ``torch.compile`` (see :meth:`DiffusionModule.sample_graphs`).
            regressor_scale: strength of regressor guidance toward ``conditions`` (default the
                checkpoint's ``regressor_scale``; 0: classifier-free guidance only).
        """
        if sampler != "ancestral":
            raise ConfigError(f"sampler={sampler!r}: discrete diffusion samples with 'ancestral'")
        if spacing not in ("time", "alpha"):
            raise ConfigError(f"spacing={spacing!r}; expected 'time' or 'alpha'")
        if guidance_scale is None:
            guidance_scale = self.hparams.get("guidance_scale", 1.0)
        plan = self.guidance_plan(conditions, guidance_scale, mode, max(num_samples, 1), extrapolate)
        scale = self.hparams.get("regressor_scale", 0.0) if regressor_scale is None else regressor_scale
        if not (math.isfinite(scale) and scale >= 0):
            raise ConfigError(f"--regressor_scale={scale}: expected a finite number >= 0")
        if scale > 0 and self.net.regressor is None:
            raise ConfigError(
                f"--regressor_scale={scale}: this checkpoint has no regressor; fit it with "
                "model.init_args.regressor_scale > 0, or drop --regressor_scale"
            )
        given = self.normalize_conditions(conditions or {}, max(num_samples, 1), extrapolate)[1]
        return super().sample_graphs(
            num_samples,
            steps,
            seed,
            batch_size,
            progress,
            compile,
            plan=plan,
            spacing=spacing,
            regressor=(scale, given) if scale > 0 and bool(given.any()) else None,
        )

    def sample_batch(
        self,
        b: int,
        generator: torch.Generator,
        steps: int | None,
        progress: bool,
        start: int,
        plan: tuple[torch.Tensor, torch.Tensor, list[float]],
        spacing: Spacing = "time",
        regressor: tuple[float, torch.Tensor] | None = None,
    ) -> Graphs:
        """``regressor``: ``(scale, given [C])`` of regressor guidance toward the asked values, or none."""
        values, keep, weights = plan
        chunk = values[start : start + b].to(self.device)
        times = self.diffusion.timesteps(steps or min(DEFAULT_STEPS, self.diffusion.T), spacing)
        net = self.sampling_network()
        max_edges = self.hparams.data_spec.get("max_edges")
        with torch.inference_mode():
            cond, groups = self.condition_embeddings(net, chunk, keep)
            state = self.diffusion.prior(b, generator)
            for t, s in tqdm(list(itertools.pairwise(times)), desc="ancestral sampling", disable=not progress):
                probs = self.guided_x0(net, state, t, cond, groups, weights)
                tilt = None if regressor is None else self.regressor_tilt(net, state, t, chunk, *regressor)
                state = self.diffusion.step(state, probs, t, s, generator, tilt, max_edges)
        return self.to_graphs(state)

    def regressor_tilt(
        self, net: nn.Module, state: State, t: int, values: torch.Tensor, scale: float, given: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """DiGress's guidance: ``scale * grad_{z_t} log N(values | f(z_t), 1)`` over the ``given``
        conditions, per position and class, the log-weights that tilt ``p(z_s | z_t)``."""
        with torch.inference_mode(False), torch.enable_grad():
            onehots = [o.requires_grad_() for o in self.onehots(state)]  # new tensors, outside inference mode
            tt = torch.full((values.shape[0],), t / self.diffusion.T, device=values.device)
            predicted = net.regressor(onehots, tt)
            loglik = -0.5 * ((predicted.float() - values) ** 2)[:, given.to(values.device)].sum()
            grads = torch.autograd.grad(loglik, onehots)
        return {kind: scale * g for kind, g in zip(self.diffusion.kinds, grads)}
