"""Once-for-all MobileNetV3 scored for *any* subnet: ImageNet top-1 and Samsung Note10 latency.

``top1`` is once-for-all's accuracy predictor (an MLP released with OFA) of the ImageNet top-1
(a fraction) a subnet reaches with weights inherited from the w1.2 supernet
(``ofa_mbv3_d234_e346_k357_w1.2``): a prediction, not a trained network's measured accuracy.
``note10_latency`` (ms) is the sum over the subnet's layers of OFA's measured per-layer Note10
latency table, the device model OFA's own ``EvolutionFinder`` searches with. ``flops_M`` is the
network's FLOPs in millions (:func:`nag.nn.count_flops`'s convention), summed per layer the same
way. Latency and FLOPs are known cost models, free to ask; only ``top1`` is a paid label.

The space holds about 1.1e20 subnets (5 resolutions), so there is no table: every metric is
computed on demand (one batched predictor call for many subnets), each at the subnet's own input
resolution (part of :class:`~nag.spaces.mbv3.MBV3Subnet`; the space's resolutions must be ones
the predictor and the Note10 tables cover, 160 to 224 in steps of 16).

The predictor's 128-d input is a one-hot per layer slot (20 slots, 5 stages x 4): 3 kernel-size
slots each (features 0-59), then 3 expand-ratio slots each (60-119), all zero past a stage's
depth, then 8 resolution slots for 112, 128, ..., 224 (120-127).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from pickle import UnpicklingError

import numpy as np
import torch
import yaml
from torch import nn

from nag.benchmarks.base import OnDemandBenchmark, require_file
from nag.errors import ConfigError, DataFileError, UnknownMetric
from nag.nn.flops import count_flops
from nag.spaces.mbv3 import EXPANDS, KERNELS, NUM_SLOTS, RESOLUTIONS, MBV3Arch, MBV3Space, MBV3Subnet
from nag.spaces.mbv3_net import BASE_WIDTHS, STAGE_HSWISH, STAGE_SE, STAGE_STRIDES, MBV3Network, make_divisible

#: The predictor's resolution slots (features 120-127).
PREDICTOR_RESOLUTIONS: tuple[int, ...] = tuple(range(112, 225, 16))
NUM_FEATURES = 2 * 3 * NUM_SLOTS + len(PREDICTOR_RESOLUTIONS)
#: The predictor and the Note10 table were both made for the w1.2 supernet.
WIDTH_MULT = 1.2
METRICS: tuple[str, ...] = ("top1", "note10_latency", "flops_M")

_FLAG = "data.init_args.benchmark.init_args"


def predictor_features(space: MBV3Space, archs: Sequence[MBV3Arch]) -> np.ndarray:
    """The ``[n, 128]`` float32 inputs of OFA's accuracy predictor (layout in the module docstring)."""
    ks = np.zeros((len(archs), NUM_SLOTS), dtype=np.int64)
    e = np.zeros_like(ks)
    side = np.zeros(len(archs), dtype=np.int64)
    for i, arch in enumerate(archs):
        ks[i], e[i], _, side[i] = space.to_ofa(arch)  # inactive slots are 0
    if not np.isin(side, PREDICTOR_RESOLUTIONS).all():
        raise ConfigError(
            f"resolution {int(side[~np.isin(side, PREDICTOR_RESOLUTIONS)][0])} has no slot in OFA's accuracy "
            f"predictor; search resolutions among {', '.join(map(str, PREDICTOR_RESOLUTIONS))}"
        )
    rows, slots = np.nonzero(ks)
    features = np.zeros((len(archs), NUM_FEATURES), dtype=np.float32)
    features[rows, 3 * slots + np.searchsorted(KERNELS, ks[rows, slots])] = 1
    features[rows, 3 * (NUM_SLOTS + slots) + np.searchsorted(EXPANDS, e[rows, slots])] = 1
    features[np.arange(len(archs)), 6 * NUM_SLOTS + np.searchsorted(PREDICTOR_RESOLUTIONS, side)] = 1
    return features


