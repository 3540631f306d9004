"""The one entry point that runs a :class:`~nag.generation.request.GenerationRequest`:
``nag generate``, the Python API and the search strategies all come through here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nag.benchmarks.base import Benchmark
from nag.diffusion.guidance import GuidanceTerm, check_same_state, predictor_term
from nag.errors import ConfigError
from nag.generation.device import generate_for_device
from nag.generation.generated_set import GeneratedSet
from nag.generation.generator import Generator
from nag.generation.request import GenerationRequest
from nag.hardware.guidance import LATENCY_GUIDANCE
from nag.hardware.meta_training import CACHE_DIR, meta_trained
from nag.hardware.selection import DeviceSelection, Scores, predictor_scores
from nag.hardware.tables import FEW_ROWS, MIN_ROWS, read_device_table
from nag.io.checkpoints import load_module
from nag.lightning_modules.predictor import PredictorModule
from nag.spaces.base import Arch, SearchSpace


def generate(
    generator: Generator,
    request: GenerationRequest,
    *,
    predictor: PredictorModule | None = None,
    benchmark: Benchmark | None = None,
    accuracy: Scores | None = None,
    pool: Sequence[Arch] = (),
    progress: bool = False,
    cache_dir: str = str(CACHE_DIR),
) -> GeneratedSet:
    """Run ``request`` on ``generator``: the sampling settings go to the generator, conditions
    and guidance steer it, and a device budget keeps the best predicted-feasible architectures
    (meta-training a latency predictor on ``benchmark``'s device tables once, cached under
    ``cache_dir``). ``predictor`` is the request's ``predictor_ckpt`` already loaded; it is read
    from the file when not given. A device's feasible architectures are ranked by the
    predictor's first target, else by ``accuracy`` (``nag generate`` passes
    :func:`~nag.generation.accuracy_ranker.default_ranker` of the config's data), else by how
    often the generator drew them. ``pool``: known architectures (``nag generate`` passes the
    config's training split) that compete with the draws for a device's budget; each returned
    row's ``times_sampled`` says whether the generator drew it."""
    sampling, conditioning = request.sampling, request.conditioning
    generator = _configured(generator, request)
    if predictor is None and request.predictor_ckpt is not None:
        predictor = load_module(
            PredictorModule, request.predictor_ckpt, generator.space, "--predictor_ckpt", _device_of(generator)
        )
    terms = _guidance_terms(request, predictor, generator)
    conditions = conditioning.conditions if conditioning is not None else None
    if request.device is None:
        return generator.sample(
            request.num_samples,
            seed=sampling.seed,
            steps=sampling.steps,
            conditions=conditions,
            guidance=terms or None,
            progress=progress,
        )
    budget = request.device
    if benchmark is None:
        raise ConfigError("--device_table: the config's data has no benchmark with device tables to meta-train on")
    rows = MIN_ROWS if budget.min_rows is None else budget.min_rows
    device = read_device_table(budget.device_table, generator.space, min_rows=rows)
    meta, _ = meta_trained(benchmark, seed=sampling.seed, cache_dir=cache_dir)
    strength = budget.latency_guidance
    if strength is None:
        strength = LATENCY_GUIDANCE if generator.supports_guidance and generator.space.fixed_topology else 0.0
    selection = generate_for_device(
        generator,
        device,
        budget.limit,
        budget.select,
        predictor=meta,
        accuracy=predictor_scores(predictor, generator.space) if predictor is not None else accuracy,
        threshold=budget.feasible_prob,
        conditions=conditions,
        seed=sampling.seed,
        steps=sampling.steps,
        max_draws=request.num_samples,
        guidance=terms,
        latency_guidance=strength,
        pool=pool,
        progress=progress,
    )
    limit = budget.limit
    if predictor is not None:
        ranking = f"ranked by --predictor_ckpt's predicted {predictor.targets[0]}"
    elif accuracy is not None:
        ranking = getattr(accuracy, "description", "ranked by the given accuracy scores")
    else:
        ranking = "ordered by how often the generator drew them (no accuracy target to rank by)"
    description = (
        f"device table {device.path} ({len(device)} measured); meta-trained on "
        f"{len(meta.sources)} {type(benchmark).__name__} device tables; budget {limit}; "
        f"feasible = P(latency <= {limit.value:g}) >= {budget.feasible_prob:g}"
        + (f"; the budget guides sampling (strength {strength:g})" if strength > 0 else "")
        + f"; candidates: {selection.drawn} drawn"
        + (f" and {len(pool)} known (the config's training split)" if pool else "")
        + f"; {ranking}"
        + (
            f"; only {len(device)} measured: below {FEW_ROWS} the latency intervals are wide and fewer "
            "architectures pass; measure more for a tighter selection"
            if len(device) < FEW_ROWS
            else ""
        )
        + _shortfall(selection, budget.select, generator.space)
    )
    return GeneratedSet(
        list(selection.archs),
        [None] * len(selection.archs),
        summary=selection.summary,
        rows=selection.rows,
        description=description,
    )


def _shortfall(selection: DeviceSelection, asked: int, space: SearchSpace) -> str:
    """Why fewer than ``asked`` came back, and which architectures to measure next."""
    if len(selection.rows) >= asked:
        return ""
    found = "none" if not selection.rows else f"only {len(selection.rows)} of {asked}"
    advice = "; measure these next on the device and add them to the table, or loosen the budget or --feasible_prob: "
    return f"; {found} of {selection.distinct} distinct candidates predicted within the budget" + (
        advice + " ".join(repr(space.to_string(a)) for a in selection.measure_next) if selection.measure_next else ""
    )


def _device_of(generator: Generator) -> torch.device | str:
    return getattr(getattr(generator, "model", None), "device", "cpu")


def _configured(generator: Generator, request: GenerationRequest) -> Generator:
    """``generator`` with the request's sampling settings (a trained model's; other generators
    take none)."""
    sampling, conditioning, guidance = request.sampling, request.conditioning, request.guidance
    settings: dict[str, Any] = {"sampler": sampling.sampler, "pc_snr": sampling.pc_snr, "spacing": sampling.spacing}
    if sampling.compile:
        settings["compile"] = True
    if conditioning is not None:
        settings.update(
            guidance_scale=conditioning.guidance_scale,
            mode=conditioning.mode,
            extrapolate=conditioning.extrapolate,
            regressor_scale=conditioning.regressor_scale,
        )
    steered = guidance is not None or (request.device is not None and generator.supports_guidance)
    if steered:
        settings["normalize_guidance"] = guidance.guide_normalize if guidance is not None else True
    settings = {k: v for k, v in settings.items() if v is not None}
    with_settings = getattr(generator, "with_settings", None)
    if with_settings is not None:
        return with_settings(**settings, batch_size=sampling.batch_size)
    named = [k for k in settings if k not in ("normalize_guidance",)]
    if named:
        raise ConfigError(f"{', '.join(named)}: {generator!r} takes no sampling settings; drop them")
    return generator


def _guidance_terms(
    request: GenerationRequest, predictor: PredictorModule | None, generator: Generator
) -> list[GuidanceTerm]:
    """The request's ``guide`` objectives as terms on ``predictor``'s targets, then its own terms."""
    guidance = request.guidance
    if guidance is None:
        return []
    if (guidance.guide or guidance.terms) and not generator.supports_guidance:
        raise ConfigError(
            f"--guide: {generator!r} takes no predictor guidance; use a score-diffusion generator, "
            "or --conditions with a conditional one"
        )
    terms: list[GuidanceTerm] = []
    if guidance.guide:
        if predictor is None:
            raise ConfigError("--guide needs --predictor_ckpt")
        if not predictor.hparams.noise_aware:
            raise ConfigError(
                "--predictor_ckpt: guidance reads noisy graphs; train the predictor with "
                "model.init_args.noise_aware: true"
            )
        model = getattr(generator, "model", None)
        if getattr(model, "sde", None) is not None:
            check_same_state(model, predictor)
        terms = [
            predictor_term(
                predictor, target, direction, limit, scale=guidance.guide_scale, schedule=guidance.guide_schedule
            )
            for target, direction, limit in guidance.objectives
        ]
    return [*terms, *guidance.terms]
