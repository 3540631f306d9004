"""The once-for-all MobileNetV3 space (OFA, Cai et al. 2020): 5 stages of 2-4 inverted-residual
layers, each with its own kernel size and expand ratio.

Architecture value: :class:`MBV3Subnet`, the 5 stages (each a tuple of ``(kernel, expand)``
pairs for its *active* layers, so a stage's depth is its length) and the input resolution.
OFA searches the resolution with the layers (a smaller input buys a deeper, wider network under
the same latency), so it is part of the architecture; the space's ``resolutions`` are the sides
it may take (OFA's search: 160 to 224 in steps of 16). OFA stores every subnet as 20 kernel
sizes, 20 expand ratios and 5 depths, where slots past a stage's depth are ignored; this value
keeps only what the subnet computes, so equal values are equal networks.

String form (``to_string``/``from_string``, the CSV columns joined)::

    ks=7-5-0-0-7-7-0-0-...|e=6-4-0-0-6-3-0-0-...|d=2-2-2-2-3|r=224

20 kernel sizes, 20 expand ratios (stage-major, 4 slots per stage), 5 depths and the resolution.
The canonical form writes inactive slots as ``0``; ``from_string`` ignores whatever integer they
hold, as OFA does, so strings built from the raw CSV columns parse too.

Graph form: a fixed chain ``input -> resolution -> slot 1 -> ... -> slot 20 -> output``: the
resolution node is labelled ``r<side>``, the slots ``k<kernel>_e<expand>`` for active layers
and ``skip`` for the slots past the stage depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from nag.errors import ConfigError, InvalidArchitecture
from nag.spaces.base import SearchSpace
from nag.spaces.mbv3_net import INPUT_SHAPE, MBV3Network

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
NUM_STAGES = 5
MAX_DEPTH = max(DEPTHS)
NUM_SLOTS = NUM_STAGES * MAX_DEPTH
#: The input sides OFA's search draws (its accuracy predictor and Note10 tables cover them).
RESOLUTIONS: tuple[int, ...] = (160, 176, 192, 208, 224)
#: Graph position of the first layer slot (after ``input`` and the resolution node).
FIRST_SLOT = 2

Layer = tuple[int, int]
Stages = tuple[tuple[Layer, ...], ...]


class MBV3Subnet(NamedTuple):
    """One subnet: what each stage's active layers are, and the input side it runs at."""

    stages: Stages
    resolution: int


MBV3Arch = MBV3Subnet

_LAYER_OPS: dict[str, Layer] = {f"k{k}_e{e}": (k, e) for k in KERNELS for e in EXPANDS}
_FORMAT = "'ks=<20 kernel sizes>|e=<20 expand ratios>|d=<5 depths>|r=<resolution>' with '-' between numbers"


def _choices(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))


