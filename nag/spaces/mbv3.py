"""The once-for-all MobileNetV3 space (OFA, Cai et al. 2020): 5 stages of 2-4 inverted-residual
layers, each with its own kernel size and expand ratio.

Architecture value: a tuple of 5 stages, each a tuple of ``(kernel, expand)`` pairs for its
*active* layers, so a stage's depth is its length. OFA stores every subnet as 20 kernel
sizes, 20 expand ratios and 5 depths, where slots past a stage's depth are ignored; this value
keeps only what the subnet computes, so equal values are equal networks.

String form (``to_string``/``from_string``, the CSV columns joined)::

    ks=7-5-0-0-7-7-0-0-...|e=6-4-0-0-6-3-0-0-...|d=2-2-2-2-3

20 kernel sizes, 20 expand ratios (stage-major, 4 slots per stage) and 5 depths. The canonical
form writes inactive slots as ``0``; ``from_string`` ignores whatever integer they hold, as OFA
does, so strings built from the raw CSV columns parse too.

Graph form: a fixed chain ``input -> slot 1 -> ... -> slot 20 -> output`` whose slot labels
are ``k<kernel>_e<expand>`` for active layers and ``skip`` for the slots past the stage depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nag.errors import InvalidArchitecture
from nag.spaces.base import SearchSpace
from nag.spaces.mbv3_net import INPUT_SHAPE, MBV3Network

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
NUM_STAGES = 5
MAX_DEPTH = max(DEPTHS)
NUM_SLOTS = NUM_STAGES * MAX_DEPTH

Layer = tuple[int, int]
MBV3Arch = tuple[tuple[Layer, ...], ...]

_LAYER_OPS: dict[str, Layer] = {f"k{k}_e{e}": (k, e) for k in KERNELS for e in EXPANDS}
_FORMAT = "'ks=<20 kernel sizes>|e=<20 expand ratios>|d=<5 depths>' with '-' between numbers"


def _choices(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))


class MBV3Space(SearchSpace[MBV3Arch]):
    """OFA MobileNetV3 subnets as fixed 22-node chains; depth is carried by ``skip`` ops."""

    name = "ofa_mbv3"
    input_shape = INPUT_SHAPE
    ops = ("input", *_LAYER_OPS, "skip", "output")
    max_nodes = NUM_SLOTS + 2
    fixed_topology = True

    # --- identity ---------------------------------------------------------------------
    def validate(self, arch: MBV3Arch) -> MBV3Arch:
        if not isinstance(arch, tuple) or len(arch) != NUM_STAGES:
            raise InvalidArchitecture(
                f"{self.name}: expected a tuple of {NUM_STAGES} stages, each a tuple of "
                f"(kernel, expand) pairs, got {arch!r}; build one with from_string() or from_ofa()"
            )
        for s, stage in enumerate(arch, 1):
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
        return arch

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
    def from_ofa(self, ks: Sequence[int], e: Sequence[int], d: Sequence[int]) -> MBV3Arch:
        """Build from OFA's raw ``ks``/``e`` (20 each) and ``d`` (5) lists; values in slots
        past a stage's depth are ignored, as the OFA supernet ignores them."""
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
        return self.validate(tuple(stages))

    def to_ofa(self, arch: MBV3Arch) -> tuple[list[int], list[int], list[int]]:
        """OFA's ``(ks, e, d)`` lists with inactive slots set to 0 (the canonical filling)."""
        self.validate(arch)
        ks, e = [0] * NUM_SLOTS, [0] * NUM_SLOTS
        for s, stage in enumerate(arch):
            for i, (kernel, expand) in enumerate(stage):
                ks[s * MAX_DEPTH + i], e[s * MAX_DEPTH + i] = kernel, expand
        return ks, e, [len(stage) for stage in arch]

    # --- strings ----------------------------------------------------------------------
    def to_string(self, arch: MBV3Arch) -> str:
        ks, e, d = self.to_ofa(arch)
        return "|".join(f"{label}={'-'.join(map(str, v))}" for label, v in (("ks", ks), ("e", e), ("d", d)))

    def from_string(self, text: str) -> MBV3Arch:
        parts = text.strip().split("|") if isinstance(text, str) else []
        fields = [p.split("=", 1) for p in parts]
        if [f[0].strip() for f in fields] != ["ks", "e", "d"] or any(len(f) != 2 for f in fields):
            raise InvalidArchitecture(f"{self.name}: cannot parse {text!r}; expected {_FORMAT}")
        try:
            ks, e, d = ([int(v) for v in f[1].split("-")] for f in fields)
        except ValueError:
            raise InvalidArchitecture(
                f"{self.name}: {text!r} holds a value that is not a whole number; expected {_FORMAT}"
            ) from None
        return self.from_ofa(ks, e, d)

    # --- graph form -------------------------------------------------------------------
    def to_graph(self, arch: MBV3Arch) -> tuple[list[str], np.ndarray]:
        self.validate(arch)
        labels = ["input"]
        for stage in arch:
            labels += [f"k{k}_e{e}" for k, e in stage] + ["skip"] * (MAX_DEPTH - len(stage))
        labels.append("output")
        return labels, self._chain()

    def from_graph(self, labels: Sequence[str], adjacency: np.ndarray) -> MBV3Arch:
        labels = list(labels)
        if len(labels) != self.max_nodes or labels[0] != "input" or labels[-1] != "output":
            raise InvalidArchitecture(
                f"{self.name}: expected {self.max_nodes} node labels 'input', 20 layer slots, 'output'; got {labels}"
            )
        adjacency = np.asarray(adjacency)
        if not np.array_equal(adjacency != 0, self._chain()):
            raise InvalidArchitecture(
                f"{self.name}: the adjacency must be the fixed chain A[i, i+1] = 1 over "
                f"{self.max_nodes} nodes; got edges {np.argwhere(adjacency != 0).tolist()}"
            )
        stages = []
        for s in range(NUM_STAGES):
            slot_labels = labels[1 + s * MAX_DEPTH : 1 + (s + 1) * MAX_DEPTH]
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
        return tuple(stages)

    def allowed_ops(self) -> torch.Tensor:
        """Input, per stage two layer slots then two that may also be ``skip`` (depth 2 to 4), output."""
        stage = [set(_LAYER_OPS)] * DEPTHS[0] + [{*_LAYER_OPS, "skip"}] * (MAX_DEPTH - DEPTHS[0])
        return self.allowed_table([{"input"}, *stage * NUM_STAGES, {"output"}])

    def project(self, x: torch.Tensor, a: torch.Tensor, node_mask: torch.Tensor | None = None) -> MBV3Arch:
        """The nearest subnet on the fixed chain: per stage the depth whose active slots' best
        layer scores plus its trailing slots' ``skip`` scores sum highest, and each active slot's
        best layer (skips may only end a stage)."""
        ops, _, _ = self.soft_scores(x, a, node_mask)
        layers = ops[:, [self.op_index(op) for op in _LAYER_OPS]]
        skip = ops[:, self.op_index("skip")]
        choices = list(_LAYER_OPS.values())
        stages = []
        for s in range(NUM_STAGES):
            slots = slice(1 + s * MAX_DEPTH, 1 + (s + 1) * MAX_DEPTH)
            best, skips = layers[slots].max(-1), skip[slots]
            depth = DEPTHS[int(np.argmax([best[:d].sum() + skips[d:].sum() for d in DEPTHS]))]
            stages.append(tuple(choices[i] for i in layers[slots][:depth].argmax(-1)))
        return self.validate(tuple(stages))

    def _chain(self) -> np.ndarray:
        return np.eye(self.max_nodes, k=1, dtype=np.int64)

    # --- networks -----------------------------------------------------------------------
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
        HELP latency table timed, for ImageNet inputs of any resolution (224 by default)."""
        return MBV3Network(
            self.validate(arch),
            num_classes=num_classes,
            in_channels=in_channels,
            width_mult=width_mult,
            dropout=dropout,
        )

    # --- neighbourhoods ----------------------------------------------------------------
    def neighbours(self, arch: MBV3Arch) -> list[MBV3Arch]:
        """One active layer's kernel or expand ratio changed, or one stage one layer deeper (a
        copy of its last layer, as OFA's elastic depth keeps the slot's settings) or shallower.
        Every edit changes the value, and values are canonical, so all are distinct."""
        self.validate(arch)
        out: list[MBV3Arch] = []

        def with_stage(s: int, stage: tuple[Layer, ...]) -> MBV3Arch:
            return (*arch[:s], stage, *arch[s + 1 :])

        for s, stage in enumerate(arch):
            for i, (kernel, expand) in enumerate(stage):
                layers = [(k, expand) for k in KERNELS if k != kernel] + [(kernel, e) for e in EXPANDS if e != expand]
                out += [with_stage(s, (*stage[:i], layer, *stage[i + 1 :])) for layer in layers]
            if len(stage) < DEPTHS[-1]:
                out.append(with_stage(s, (*stage, stage[-1])))
            if len(stage) > DEPTHS[0]:
                out.append(with_stage(s, stage[:-1]))
        return out

    # --- populations ------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> list[MBV3Arch]:
        """Uniform per-slot kernel and expand ratio and per-stage depth, as OFA's
        ``sample_active_subnet`` draws them."""
        ks = rng.choice(KERNELS, size=(n, NUM_SLOTS))
        e = rng.choice(EXPANDS, size=(n, NUM_SLOTS))
        d = rng.choice(DEPTHS, size=(n, NUM_STAGES))
        return [self.from_ofa(ks[i].tolist(), e[i].tolist(), d[i].tolist()) for i in range(n)]
