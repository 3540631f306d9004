"""DiffusionNAG's generator: score-based (SDE) diffusion over architecture graphs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from nag.diffusion.graph_state import (
    clean_state,
    diffused_entries,
    edges_from_sources,
    perturb_state,
    sample_times,
)
from nag.diffusion.guidance import GuidanceTerm, guided_score
from nag.diffusion.samplers import dpm_solver_sample, edm_sample, ode_sample, pc_sample
from nag.diffusion.sde import SDE, make_sde
from nag.errors import ConfigError
from nag.lightning_modules.diffusion_base import DiffusionModule, Graphs
from nag.nn.dag_transformer import AttentionMode, DagTransformer, dag_attention_mask

Sampler = Literal["ode", "pc", "dpm", "edm"]
#: The samplers a score-diffusion generator takes (``sampler=``), and their default step counts.
SAMPLERS = {"ode": ode_sample, "pc": pc_sample, "dpm": dpm_solver_sample, "edm": edm_sample}
DEFAULT_STEPS = {"ode": 50, "pc": 500, "dpm": 10, "edm": 5}


class ScoreDiffusionModule(DiffusionModule):
    """Learns ``grad log p_t`` of architecture graphs by denoising score matching.

    Node ops ``X`` are always diffused; the adjacency ``A`` too when the search space's
    topology varies (NB101, NB-Graph), else it is the space's fixed graph and only
    conditions attention. Only the entries the space leaves open are diffused
    (:func:`~nag.diffusion.graph_state.diffused_entries`): the ops allowed at each position
    and, in a ``single_input`` space, one source per layer, so a sample is read as one
    categorical per position and per layer. The network predicts the unit noise ``z`` of
    ``x_t = mean(t) + std(t) z``, so ``score = -z_hat / std(t)``. Validation and sampling use
    the EMA weights. The SDE is built from the hyper-parameters alone (``sde``, σ/β), which
    the checkpoint stores and ``nag generate`` rebuilds from: one place, never two configs.

    ``self_condition`` feeds the network its previous clean estimate (Analog Bits): in
    training, for a random half of each batch, a first no-grad pass's estimate; in sampling,
    the previous call's. ``sampler`` and ``steps`` are the sampling a checkpoint gets when a
    request names none: a config ships the sampler its space needs (NB101: many PC steps).
    ``pc_snr`` is the PC sampler's Langevin signal-to-noise ratio (Song et al.'s 0.16) a request
    gets unless it names one: larger corrector steps settle a sample's entries further, at
    some cost in variety.
    """

    generator_name = "score_diffusion"

    supports_guidance = True
    condition_names: Sequence[str] = ()
    loss_name = "score-matching loss"

    def __init__(
        self,
        data_spec: dict[str, Any],
        sde: Literal["ve", "vp"] = "vp",
        sigma_min: float = 0.01,
        sigma_max: float = 5.0,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        dropout: float = 0.0,
        attention: AttentionMode = "adjacency",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        ema_decay: float = 0.999,
        eps: float = 1e-5,
        self_condition: bool = False,
        sampler: Sampler = "ode",
        steps: int | None = None,
        pc_snr: float = 0.16,
    ) -> None:
        super().__init__()
        self.sde: SDE = make_sde(sde, sigma_min, sigma_max, beta_min, beta_max)
        self.save_hyperparameters()
        self.fixed_topology = bool(data_spec.get("fixed_topology", False))
        self.net = DagTransformer(
            data_spec["num_ops"],
            data_spec["max_nodes"],
            dim,
            layers,
            heads,
            dropout,
            predict_edges=not self.fixed_topology,
            self_condition=self_condition,
        )
        if sampler not in SAMPLERS:
            raise ConfigError(
                f"model.init_args.sampler={sampler!r}; expected one of {', '.join(repr(s) for s in SAMPLERS)}"
            )
        if not pc_snr > 0:
            raise ConfigError(
                f"model.init_args.pc_snr={pc_snr}: the corrector's signal-to-noise ratio must be > 0, e.g. 0.16"
            )
        self.init_ema()
        fixed = data_spec.get("fixed_adjacency")
        self.register_buffer("fixed_adj", torch.tensor(fixed, dtype=torch.float32) if fixed is not None else None)
        self.single_input = bool(data_spec.get("single_input", False)) and not self.fixed_topology
        entries = diffused_entries(data_spec)
        self.register_buffer("entries_x", entries["x"], persistent=False)
        self.register_buffer("entries_adj", entries.get("adj"), persistent=False)
        #: ``[N]`` True at the positions every graph has: read as real nodes whatever was drawn.
        self.register_buffer(
            "required", torch.arange(data_spec["max_nodes"]) < data_spec.get("min_nodes", 1), persistent=False
        )
        #: Where graphs vary in size, the op that closes each (the node labelled ``output``: the
        #: graph form lists nodes in topological order, padding after them), else None.
        ops = data_spec.get("space", {}).get("ops", [])
        varies = data_spec.get("min_nodes", data_spec["max_nodes"]) < data_spec["max_nodes"]
        self.end_op: int | None = ops.index("output") if varies and "output" in ops else None

    @property
    def entries(self) -> dict[str, torch.Tensor]:
        """The diffused entries of the state (no batch dimension)."""
        return {"x": self.entries_x} if self.entries_adj is None else {"x": self.entries_x, "adj": self.entries_adj}

    # --- the score --------------------------------------------------------------------
    def predict_noise(
        self,
        state: dict[str, torch.Tensor],
        t: torch.Tensor,
        net: torch.nn.Module | None = None,
        estimate: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The network reads the continuous noisy state: ops ``x_t`` and, where the topology is
        generated, edge values ``A_t`` (the space's fixed graph, signed, otherwise). The
        threshold ``A_t > 0`` is used only for the attention mask. Under the VE SDE the inputs
        are scaled by ``1 / sqrt(1 + sigma(t)^2)`` so the network sees unit-scale values at
        every noise level. Padding is the all -1 "no node" row, so every node position takes part.
        ``estimate``: the clean estimate a self-conditioned network reads (None: none)."""
        scale = self._input_scale(t)
        x = state["x"] if scale is None else state["x"] * scale
        if self.fixed_topology:
            # one graph for the whole batch: its mask and edge bias are built at batch 1 and broadcast
            adj = self.fixed_adj.unsqueeze(0)
            edges = (adj * 2.0 - 1.0).triu(1)
        else:
            adj = (state["adj"] > 0).float().triu(1)
            edges = (state["adj"] if scale is None else state["adj"] * scale).triu(1)
        node_mask = torch.ones(adj.shape[:2], dtype=torch.bool, device=adj.device)
        allowed = dag_attention_mask(adj, node_mask, self.hparams.attention)
        return (self.net if net is None else net)(x, edges, node_mask, t, allowed, estimate)

    def clean_estimate(
        self, state: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], t: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Tweedie's ``x_0 = (x_t - std z_hat) / mean(t)``, clipped to the data's [-1, 1] and zero
        off the diffused entries: what a self-conditioned network reads next (detached)."""
        a, std = (v.view(-1, 1, 1) for v in self.sde.scale_std(t))
        return {
            k: (((x.float() - std * noise[k].float()) / a).clamp(-1.0, 1.0) * self.entries[k]).detach()
            for k, x in state.items()
        }

    def _input_scale(self, t: torch.Tensor) -> torch.Tensor | None:
        """``[B, 1, 1]``: ``1 / sqrt(1 + sigma^2)`` under VE (``x_t`` has variance ``1 + sigma^2``);
        None (no scaling) under VP."""
        if self.hparams.sde != "ve":
            return None
        std = self.sde.marginal_prob(torch.zeros_like(t), t)[1].float()
        return (1.0 + std**2).rsqrt().view(-1, 1, 1)

    def score_fn(self, net: torch.nn.Module | None = None):
        """``(state, t) -> score`` for the samplers; the EMA weights unless told otherwise. A
        self-conditioned network reads the clean estimate of the closure's previous call."""
        net = self.sampling_network() if net is None else net

        carried: dict[str, dict[str, torch.Tensor]] = {}

        def score(state: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
            z = self.predict_noise(state, t, net, carried.get("estimate"))
            if self.hparams.self_condition:
                carried["estimate"] = self.clean_estimate(state, z, t)
            std = self.sde.marginal_prob(torch.zeros_like(t), t)[1].float()
            return {k: -z[k].float() / std.view(-1, *([1] * (z[k].dim() - 1))) for k in state}

        return score

    # --- training ---------------------------------------------------------------------
    def loss(
        self, batch: dict[str, torch.Tensor], net: torch.nn.Module, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clean, masks = clean_state(batch, self.entries)
        t = sample_times(batch["x"].shape[0], self.sde, self.hparams.eps, self.device, generator)
        noisy, noise = perturb_state(clean, masks, self.sde, t, generator)
        estimate = None
        if self.hparams.self_condition:
            with torch.no_grad():
                estimate = self.clean_estimate(noisy, self.predict_noise(noisy, t, net), t)
            keep = torch.rand(t.shape, generator=generator, device=t.device) < 0.5
            estimate = {k: v * keep.view(-1, *([1] * (v.dim() - 1))) for k, v in estimate.items()}
        pred = self.predict_noise(noisy, t, net, estimate)
        total = sum(((pred[k].float() - noise[k]) ** 2 * masks[k]).sum() for k in clean)
        return total / sum(m.sum() for m in masks.values()), {}

    # --- sampling ---------------------------------------------------------------------
    def sample_batch(
        self,
        b: int,
        generator: torch.Generator,
        steps: int | None,
        progress: bool,
        start: int,
        sampler: Sampler | None = None,
        pc_snr: float | None = None,
        guidance: Sequence[GuidanceTerm] = (),
        normalize_guidance: bool = False,
        prior: Mapping[str, torch.Tensor] | None = None,
    ) -> Graphs:
        """``b`` samples as :meth:`read_state` reads them. ``guidance`` terms (predictor
        objectives, budgets) are added to the score at every step; with ``normalize_guidance``
        each term's scale is a ratio to the score's norm (DiffusionNAG's option), calibrated so
        the ODE and PC samplers move samples equally (:mod:`nag.diffusion.guidance`). The search
        space's ``project`` (in :func:`nag.generation.decode_samples`) stays a safety net for
        what the parametrisation leaves open (free edges: NB101's edge budget, connectivity).

        Samplers (``steps`` defaults in :data:`DEFAULT_STEPS`): ``ode`` (Heun in ``t``, two
        network evaluations per step), ``pc`` (predictor-corrector), ``dpm`` (DPM-Solver++(2M),
        one evaluation per step) and ``edm`` (Heun on Karras' noise levels, ``2 steps - 1``
        evaluations); see :mod:`nag.diffusion.samplers`. Without guidance the network runs
        under ``torch.inference_mode``. ``prior`` is the draw from ``p_T`` of the whole request
        (``{"x": [S, N, V]}`` and, where the topology varies, ``"adj": [S, N, N]``), used instead
        of the seed's: the same start on two devices (whose random generators differ). Without
        ``sampler`` (and ``steps``), the checkpoint's own (``sampler``/``steps`` hyper-parameters);
        without ``pc_snr``, the checkpoint's ``pc_snr``."""
        if sampler is None:
            sampler, steps = self.hparams.sampler, steps or self.hparams.steps
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler={sampler!r}; expected one of {', '.join(repr(s) for s in SAMPLERS)}")
        if pc_snr is not None and sampler != "pc":
            raise ConfigError(
                f"--pc_snr={pc_snr}: it sets the pc sampler's corrector, not {sampler}'s; add --sampler pc"
            )
        score_fn = guided_score(
            self.score_fn(),
            guidance,
            self.sde.T,
            normalize=normalize_guidance,
            probability_flow=sampler != "pc",
            sde=self.sde,
        )
        n, v = self.hparams.data_spec["max_nodes"], self.hparams.data_spec["num_ops"]
        shapes = {"x": (b, n, v)} if self.fixed_topology else {"x": (b, n, v), "adj": (b, n, n)}
        masks = {k: m.unsqueeze(0) for k, m in self.entries.items()}  # broadcast over the batch
        kwargs = {"generator": generator, "device": self.device, "mask": masks, "progress": progress}
        if prior is not None:
            kwargs["init"] = {k: prior[k][start : start + b] for k in shapes}
        if sampler == "pc":
            kwargs["snr"] = self.hparams.pc_snr if pc_snr is None else pc_snr
        with torch.inference_mode(not guidance):  # guidance differentiates through the predictor
            state = SAMPLERS[sampler](self.sde, score_fn, shapes, num_steps=steps or DEFAULT_STEPS[sampler], **kwargs)
        return self.read_state(state)

    def read_state(self, state: Mapping[str, torch.Tensor]) -> Graphs:
        """What a sampled state says, one categorical at a time: each position's op
        probabilities over the ops allowed there (a softmax of its diffused entries, so the
        argmax is the largest entry); a position is a real node where every graph has one or
        where its largest entry is positive (padding is an all -1 row). Edges: in a
        ``single_input`` space each layer reads the earlier node with the largest entry of its
        column (the output what no layer reads); otherwise each edge's value in the {0, 1} scale.

        Where graphs vary in size (``end_op``, their output), the size is read as one more
        categorical: the first position whose op is the output ends the graph, every position
        before it is a node, every later one padding. Per-position real/padding signs would let
        a sample end twice or leave a hole (most of CellSpace's invalid samples); ``unread [S]``
        counts the positions this reading decided otherwise than their sign."""
        x = state["x"].float()
        b = x.shape[0]
        allowed = self.entries_x.unsqueeze(0)
        scores = x.masked_fill(~allowed, -torch.inf)
        real = self.required.unsqueeze(0) | (scores.max(-1).values > 0)
        unread = torch.zeros(b, dtype=torch.long, device=x.device)
        if self.end_op is not None:
            position = torch.arange(x.shape[1], device=x.device)
            # the smallest graph ends at position min_nodes - 1
            ends = (scores.argmax(-1) == self.end_op) & (position >= int(self.required.sum()) - 1)
            first = torch.where(ends, position, x.shape[1]).min(1).values
            layout = torch.where((first < x.shape[1]).unsqueeze(1), position <= first.unsqueeze(1), real)
            unread = (layout != real).sum(1)
            real = layout
        probs = torch.softmax(scores, -1).nan_to_num(0.0) * real.unsqueeze(-1)
        if self.fixed_topology:
            adj = self.fixed_adj.expand(b, -1, -1)
        elif self.single_input:
            sources = state["adj"].float().masked_fill(~self.entries_adj.unsqueeze(0), -torch.inf).argmax(1)
            adj = edges_from_sources(sources).float()
        else:
            adj = ((state["adj"].float() + 1.0) / 2.0).clamp(0.0, 1.0).triu(1)
        return {"x": probs, "adj": adj * real.unsqueeze(-1) * real.unsqueeze(-2), "mask": real, "unread": unread}
