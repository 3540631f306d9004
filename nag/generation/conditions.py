"""What a conditional generator is asked for: :class:`Conditions`, the user's value type."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from nag.nn.conditions import RawValue, check_conditions, normalize_conditions


class Conditions(Mapping[str, RawValue]):
    """Target values by name, in the benchmark's raw units (accuracy 94.0, latency 2.1 ms),
    one value for every sample or one per sample. A plain mapping is accepted wherever a
    ``Conditions`` is.

    :meth:`normalize` uses the training statistics a checkpoint stores
    (``data_spec["target_stats"]``, written by the datamodule), so sampling encodes a
    condition exactly as training did, and refuses values outside the training split's range,
    where the model's behaviour is undefined, unless ``extrapolate``; the models themselves
    call the same functions of :mod:`nag.nn.conditions`.
    """

    def __init__(self, values: Mapping[str, RawValue] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> RawValue:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Conditions({self._values!r})"

    def checked(
        self,
        names: Sequence[str],
        ranges: Mapping[str, tuple[float, float]],
        num_samples: int,
        extrapolate: bool = False,
    ) -> torch.Tensor:
        """Raw values ``[S, C]`` over the model's condition ``names`` (:func:`check_conditions`)."""
        return check_conditions(self, names, ranges, num_samples, extrapolate)

    def normalize(
        self,
        names: Sequence[str],
        stats: Mapping[str, Mapping[str, float]],
        num_samples: int,
        extrapolate: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``values [S, C]`` and ``given [C]`` (:func:`normalize_conditions`)."""
        return normalize_conditions(self, names, stats, num_samples, extrapolate)