def note10_layer_keys(arch: MBV3Arch) -> list[str]:
    """The Note10 table's key of each layer of ``arch`` at its resolution, in network order: stem
    conv, the fixed first block, every active MBConv, final expand, pooling, feature mix, classifier.
    Keys spell input/output shapes (side x side x channels), so they follow the w1.2 widths."""
    stem, first, *stage_widths, final_expand, feature_mix = (make_divisible(w * WIDTH_MULT) for w in BASE_WIDTHS)
    resolution = arch.resolution
    side = (resolution + 1) // 2

    def block(c_in: int, c_out: int, mid: int, kernel: int, stride: int, skip: bool, se: bool, hs: bool) -> str:
        out = (side - 1) // stride + 1
        return (
            f"expanded_conv-input:{side}x{side}x{c_in}-output:{out}x{out}x{c_out}-expand:{mid}-kernel:{kernel}"
            f"-stride:{stride}-idskip:{int(skip)}-se:{int(se)}-hs:{int(hs)}"
        )

    keys = [
        f"Conv-input:{resolution}x{resolution}x3-output:{side}x{side}x{stem}",
        block(stem, first, stem, 3, 1, True, False, False),
    ]
    width = first
    for layers, c_out, stage_stride, hswish, se in zip(
        arch.stages, stage_widths, STAGE_STRIDES, STAGE_HSWISH, STAGE_SE
    ):
        for i, (kernel, expand) in enumerate(layers):
            stride = stage_stride if i == 0 else 1
            keys.append(block(width, c_out, make_divisible(round(width * expand)), kernel, stride, i > 0, se, hswish))
            side, width = (side - 1) // stride + 1, c_out
    return [
        *keys,
        f"Conv_1-input:{side}x{side}x{width}-output:{side}x{side}x{final_expand}",
        f"AvgPool2D-input:{side}x{side}x{final_expand}-output:1x1x{final_expand}",
        f"Conv_2-input:1x1x{final_expand}-output:1x1x{feature_mix}",
        f"Logits-input:1x1x{feature_mix}-output:1000",
    ]


@cache
def _read_lut(path: Path, stamp: tuple[int, int]) -> dict[str, float]:
    """Layer key -> mean latency (ms) of one table; cached per file version (``stamp``: mtime, size)."""
    try:
        table = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DataFileError(f"{path}: not valid YAML ({type(err).__name__}); re-copy the table") from None
    if not isinstance(table, dict) or not table:
        raise DataFileError(f"{path}: expected OFA's latency table, a mapping of layer keys to mean/std/count")
    means = {}
    for key, entry in table.items():
        try:
            means[str(key)] = float(entry["mean"])
        except (TypeError, KeyError, ValueError):
            raise DataFileError(
                f"{path}: layer {key!r} has no numeric 'mean' (got {entry!r}); re-copy the table"
            ) from None
    return means


@cache
def _layer_flops(resolution: int) -> tuple[float, np.ndarray]:
    """``(fixed, blocks[stage, later, kernel, expand])`` FLOPs (millions) at ``resolution``: the
    layers every subnet has, and each MBConv by its place and choices, counted on built layers
    (the whole network's count is the sum of its layers' counts)."""
    blocks = np.zeros((len(STAGE_STRIDES), 2, len(KERNELS), len(EXPANDS)))
    fixed = 0.0
    for a, kernel in enumerate(KERNELS):
        for b, expand in enumerate(EXPANDS):
            net = MBV3Network((((kernel, expand),) * 2,) * len(STAGE_STRIDES), width_mult=WIDTH_MULT)
            x, counts = torch.zeros(1, 3, resolution, resolution), []
            with torch.no_grad():
                for layer in (net.stem, *net.blocks, net.head):
                    counts.append(count_flops(layer, x.shape[1:]) / 1e6)
                    x = layer(x)
            for stage in range(len(STAGE_STRIDES)):
                blocks[stage, :, a, b] = counts[2 + 2 * stage : 4 + 2 * stage]
            fixed = counts[0] + counts[1] + counts[-1]
    return fixed, blocks


