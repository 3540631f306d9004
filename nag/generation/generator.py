"""The one way to sample architectures: the :class:`Generator` protocol, and the adapter that
makes any trained generator module (score diffusion, discrete diffusion, cell flow) one."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from nag.diffusion.guidance import GuidanceTerm
from nag.errors import ConfigError
from nag.generation.conditions import Conditions
from nag.generation.generated_set import GeneratedSet, decode_samples
from nag.spaces.base import SearchSpace


@runtime_checkable
class Generator(Protocol):
    """Anything that samples architectures of ``space``.

    ``condition_names``: what ``conditions`` may name (empty: unconditional);
    ``supports_guidance``: whether predictor-guidance terms (:mod:`nag.diffusion.guidance`)
    are accepted. ``conditions`` is a :class:`~nag.generation.conditions.Conditions` or any mapping of
    names to raw values. Everything that samples in nag (``nag generate``, the metrics
    callback, transfer and BO proposals, budget and Pareto generation, benchmarks) takes a
    Generator.
    """

    space: SearchSpace
    condition_names: Sequence[str]
    supports_guidance: bool

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        steps: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        guidance: Sequence[GuidanceTerm] | None = None,
        progress: bool = False,
    ) -> GeneratedSet: ...


class ModelGenerator:
    """A trained generator module with the space it was trained on.

    The module draws raw graphs (``sample_graphs``); this class checks the request against
    what the module supports, decodes the graphs (raw validity) and projects them onto the
    space. The keyword settings are the module's own sampling settings, fixed for every call
    (:meth:`with_settings` makes a copy with others); ``None`` leaves the module's default.
    What each means is documented once, in :mod:`nag.generation.request`.
    """

    def __init__(
        self,
        model: Any,
        space: SearchSpace,
        batch_size: int = 1000,
        project: bool = True,
        *,
        sampler: str | None = None,
        pc_snr: float | None = None,
        spacing: str | None = None,
        compile: bool | None = None,
        guidance_scale: float | Mapping[str, float] | None = None,
        mode: str | None = None,
        extrapolate: bool | None = None,
        regressor_scale: float | None = None,
        normalize_guidance: bool | None = None,
    ) -> None:
        if not hasattr(model, "sample_graphs"):
            raise ConfigError(f"model {type(model).__name__} is not a generator (it has no sample_graphs)")
        if compile and not hasattr(model, "sampling_network"):
            raise ConfigError(f"--compile: {type(model).__name__} has no diffusion network to compile; drop it")
        self.model, self.space, self.batch_size, self.project = model, space, batch_size, project
        settings = {
            "sampler": sampler,
            "pc_snr": pc_snr,
            "spacing": spacing,
            "compile": compile,
            "guidance_scale": guidance_scale,
            "mode": mode,
            "extrapolate": extrapolate,
            "regressor_scale": regressor_scale,
            "normalize_guidance": normalize_guidance,
        }
        self.options = {k: v for k, v in settings.items() if v is not None}

    def with_settings(self, batch_size: int | None = None, **settings: Any) -> ModelGenerator:
        """The same model with these sampling settings changed (``None`` keeps the current one)."""
        merged = {**self.options, **{k: v for k, v in settings.items() if v is not None}}
        return ModelGenerator(self.model, self.space, batch_size or self.batch_size, self.project, **merged)

    @property
    def condition_names(self) -> list[str]:
        return list(getattr(self.model, "condition_names", []))

    @property
    def supports_guidance(self) -> bool:
        return bool(getattr(self.model, "supports_guidance", False))

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        steps: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        guidance: Sequence[GuidanceTerm] | None = None,
        progress: bool = False,
    ) -> GeneratedSet:
        """``n`` samples in sampling order; the same seed gives the same samples."""
        kwargs = dict(self.options)
        if conditions:
            if not self.condition_names:
                raise ConfigError(
                    f"--conditions: {type(self.model).__name__} is not a conditional generator; drop --conditions"
                )
            unknown = [c for c in conditions if c not in self.condition_names]
            if unknown:
                raise ConfigError(
                    f"conditions {unknown}: {type(self.model).__name__} was trained with conditions "
                    f"{', '.join(self.condition_names)}; drop or rename them"
                )
            kwargs["conditions"] = Conditions(conditions)
        if (
            "regressor_scale" in kwargs
            and "regressor_scale" not in inspect.signature(self.model.sample_graphs).parameters
        ):
            raise ConfigError(f"--regressor_scale: {type(self.model).__name__} has no regressor guidance; drop it")
        if "pc_snr" in kwargs:
            sample_batch = getattr(self.model, "sample_batch", None)
            if sample_batch is None or "pc_snr" not in inspect.signature(sample_batch).parameters:
                raise ConfigError(f"--pc_snr: {type(self.model).__name__} has no PC sampler; drop it")
        if guidance:
            if not self.supports_guidance:
                raise ConfigError(
                    f"guidance: {type(self.model).__name__} does not take predictor guidance; "
                    "use a score-diffusion generator or drop the guidance terms"
                )
            kwargs["guidance"] = list(guidance)
        was_training = getattr(self.model, "training", False)
        if was_training:
            self.model.eval()
        try:
            graphs = self.model.sample_graphs(
                n, steps=steps, seed=seed, batch_size=self.batch_size, progress=progress, **kwargs
            )
        finally:
            if was_training:
                self.model.train()
        return decode_samples(self.space, graphs, project=self.project)

    def __repr__(self) -> str:
        return f"ModelGenerator({type(self.model).__name__}, {self.space!r})"