class MBV3Space(SearchSpace[MBV3Arch]):
    """OFA MobileNetV3 subnets as fixed 23-node chains: the resolution, then 20 layer slots whose
    trailing ``skip`` ops carry each stage's depth."""

    name = "ofa_mbv3"
    input_shape = INPUT_SHAPE
    max_nodes = NUM_SLOTS + 3
    fixed_topology = True
    stop_op = "skip"

    def __init__(self, resolutions: Sequence[int] = RESOLUTIONS) -> None:
        sides = sorted({int(r) for r in resolutions}) if resolutions else []
        if not sides or sides[0] < 32 or any(int(r) != r for r in resolutions):
            raise ConfigError(
                f"MBV3Space(resolutions={list(resolutions)!r}): give the input sides to search, "
                f"whole numbers of at least 32, e.g. {list(RESOLUTIONS)}"
            )
        self.resolutions: tuple[int, ...] = tuple(sides)
        self._res_ops = {f"r{r}": r for r in self.resolutions}
        self.ops = ("input", *self._res_ops, *_LAYER_OPS, "skip", "output")

    # --- identity ---------------------------------------------------------------------
    def validate(self, arch: MBV3Arch) -> MBV3Arch:
        if not isinstance(arch, tuple) or len(arch) != 2 or not isinstance(arch[0], tuple):
            raise InvalidArchitecture(
                f"{self.name}: expected MBV3Subnet(stages, resolution), got {arch!r}; build one with "
                "from_string() or from_ofa()"
            )
        stages, resolution = arch
        if not isinstance(resolution, (int, np.integer)) or resolution not in self.resolutions:
            raise InvalidArchitecture(
                f"{self.name}: resolution {resolution!r} is not one this space searches; "
                f"expected one of {_choices(self.resolutions)}"
            )
        if len(stages) != NUM_STAGES:
            raise InvalidArchitecture(
                f"{self.name}: expected {NUM_STAGES} stages, each a tuple of (kernel, expand) pairs, got {stages!r}"
            )
        for s, stage in enumerate(stages, 1):
            if not isinstance(stage, tuple) or len(stage) not in DEPTHS:
                raise InvalidArchitecture(
                    f"{self.name}: stage {s} is {stage!r}; expected a tuple of "
                    f"{DEPTHS[0]} to {DEPTHS[-1]} (kernel, expand) pairs, so add or drop layers"
                )
            for i, layer in enumerate(stage, 1):
                if not isinstance(layer, tuple) or len(layer) != 2:
                    raise InvalidArchitecture(
                        f"{self.name}: stage {s} layer {i} is {layer!r}; expected a "
                        "(kernel, expand) pair such as (5, 4)"
                    )
                self._check_layer(s, i, *layer)
        return MBV3Subnet(stages, int(resolution))

    def _check_layer(self, stage: int, layer: int, kernel: int, expand: int) -> None:
        if kernel not in KERNELS:
            raise InvalidArchitecture(
                f"{self.name}: stage {stage} layer {layer} has kernel size {kernel!r}; "
                f"expected one of {_choices(KERNELS)}"
            )
        if expand not in EXPANDS:
            raise InvalidArchitecture(
                f"{self.name}: stage {stage} layer {layer} has expand ratio {expand!r}; "
                f"expected one of {_choices(EXPANDS)}"
            )

    def key(self, arch: MBV3Arch) -> str:
        """The canonical string: inactive slots are zero, so only the active layers count."""
        return self.to_string(arch)

    # --- OFA lists ----------------------------------------------------------------------
    def from_ofa(self, ks: Sequence[int], e: Sequence[int], d: Sequence[int], r: int) -> MBV3Arch:
        """Build from OFA's raw ``ks``/``e`` (20 each), ``d`` (5) lists and resolution ``r``; values
        in slots past a stage's depth are ignored, as the OFA supernet ignores them."""
        for label, values, size in (("ks", ks, NUM_SLOTS), ("e", e, NUM_SLOTS), ("d", d, NUM_STAGES)):
            if len(values) != size:
                raise InvalidArchitecture(
                    f"{self.name}: {label} has {len(values)} values {list(values)}; expected {size}"
                )
        stages = []
        for s, depth in enumerate(d):
            if depth not in DEPTHS:
                raise InvalidArchitecture(
                    f"{self.name}: stage {s + 1} has depth {depth!r} in d={list(d)}; expected one of {_choices(DEPTHS)}"
                )
            slots = range(s * MAX_DEPTH, s * MAX_DEPTH + int(depth))
            stages.append(tuple((int(ks[j]), int(e[j])) for j in slots))
        return self.validate(MBV3Subnet(tuple(stages), int(r)))

    def to_ofa(self, arch: MBV3Arch) -> tuple[list[int], list[int], list[int], int]:
        """OFA's ``(ks, e, d, r)`` with inactive slots set to 0 (the canonical filling)."""
        stages, resolution = self.validate(arch)
        ks, e = [0] * NUM_SLOTS, [0] * NUM_SLOTS
        for s, stage in enumerate(stages):
            for i, (kernel, expand) in enumerate(stage):
                ks[s * MAX_DEPTH + i], e[s * MAX_DEPTH + i] = kernel, expand
        return ks, e, [len(stage) for stage in stages], resolution

    # --- strings ----------------------------------------------------------------------
    def to_string(self, arch: MBV3Arch) -> str:
        ks, e, d, r = self.to_ofa(arch)
        lists = "|".join(f"{label}={'-'.join(map(str, v))}" for label, v in (("ks", ks), ("e", e), ("d", d)))
        return f"{lists}|r={r}"

    def from_string(self, text: str) -> MBV3Arch:
        parts = text.strip().split("|") if isinstance(text, str) else []
        fields = [p.split("=", 1) for p in parts]
        if [f[0].strip() for f in fields] != ["ks", "e", "d", "r"] or any(len(f) != 2 for f in fields):
            raise InvalidArchitecture(f"{self.name}: cannot parse {text!r}; expected {_FORMAT}")
        try:
            ks, e, d, r = ([int(v) for v in f[1].split("-")] for f in fields)
        except ValueError:
            raise InvalidArchitecture(
                f"{self.name}: {text!r} holds a value that is not a whole number; expected {_FORMAT}"
            ) from None
        if len(r) != 1:
            raise InvalidArchitecture(f"{self.name}: {text!r} has {len(r)} resolutions; expected one, e.g. r=224")
        return self.from_ofa(ks, e, d, r[0])

    # --- graph form -------------------------------------------------------------------
    def to_graph(self, arch: MBV3Arch) -> tuple[list[str], np.ndarray]:
        stages, resolution = self.validate(arch)
        labels = ["input", f"r{resolution}"]
        for stage in stages:
            labels += [f"k{k}_e{e}" for k, e in stage] + ["skip"] * (MAX_DEPTH - len(stage))
        labels.append("output")
        return labels, self._chain()

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> MBV3Arch:
        labels = list(labels)
        if len(labels) != self.max_nodes or labels[0] != "input" or labels[-1] != "output":
            raise InvalidArchitecture(
                f"{self.name}: expected {self.max_nodes} node labels 'input', the resolution, 20 layer slots, "
                f"'output'; got {labels}"
            )
        adjacency = np.asarray(adjacency)
        if not np.array_equal(adjacency != 0, self._chain()):
            raise InvalidArchitecture(
                f"{self.name}: the adjacency must be the fixed chain A[i, i+1] = 1 over "
                f"{self.max_nodes} nodes; got edges {np.argwhere(adjacency != 0).tolist()}"
            )
        if labels[1] not in self._res_ops:
            raise InvalidArchitecture(
                f"{self.name}: node 1 is {labels[1]!r}; expected the resolution, one of {', '.join(self._res_ops)}"
            )
        stages = []
        for s in range(NUM_STAGES):
            slot_labels = labels[FIRST_SLOT + s * MAX_DEPTH : FIRST_SLOT + (s + 1) * MAX_DEPTH]
            for label in slot_labels:
                if label not in _LAYER_OPS and label != "skip":
                    raise InvalidArchitecture(
                        f"{self.name}: stage {s + 1} has op {label!r}; expected 'skip' or one of "
                        f"{', '.join(_LAYER_OPS)}"
                    )
            depth = slot_labels.index("skip") if "skip" in slot_labels else MAX_DEPTH
            if any(label != "skip" for label in slot_labels[depth:]):
                raise InvalidArchitecture(
                    f"{self.name}: stage {s + 1} has an active layer after 'skip' in {slot_labels}; "
                    "skips may only fill the end of a stage"
                )
            if depth not in DEPTHS:
                raise InvalidArchitecture(
                    f"{self.name}: stage {s + 1} has {depth} active layers in {slot_labels}; "
                    f"expected {DEPTHS[0]} to {DEPTHS[-1]}"
                )
            stages.append(tuple(_LAYER_OPS[label] for label in slot_labels[:depth]))
        return MBV3Subnet(tuple(stages), self._res_ops[labels[1]])

    def allowed_ops(self) -> torch.Tensor:
        """Input, a resolution, per stage two layer slots then two that may also be ``skip``
        (depth 2 to 4), output."""
        stage = [set(_LAYER_OPS)] * DEPTHS[0] + [{*_LAYER_OPS, "skip"}] * (MAX_DEPTH - DEPTHS[0])
        return self.allowed_table([{"input"}, set(self._res_ops), *stage * NUM_STAGES, {"output"}])

    def stop_runs(self) -> tuple[tuple[int, ...], ...]:
        """Each stage's four slots: the first ``skip`` is where the stage ends (its depth)."""
        first = [FIRST_SLOT + s * MAX_DEPTH for s in range(NUM_STAGES)]
        return tuple(tuple(range(f, f + MAX_DEPTH)) for f in first)

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> MBV3Arch:
        """The nearest subnet on the fixed chain: the best-scoring resolution; per stage the depth
        whose active slots' best layer scores plus its trailing slots' ``skip`` scores sum highest,
        and each active slot's best layer (skips may only end a stage)."""
        ops, _, _ = self.soft_scores(x, a, node_mask)
        sides = list(self._res_ops)
        resolution = self._res_ops[sides[int(ops[1, [self.op_index(op) for op in sides]].argmax())]]
        layers = ops[:, [self.op_index(op) for op in _LAYER_OPS]]
        skip = ops[:, self.op_index("skip")]
        choices = list(_LAYER_OPS.values())
        stages = []
        for s in range(NUM_STAGES):
            slots = slice(FIRST_SLOT + s * MAX_DEPTH, FIRST_SLOT + (s + 1) * MAX_DEPTH)
            best, skips = layers[slots].max(-1), skip[slots]
            depth = DEPTHS[int(np.argmax([best[:d].sum() + skips[d:].sum() for d in DEPTHS]))]
            stages.append(tuple(choices[i] for i in layers[slots][:depth].argmax(-1)))
        return self.validate(MBV3Subnet(tuple(stages), resolution))

    def _chain(self) -> np.ndarray:
        return np.eye(self.max_nodes, k=1, dtype=np.int64)

    # --- networks -----------------------------------------------------------------------
    def input_shape_for(self, arch: MBV3Arch) -> tuple[int, ...]:
        """An image at the subnet's own resolution."""
        side = self.validate(arch).resolution
        return (INPUT_SHAPE[0], side, side)

    def to_module(
        self,
        arch: MBV3Arch,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.2,
        dropout: float = 0.0,
    ) -> torch.nn.Module:
        """The OFA MobileNetV3 subnet of ``arch`` (:class:`~nag.spaces.mbv3_net.MBV3Network`): with
        the defaults, the network of OFA's ``ofa_mbv3_d234_e346_k357_w1.2`` supernet, the one the
        HELP latency table timed. It takes inputs of any side; it is meant for the subnet's own
        resolution (:meth:`input_shape_for`)."""
        return MBV3Network(
            self.validate(arch).stages,
            num_classes=num_classes,
            in_channels=in_channels,
            width_mult=width_mult,
            dropout=dropout,
        )

    # --- neighbourhoods ----------------------------------------------------------------
    def neighbours(self, arch: MBV3Arch) -> list[MBV3Arch]:
        """One active layer's kernel or expand ratio changed, one stage one layer deeper (a copy
        of its last layer, as OFA's elastic depth keeps the slot's settings) or shallower, or the
        next resolution up or down. Every edit changes the value, and values are canonical, so all
        are distinct."""
        stages, resolution = self.validate(arch)
        out: list[MBV3Arch] = []

        def with_stage(s: int, stage: tuple[Layer, ...]) -> MBV3Arch:
            return MBV3Subnet((*stages[:s], stage, *stages[s + 1 :]), resolution)

        for s, stage in enumerate(stages):
            for i, (kernel, expand) in enumerate(stage):
                layers = [(k, expand) for k in KERNELS if k != kernel] + [(kernel, e) for e in EXPANDS if e != expand]
                out += [with_stage(s, (*stage[:i], layer, *stage[i + 1 :])) for layer in layers]
            if len(stage) < DEPTHS[-1]:
                out.append(with_stage(s, (*stage, stage[-1])))
            if len(stage) > DEPTHS[0]:
                out.append(with_stage(s, stage[:-1]))
        at = self.resolutions.index(resolution)
        out += [MBV3Subnet(stages, self.resolutions[j]) for j in (at - 1, at + 1) if 0 <= j < len(self.resolutions)]
        return out

    def crossover(self, a: MBV3Arch, b: MBV3Arch, rng: np.random.Generator) -> MBV3Arch:
        """OFA's crossover: the resolution and each stage's depth from either parent, and each
        active slot's layer from either parent that has the slot (the other one where only one
        does)."""
        a, b = self.validate(a), self.validate(b)
        pick = rng.random(2 + NUM_STAGES * (1 + MAX_DEPTH)) < 0.5
        stages = []
        for s, (left, right) in enumerate(zip(a.stages, b.stages)):
            flips = pick[2 + s * (1 + MAX_DEPTH) :]
            depth = len(left) if flips[0] else len(right)
            layers = []
            for i in range(depth):
                options = [p[i] for p in (left, right) if i < len(p)]
                layers.append(options[0] if len(options) == 1 or flips[1 + i] else options[1])
            stages.append(tuple(layers))
        return MBV3Subnet(tuple(stages), a.resolution if pick[0] else b.resolution)

    # --- populations ------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> list[MBV3Arch]:
        """Uniform per-slot kernel and expand ratio, per-stage depth and resolution, as OFA's
        ``sample_active_subnet`` and its search's random subnets draw them."""
        ks = rng.choice(KERNELS, size=(n, NUM_SLOTS))
        e = rng.choice(EXPANDS, size=(n, NUM_SLOTS))
        d = rng.choice(DEPTHS, size=(n, NUM_STAGES))
        r = rng.choice(self.resolutions, size=n)
        return [self.from_ofa(ks[i].tolist(), e[i].tolist(), d[i].tolist(), int(r[i])) for i in range(n)]

    def __repr__(self) -> str:
        return f"MBV3Space(resolutions={list(self.resolutions)})"