def _load_predictor(path: Path) -> nn.Sequential:
    """OFA's MLP rebuilt here (``nn.Sequential`` indices 0, 2, 4, 6 hold the linear layers)."""
    hidden = 400
    model = nn.Sequential(
        nn.Linear(NUM_FEATURES, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    )
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, TypeError, UnpicklingError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFileError(
            f"{_FLAG}.predictor_path: {str(path)!r} is not OFA's accuracy predictor state dict "
            f"(MLP {NUM_FEATURES}-400-400-400-1): {reason}"
        ) from None
    return model.eval()


class OFAMBV3Benchmark(OnDemandBenchmark[MBV3Arch]):
    """OFA's predicted ImageNet ``top1`` (fraction, higher is better) and Note10 latency (ms) of any
    :class:`MBV3Space` subnet at its input resolution."""

    minimize = frozenset({"note10_latency", "flops_M"})

    def __init__(
        self,
        predictor_path: str | Path,
        lut_dir: str | Path,
        space: MBV3Space | None = None,
    ) -> None:
        self.space = space if space is not None else MBV3Space()
        uncovered = [r for r in self.space.resolutions if r not in RESOLUTIONS]
        if uncovered:
            raise ConfigError(
                f"{_FLAG}.space: resolutions {uncovered} have no Note10 table; "
                f"search resolutions among {', '.join(map(str, RESOLUTIONS))}"
            )
        self.predictor_path = require_file(predictor_path, "predictor_path")
        lut_dir = Path(lut_dir).expanduser()
        self.lut_paths = {r: self._lut_file(lut_dir, r) for r in self.space.resolutions}
        self._latency = {r: self._layer_latencies(r) for r in self.space.resolutions}
        self._predictor = _load_predictor(self.predictor_path)

    def _layer_latencies(self, resolution: int) -> tuple[float, np.ndarray]:
        """``(fixed, blocks)`` at ``resolution``: the ms of the layers every subnet has (stem, first
        block, head) and ``blocks[stage, later, kernel, expand]`` of an MBConv by its place (a
        stage's first, striding layer or a later one) and choices: every layer's key, looked up
        once, so a missing one fails here, naming it, and a batch sums arrays."""
        path = self.lut_paths[resolution]
        stat = path.stat()
        table = _read_lut(path, (stat.st_mtime_ns, stat.st_size))

        def ms(key: str) -> float:
            if key not in table:
                raise DataFileError(
                    f"{path}: no Note10 latency for layer {key!r}; the table does not cover "
                    f"resolution {resolution}, re-copy note10_lut"
                )
            return table[key]

        blocks = np.zeros((len(STAGE_STRIDES), 2, len(KERNELS), len(EXPANDS)))
        fixed = 0.0
        for a, kernel in enumerate(KERNELS):
            for b, expand in enumerate(EXPANDS):
                keys = note10_layer_keys(MBV3Subnet((((kernel, expand),) * 2,) * len(STAGE_STRIDES), resolution))
                for stage in range(len(STAGE_STRIDES)):
                    blocks[stage, 0, a, b] = ms(keys[2 + 2 * stage])
                    blocks[stage, 1, a, b] = ms(keys[3 + 2 * stage])
                fixed = sum(ms(key) for key in (*keys[:2], *keys[-4:]))
        return fixed, blocks

    @staticmethod
    def _lut_file(lut_dir: Path, resolution: int) -> Path:
        flag = f"{_FLAG}.lut_dir"
        if not lut_dir.is_dir():
            raise DataFileError(
                f"{flag}: folder {str(lut_dir)!r} not found; pass --{flag} /path/to/note10_lut "
                "(the folder of <r>_lookup_table.yaml, see ../shared/data/README.md)"
            )
        path = lut_dir / f"{resolution}_lookup_table.yaml"
        if not path.is_file():
            have = sorted(p.name for p in lut_dir.glob("*_lookup_table.yaml"))
            raise DataFileError(
                f"{flag}: {str(lut_dir)!r} has no {path.name} for resolution {resolution} "
                f"(it has {', '.join(have) or 'no tables'}); leave that resolution out of the space "
                "or re-copy note10_lut"
            )
        return path

    # --- scores -----------------------------------------------------------------------
    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS

    def values(self, archs: Sequence[MBV3Arch], metric: str) -> np.ndarray:
        """``metric`` of each of ``archs``: top-1 from one predictor call for all of them."""
        if metric == "top1":
            return self.top1(archs)
        if metric in ("note10_latency", "flops_M"):
            if len(archs) == 0:  # zip(*()) would leave nothing to unpack
                return np.zeros(0)
            ks, e, d, r = (np.array(v) for v in zip(*(self.space.to_ofa(a) for a in archs)))
            return (self.latency_of_lists if metric == "note10_latency" else self.flops_of_lists)(ks, e, d, r)
        raise UnknownMetric(f"unknown metric {metric!r} for {type(self).__name__}; available: {', '.join(METRICS)}")

    def top1(self, archs: Sequence[MBV3Arch]) -> np.ndarray:
        """OFA's predicted ImageNet top-1 (fraction) with inherited supernet weights."""
        features = torch.from_numpy(predictor_features(self.space, archs))
        with torch.no_grad():
            return self._predictor(features).squeeze(-1).double().numpy()

    def note10_latency(self, arch: MBV3Arch) -> float:
        """Sum of the Note10 table's mean latencies (ms) over the subnet's layers
        (:func:`note10_layer_keys`)."""
        return float(self.values([arch], "note10_latency")[0])

    def latency_of_lists(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Note10 latency (ms) of subnets given as OFA's arrays ``ks``, ``e`` ``[n, 20]``, ``d``
        ``[n, 5]`` and ``r`` ``[n]``, without building them: millions a second, so a search can
        filter random subnets by latency before any is built (1 in 700 fits 15 ms)."""
        return self._sum_layers(self._latency, ks, e, d, r)

    def flops_of_lists(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """FLOPs (millions, :func:`nag.nn.count_flops`'s convention) of the w1.2 subnets given as
        OFA's arrays, summed per layer like the latency: a free cost every method may read."""
        return self._sum_layers({side: _layer_flops(side) for side in np.unique(r).tolist()}, ks, e, d, r)

    def _sum_layers(
        self, tables: dict[int, tuple[float, np.ndarray]], ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray
    ) -> np.ndarray:
        """``fixed + sum of blocks[stage, later, kernel, expand]`` over each subnet's active layers,
        with the ``(fixed, blocks)`` of its resolution."""
        ks, e, d, r = np.atleast_2d(ks), np.atleast_2d(e), np.atleast_2d(d), np.atleast_1d(r)
        stages = len(STAGE_STRIDES)
        slot = np.arange(NUM_SLOTS) % (NUM_SLOTS // stages)
        stage = np.arange(NUM_SLOTS) // (NUM_SLOTS // stages)
        active = slot < d[:, stage]
        k = np.searchsorted(KERNELS, np.where(active, ks, KERNELS[0]))
        x = np.searchsorted(EXPANDS, np.where(active, e, EXPANDS[0]))
        total = np.zeros(len(r))
        for side in np.unique(r):
            if int(side) not in self._latency:
                raise ConfigError(
                    f"resolution {int(side)} is not one of the space's {list(self.space.resolutions)}; "
                    "no Note10 table is loaded for it"
                )
            rows = r == side
            fixed, blocks = tables[int(side)]
            per_slot = blocks[stage, (slot > 0).astype(int), k[rows], x[rows]]
            total[rows] = fixed + (per_slot * active[rows]).sum(1)
        return total

    def __repr__(self) -> str:
        return f"{type(self).__name__}(resolutions={list(self.space.resolutions)}, metrics={list(METRICS)})"
