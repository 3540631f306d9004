"""What can be asked of a generator: one typed request, validated once, where it is built.

A request is the sampling settings plus, optionally, classifier-free conditions, predictor
guidance and a device budget, each a small frozen dataclass. ``nag generate``, the Python API
(:func:`nag.generation.generate`) and the search strategies build one and hand it to the one
entry point; nothing below re-reads untyped options.

One name per knob, the same in ``nag generate``, ``nag search`` configs and Python:

- ``num_samples``: how many architectures the generator draws (on the device path: at most
  this many, drawn in rounds until enough are feasible). The number a device budget returns
  is ``select``.
- ``guidance_scale``: the strength ``w`` of classifier-free guidance toward ``conditions``.
- ``guide_scale``: the strength of each predictor-guidance term (``guide`` objectives, a
  search's acquisition); ``latency_guidance``: the strength of the device budget's own term.

Every check that needs no model runs in ``__post_init__`` and names the command-line flag, so
``nag generate`` refuses a bad value before it loads anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nag.errors import ConfigError

if TYPE_CHECKING:  # torch-free at import: `nag generate` checks a request before loading anything
    from nag.diffusion.guidance import GuidanceTerm, Schedule
    from nag.hardware.tables import Budget

SamplerName = Literal["ode", "pc", "dpm", "edm", "ancestral"]
Spacing = Literal["time", "alpha"]
GuidanceMode = Literal["compositional", "joint"]

#: Draws per returned architecture on the device path when ``num_samples`` is not given.
DRAWS_PER_SELECTED = 20
#: The least ``P(latency <= budget)`` a returned architecture needs by default. Measured by
#: ``benchmarks/device_flow.py``: the adapted predictor is conservative, so at K = 20 a cut at
#: 0.75 still returns a set 99 % within budget while keeping cells near the budget (the
#: accurate ones), and at K = 5 it returns cells where 0.9 returned none.
FEASIBLE_PROB = 0.75


def _finite(name: str, value: float, low: float = -math.inf) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        bound = "" if low == -math.inf else f" >= {low:g}"
        raise ConfigError(f"--{name}={value}: expected a finite number{bound}")
    return float(value)


@dataclass(frozen=True)
class Sampling:
    """How many architectures to draw and how.

    Args:
        num_samples: architectures the generator draws (default 1000; with a device budget, at
            most 20 x ``select``, drawn in rounds until enough are predicted feasible).
        seed: the random seed; the same seed gives the same samples.
        sampler: the generator's sampler (default the checkpoint's own: its config's
            ``sampler``, ``ode`` unless set, for score diffusion, ``ancestral`` for discrete
            diffusion); ``dpm`` and ``edm`` are few-step score samplers.
        steps: sampling steps (default: the checkpoint's with its own sampler, else the
            sampler's own).
        pc_snr: the ``pc`` sampler's Langevin signal-to-noise ratio (default the checkpoint's
            ``pc_snr``, Song et al.'s 0.16 unless its config sets one): larger corrections settle
            more entries on a side (NB101's raw validity rises) and give fewer distinct samples.
        spacing: discrete diffusion's steps evenly spaced in time (``time``) or in the signal
            level (``alpha``, faster at few steps); default ``time``.
        batch_size: samples per network call (memory, not results; default the generator's).
        compile: run a diffusion network through ``torch.compile`` (seconds of compilation
            first; faster on some spaces, slower on others).
    """

    num_samples: int | None = None
    seed: int = 0
    sampler: SamplerName | None = None
    steps: int | None = None
    pc_snr: float | None = None
    spacing: Spacing | None = None
    batch_size: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples < 1:
            raise ConfigError(f"--num_samples={self.num_samples}: ask for at least one architecture")
        if (self.batch_size is not None and self.batch_size < 1) or (self.steps is not None and self.steps < 1):
            raise ConfigError(
                f"--batch_size={self.batch_size}, --steps={self.steps}: both must be at least 1 (steps may be unset)"
            )
        if self.pc_snr is not None and not _finite("pc_snr", self.pc_snr) > 0:
            raise ConfigError(f"--pc_snr={self.pc_snr}: the corrector's signal-to-noise ratio must be > 0, e.g. 0.16")
        if self.sampler is not None and self.sampler not in SamplerName.__args__:
            raise ConfigError(f'--sampler "{self.sampler}": expected one of {", ".join(SamplerName.__args__)}')
        if self.spacing is not None and self.spacing not in Spacing.__args__:
            raise ConfigError(f"--spacing={self.spacing!r}: expected 'time' or 'alpha'")


@dataclass(frozen=True)
class Conditioning:
    """Classifier-free conditions (a conditional generator: discrete diffusion, cell flow).

    Args:
        conditions: target values in the benchmark's raw units, e.g. ``{"valid_acc": 0.81}``;
            one value for all samples or one per sample.
        guidance_scale: ``w`` of classifier-free guidance: one number, or one per condition in
            ``compositional`` mode (default the generator's own: a discrete diffusion
            checkpoint's ``guidance_scale``, else 1).
        mode: ``compositional`` (one pass per condition) or ``joint`` (one pass with all).
        extrapolate: allow values outside the training split's range.
        regressor_scale: strength of discrete diffusion's regressor guidance toward the
            conditions (default the checkpoint's ``regressor_scale``; 0: classifier-free only).
    """

    conditions: Mapping[str, float | Sequence[float]]
    guidance_scale: float | Mapping[str, float] | None = None
    mode: GuidanceMode = "compositional"
    extrapolate: bool = False
    regressor_scale: float | None = None

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ConfigError("--conditions: give at least one name and value, e.g. '{\"valid_acc\": 0.81}'")
        for name, value in self.conditions.items():
            values = value if isinstance(value, Sequence) else [value]
            if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ConfigError(f"--conditions[{name!r}]: give one finite value or one per sample")
        if self.mode not in GuidanceMode.__args__:
            raise ConfigError(f"--mode={self.mode!r}: expected 'compositional' or 'joint'")
        if isinstance(self.guidance_scale, Mapping):
            if self.mode == "joint":
                raise ConfigError("--guidance_scale: joint mode takes one number, not one per condition")
            extra = [n for n in self.guidance_scale if n not in self.conditions]
            if extra:
                raise ConfigError(
                    f"--guidance_scale names {extra} that are not among the requested conditions "
                    f"{list(self.conditions)}"
                )
            for name, w in self.guidance_scale.items():
                _finite(f"guidance_scale[{name!r}]", w, 0.0)
        elif self.guidance_scale is not None:
            _finite("guidance_scale", self.guidance_scale, 0.0)
        if self.regressor_scale is not None:
            _finite("regressor_scale", self.regressor_scale, 0.0)


@dataclass(frozen=True)
class PredictorGuidance:
    """Predictor guidance of a score-diffusion generator: gradients of a noise-aware predictor
    (``guide`` objectives, read from the request's ``predictor_ckpt``) or of any
    :class:`~nag.diffusion.guidance.GuidanceTerm` built in Python (a search's acquisition).

    Args:
        guide: objectives such as ``max valid_acc`` and budgets such as ``latency<=0.004``.
        guide_scale: strength of each ``guide`` term (a ratio to the score's norm with
            ``guide_normalize``).
        guide_normalize: scale each term relative to the score's norm, so ``ode`` and ``pc``
            move samples equally.
        guide_schedule: how each ``guide`` term's strength varies over the sampling time.
        terms: guidance terms built in Python, used as they are.
    """

    guide: Sequence[str] = ()
    guide_scale: float = 1.0
    guide_normalize: bool = True
    guide_schedule: Schedule = "constant"
    terms: Sequence[GuidanceTerm] = ()

    def __post_init__(self) -> None:
        _finite("guide_scale", self.guide_scale, 0.0)
        try:
            _ = self.objectives  # each objective parsed now, so a bad one is refused before anything loads
        except ConfigError as e:
            raise ConfigError(f"--guide: {e}") from None

    @property
    def objectives(self) -> list[tuple[str, str, float | None]]:
        """``(target, direction, limit)`` of each ``guide`` text."""
        if not self.guide:
            return []
        from nag.diffusion.guidance import parse_objective  # torch: only when there is something to parse

        return [parse_objective(text) for text in self.guide]


@dataclass(frozen=True)
class DeviceBudget:
    """Architectures for a new device: a latency predictor meta-trained on the benchmark's
    device tables, adapted to ``device_table``, keeps what it predicts within ``budget``.

    Args:
        device_table: a CSV of ``arch,latency`` rows measured on the device (5 or more; 10 or
            more for tight intervals).
        budget: ``latency<=B`` in the table's unit.
        select: distinct predicted-feasible architectures returned, best first.
        feasible_prob: the least ``P(latency <= B)`` under the adapted predictor.
        latency_guidance: strength of the budget's own guidance term inside a score-diffusion
            sampler (default 2 on fixed-topology spaces, else 0: the budget only filters).
        min_rows: the fewest measured rows the table may have (default
            ``nag.hardware.tables.MIN_ROWS``).
    """

    device_table: str | Path
    budget: str | float
    select: int = 100
    feasible_prob: float = FEASIBLE_PROB
    latency_guidance: float | None = None
    min_rows: int | None = None

    def __post_init__(self) -> None:
        if self.select < 1:
            raise ConfigError(f"--select={self.select}: ask for at least one architecture")
        if not 0.0 < self.feasible_prob < 1.0:
            raise ConfigError(
                f"--feasible_prob={self.feasible_prob}: the feasibility probability must be in (0, 1), e.g. 0.9"
            )
        if self.latency_guidance is not None and not (
            math.isfinite(self.latency_guidance) and self.latency_guidance >= 0
        ):
            raise ConfigError(
                f"--latency_guidance={self.latency_guidance:g}: a strength >= 0 (0 leaves the budget to the filter)"
            )
        if not Path(self.device_table).is_file():
            raise ConfigError(f"--device_table {str(self.device_table)!r}: no such file; pass the CSV you measured")
        _ = self.limit  # a bad budget is refused before anything loads

    @property
    def limit(self) -> Budget:
        from nag.hardware.tables import parse_budget

        return parse_budget(self.budget)


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one call of :func:`nag.generation.generate` is asked: the sampling settings
    and, optionally, conditions, predictor guidance and a device budget. ``predictor_ckpt`` is
    a trained ``PredictorModule`` of the space: guidance reads its gradients, the device path
    ranks by its first target, and ``nag generate`` lists its predictions."""

    sampling: Sampling = field(default_factory=Sampling)
    conditioning: Conditioning | None = None
    guidance: PredictorGuidance | None = None
    device: DeviceBudget | None = None
    predictor_ckpt: str | Path | None = None

    def __post_init__(self) -> None:
        if self.guidance is not None and self.guidance.guide and self.predictor_ckpt is None:
            raise ConfigError(
                "--guide needs --predictor_ckpt: a PredictorModule trained with "
                "model.init_args.noise_aware: true on the generator's SDE"
            )
        if self.predictor_ckpt is not None and not Path(self.predictor_ckpt).is_file():
            raise ConfigError(f"--predictor_ckpt {str(self.predictor_ckpt)!r}: no such file")

    @property
    def num_samples(self) -> int:
        """Architectures drawn (the most drawn on the device path)."""
        if self.sampling.num_samples is not None:
            return self.sampling.num_samples
        return DRAWS_PER_SELECTED * self.device.select if self.device is not None else 1000

    @classmethod
    def from_flags(cls, **flags: Any) -> GenerationRequest:
        """The request ``nag generate``'s flat flags describe (:data:`FLAGS`, one name each; a
        flag left at ``None`` is not given). Knobs of a mode that is not asked for are refused:
        they would do nothing."""
        known = [name for names in FLAGS.values() for name in names] + ["predictor_ckpt"]
        unknown = sorted(set(flags) - set(known))
        if unknown:
            raise ConfigError(f"{unknown}: not options of a generation request; use {', '.join(known)}")
        given = {name: value for name, value in flags.items() if value is not None}

        def part(kind: type) -> dict[str, Any]:
            return {name: given[name] for name in FLAGS[kind] if name in given}

        conditioning, device = part(Conditioning), part(DeviceBudget)
        if ("device_table" in device) != ("budget" in device):
            raise ConfigError(
                "--device_table and --budget go together: pass the CSV measured on your device and a budget "
                "such as --budget 'latency<=5.0'"
            )
        for kind, owner, values in ((Conditioning, "conditions", conditioning), (DeviceBudget, "device_table", device)):
            changed = [name for name, value in values.items() if value != flag_spec(kind, name)[1]]
            if not values.get(owner) and changed:
                name = changed[0]
                raise ConfigError(f"--{name}={values[name]}: it applies with --{owner}; give --{owner} or drop it")
        guidance = PredictorGuidance(**part(PredictorGuidance))  # checked even when unused
        return cls(
            Sampling(**part(Sampling)),
            Conditioning(**conditioning) if conditioning.get("conditions") else None,
            guidance if guidance.guide or not guidance.guide_normalize else None,  # it also scales the budget's term
            DeviceBudget(**device) if "device_table" in device else None,
            given.get("predictor_ckpt"),
        )


#: The fields of each part that ``nag generate`` sets, in the order its ``--help`` shows them
#: (``terms``, ``guide_schedule`` and ``min_rows`` are set from Python only).
FLAGS: dict[type, tuple[str, ...]] = {
    Sampling: ("num_samples", "seed", "sampler", "steps", "pc_snr", "spacing", "batch_size", "compile"),
    Conditioning: ("conditions", "guidance_scale", "mode", "extrapolate", "regressor_scale"),
    PredictorGuidance: ("guide", "guide_scale", "guide_normalize"),
    DeviceBudget: ("device_table", "budget", "select", "feasible_prob", "latency_guidance"),
}


def flag_spec(kind: type, name: str) -> tuple[Any, Any]:
    """The type and default of the flag of ``kind``'s field ``name``, read from the dataclass
    itself (a field without a default is an optional flag), so both are written once."""
    found = next(f for f in fields(kind) if f.name == name)
    annotation = eval(found.type, globals())  # the dataclasses' annotations are strings (PEP 563)
    if found.default is not MISSING:
        return annotation, found.default
    return annotation | None, None
