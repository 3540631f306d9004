"""OFAMBV3Benchmark: OFA's accuracy predictor and Note10 latency table for any MobileNetV3 subnet.

The predictor's input is checked against feature vectors written out by hand, the latency
against layer keys written out by hand and summed from the YAML, and both against the ``ofa``
package's own tutorial code (its predictor and latency estimator) on random subnets.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nag.benchmarks import OFAMBV3Benchmark
from nag.benchmarks.ofa_mbv3 import RESOLUTIONS, note10_layer_keys, predictor_features
from nag.errors import ConfigError, DataFileError, InvalidArchitecture, UnknownMetric
from nag.nn.flops import count_flops
from nag.spaces.mbv3 import MBV3Arch, MBV3Space, MBV3Subnet

SPACE = MBV3Space()
LARGEST: MBV3Arch = MBV3Subnet((((7, 6),) * 4,) * 5, 224)
SMALLEST: MBV3Arch = MBV3Subnet((((3, 3),) * 2,) * 5, 160)
MIXED_STAGES = (
    ((3, 3), (5, 4)),
    ((7, 6), (3, 3), (5, 4)),
    ((3, 4), (3, 4), (3, 4), (3, 4)),
    ((7, 3), (7, 3)),
    ((5, 6), (5, 6), (5, 6)),
)
MIXED: MBV3Arch = MBV3Subnet(MIXED_STAGES, 176)


def onehot(text: str) -> list[float]:
    return [float(c) for c in text if c in "01"]


# Per slot: kernel {3, 5, 7} / expand {3, 4, 6} one-hot, 4 slots a stage, zero past its depth;
# then the subnet's own resolution among {112, 128, ..., 224}.
MIXED_LAYERS = (
    "100 010 000 000  001 100 010 000  100 100 100 100  001 001 000 000  010 010 010 000"
    "100 010 000 000  001 100 010 000  010 010 010 010  100 100 000 000  001 001 001 000"
)
HAND_FEATURES = {
    MIXED: onehot(MIXED_LAYERS + "00001000"),
    MBV3Subnet(MIXED_STAGES, 208): onehot(MIXED_LAYERS + "00000010"),  # the same layers, another slot
    LARGEST: onehot("001 001 001 001  " * 5 + "001 001 001 001  " * 5 + "00000001"),
    SMALLEST: onehot("100 100 000 000  " * 5 + "100 100 000 000  " * 5 + "00010000"),
}

# SMALLEST at 160, layer by layer: stem, the fixed first block, two layers a stage (widths 32, 48,
# 96, 136, 192; strides 2, 2, 2, 1, 2; SE in stages 2, 4, 5; h-swish from stage 3), then the head.
SMALLEST_160_KEYS = [
    "Conv-input:160x160x3-output:80x80x24",
    "expanded_conv-input:80x80x24-output:80x80x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
    "expanded_conv-input:80x80x24-output:40x40x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
    "expanded_conv-input:40x40x32-output:40x40x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0",
    "expanded_conv-input:40x40x32-output:20x20x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0",
    "expanded_conv-input:20x20x48-output:20x20x48-expand:144-kernel:3-stride:1-idskip:1-se:1-hs:0",
    "expanded_conv-input:20x20x48-output:10x10x96-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:1",
    "expanded_conv-input:10x10x96-output:10x10x96-expand:288-kernel:3-stride:1-idskip:1-se:0-hs:1",
    "expanded_conv-input:10x10x96-output:10x10x136-expand:288-kernel:3-stride:1-idskip:0-se:1-hs:1",
    "expanded_conv-input:10x10x136-output:10x10x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1",
    "expanded_conv-input:10x10x136-output:5x5x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1",
    "expanded_conv-input:5x5x192-output:5x5x192-expand:576-kernel:3-stride:1-idskip:1-se:1-hs:1",
    "Conv_1-input:5x5x192-output:5x5x1152",
    "AvgPool2D-input:5x5x1152-output:1x1x1152",
    "Conv_2-input:1x1x1152-output:1x1x1536",
    "Logits-input:1x1x1536-output:1000",
]
# The same layers at 224: every feature map side scales by 224/160 (160, 80, 40, 20, 10, 5 ->
# 224, 112, 56, 28, 14, 7).
SMALLEST_224_KEYS = [
    re.sub(r"(\d+)x\1x", lambda m: f"{int(m[1]) * 224 // 160}x{int(m[1]) * 224 // 160}x", key)
    for key in SMALLEST_160_KEYS
]


@pytest.fixture(scope="module")
def mbv3(shared_data: Path) -> Path:
    root = shared_data / "mbv3"
    if not (root / "ofa_acc_predictor.pth").is_file() or not (root / "note10_lut").is_dir():
        pytest.skip(f"OFA predictor and Note10 tables not found in {root}")
    return root


@pytest.fixture(scope="module")
def bench(mbv3: Path, single_thread) -> OFAMBV3Benchmark:
    """The default space: the five resolutions OFA searches, each subnet scored at its own."""
    return OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", mbv3 / "note10_lut")


def note10_sum(mbv3: Path, resolution: int, keys: list[str]) -> float:
    table = yaml.safe_load((mbv3 / "note10_lut" / f"{resolution}_lookup_table.yaml").read_text())
    return sum(table[key]["mean"] for key in keys)


def test_features_match_the_hand_written_ones() -> None:
    for arch, expected in HAND_FEATURES.items():
        assert len(expected) == 128
        np.testing.assert_array_equal(predictor_features(SPACE, [arch])[0], expected)
    batch = predictor_features(SPACE, list(HAND_FEATURES))
    assert batch.shape == (4, 128) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.array(list(HAND_FEATURES.values())))
    assert (batch[:, 120:].sum(1) == 1).all()  # one resolution slot per subnet, its own


def test_features_hold_each_subnets_own_resolution_slot() -> None:
    """The same layers at two resolutions differ only in the resolution slots (120-127)."""
    at_176, at_208 = predictor_features(SPACE, [MIXED, MBV3Subnet(MIXED_STAGES, 208)])
    np.testing.assert_array_equal(at_176[:120], at_208[:120])
    assert np.flatnonzero(at_176[120:]).tolist() == [(176 - 112) // 16] == [4]
    assert np.flatnonzero(at_208[120:]).tolist() == [(208 - 112) // 16] == [6]


def test_features_ignore_values_in_slots_past_the_depth() -> None:
    junk = SPACE.from_string(
        "ks=3-5-7-7-7-3-5-7-3-3-3-3-7-7-5-5-5-5-5-3|e=3-4-6-6-6-3-4-6-4-4-4-4-3-3-6-6-6-6-6-4|d=2-3-4-2-3|r=176"
    )
    assert junk == MIXED
    np.testing.assert_array_equal(predictor_features(SPACE, [junk])[0], HAND_FEATURES[MIXED])


def test_a_resolution_without_a_predictor_slot_fails_in_one_line() -> None:
    space = MBV3Space(resolutions=[168, 224])
    with pytest.raises(ConfigError, match="resolution 168 has no slot in OFA's accuracy predictor") as err:
        predictor_features(space, [MBV3Subnet(MIXED_STAGES, 224), MBV3Subnet(MIXED_STAGES, 168)])
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidArchitecture, match="resolution 168 is not one this space searches"):
        predictor_features(SPACE, [MBV3Subnet(MIXED_STAGES, 168)])


def test_top1_is_the_predictor_on_the_features(bench: OFAMBV3Benchmark, mbv3: Path) -> None:
    weights = torch.load(mbv3 / "ofa_acc_predictor.pth", map_location="cpu", weights_only=True)
    for arch, features in HAND_FEATURES.items():
        h = torch.tensor(features)
        for i in (0, 2, 4):
            h = torch.relu(weights[f"{i}.weight"] @ h + weights[f"{i}.bias"])
        expected = float(weights["6.weight"] @ h + weights["6.bias"])
        assert bench.query(arch, "top1") == pytest.approx(expected, abs=1e-6)
    assert bench.query(LARGEST, "top1") == pytest.approx(0.836, abs=5e-4)  # the data README's figure
    # the resolution reaches the predictor: the same layers are predicted better at a larger input
    smaller = bench.values([MBV3Subnet(LARGEST.stages, r) for r in RESOLUTIONS], "top1")
    assert (np.diff(smaller) > 0).all()


def test_latency_sums_the_hand_built_layer_keys(bench: OFAMBV3Benchmark, mbv3: Path) -> None:
    assert note10_layer_keys(SMALLEST) == SMALLEST_160_KEYS
    expected = note10_sum(mbv3, 160, SMALLEST_160_KEYS)
    assert bench.query(SMALLEST, "note10_latency") == pytest.approx(expected, rel=1e-12)
    keys = note10_layer_keys(MIXED)
    assert len(keys) == 2 + 14 + 4
    assert keys[3] == "expanded_conv-input:44x44x32-output:44x44x32-expand:128-kernel:5-stride:1-idskip:1-se:0-hs:0"


def test_latency_is_read_at_the_subnets_own_resolution(bench: OFAMBV3Benchmark, mbv3: Path) -> None:
    """The same stages at 160 and 224: each sums its own resolution's table over its own keys,
    and the smaller input is faster."""
    at_224 = MBV3Subnet(SMALLEST.stages, 224)
    assert SMALLEST_224_KEYS[0] == "Conv-input:224x224x3-output:112x112x24"
    assert SMALLEST_224_KEYS[-4] == "Conv_1-input:7x7x192-output:7x7x1152"
    assert note10_layer_keys(at_224) == SMALLEST_224_KEYS
    fast, slow = bench.values([SMALLEST, at_224], "note10_latency")
    assert fast == pytest.approx(note10_sum(mbv3, 160, SMALLEST_160_KEYS), rel=1e-12)
    assert slow == pytest.approx(note10_sum(mbv3, 224, SMALLEST_224_KEYS), rel=1e-12)
    assert fast < slow
    sides = bench.values([MBV3Subnet(LARGEST.stages, r) for r in RESOLUTIONS], "note10_latency")
    assert (np.diff(sides) > 0).all()


def test_batch_values_equal_single_queries(bench: OFAMBV3Benchmark) -> None:
    archs = SPACE.sample(50, np.random.default_rng(1))
    assert len({a.resolution for a in archs}) == len(RESOLUTIONS)  # one batch, every resolution
    for metric in ("top1", "note10_latency"):
        batch = bench.values(archs, metric)
        assert batch.shape == (50,) and batch.dtype == np.float64
        np.testing.assert_allclose(batch, [bench.query(a, metric) for a in archs], rtol=1e-6)
        assert bench.values([], metric).shape == (0,)


def test_metrics_and_directions(bench: OFAMBV3Benchmark) -> None:
    assert bench.metrics == ("top1", "note10_latency", "flops_M")
    assert bench.higher_is_better("top1") and not bench.higher_is_better("note10_latency")
    assert not bench.higher_is_better("flops_M")
    assert LARGEST in bench and MBV3Subnet(LARGEST.stages, 168) not in bench and LARGEST.stages not in bench
    assert bench and repr(bench).startswith("OFAMBV3Benchmark(resolutions=[160, 176, 192, 208, 224]")
    with pytest.raises(UnknownMetric, match="available: top1, note10_latency, flops_M"):
        bench.query(LARGEST, "flops")


def test_flops_are_the_built_networks_count_at_its_resolution(bench: OFAMBV3Benchmark) -> None:
    """The per-layer FLOPs table sums to count_flops of the whole built subnet, resolution included."""
    archs = [SMALLEST, LARGEST, *bench.space.sample(2, np.random.default_rng(1))]
    counted = [count_flops(bench.space.to_module(a), bench.space.input_shape_for(a)) / 1e6 for a in archs]
    np.testing.assert_allclose(bench.values(archs, "flops_M"), counted, rtol=1e-9)
    assert bench.query(MBV3Subnet(LARGEST.stages, 160), "flops_M") < bench.query(LARGEST, "flops_M")


def test_a_subset_of_resolutions_loads_only_their_tables(mbv3: Path, tmp_path: Path) -> None:
    shutil.copy(mbv3 / "note10_lut" / "192_lookup_table.yaml", tmp_path)
    space = MBV3Space(resolutions=[192])
    bench = OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", tmp_path, space=space)
    assert bench.space is space
    arch = MBV3Subnet(MIXED_STAGES, 192)
    assert bench.query(arch, "note10_latency") == pytest.approx(note10_sum(mbv3, 192, note10_layer_keys(arch)))
    with pytest.raises(InvalidArchitecture, match="resolution 224 is not one this space searches"):
        bench.query(LARGEST, "note10_latency")


def test_table_only_calls_fail_with_one_line(bench: OFAMBV3Benchmark) -> None:
    for call in (bench.archs, lambda: len(bench), lambda: bench.best("top1"), lambda: bench.column("top1")):
        with pytest.raises(ConfigError, match="no table") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(UnknownMetric):
        bench.column("flops")


def test_missing_layer_key_is_a_one_line_error(mbv3: Path, tmp_path: Path) -> None:
    table = yaml.safe_load((mbv3 / "note10_lut" / "224_lookup_table.yaml").read_text())
    missing = note10_layer_keys(LARGEST)[-5]  # the last MBConv of stage 5
    del table[missing]
    (tmp_path / "224_lookup_table.yaml").write_text(yaml.safe_dump(table))

    def score() -> None:  # the gap may be found when the table loads or when a subnet needs it
        bench = OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", tmp_path, space=MBV3Space(resolutions=[224]))
        bench.values([MBV3Subnet(SMALLEST.stages, 224), LARGEST], "note10_latency")

    with pytest.raises(DataFileError, match=f"224_lookup_table.yaml: no Note10 latency for layer '{missing}'") as err:
        score()
    assert "\n" not in str(err.value)


def test_a_space_resolution_without_a_note10_table_fails_in_one_line(mbv3: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.init_args\.benchmark\.init_args\.space: .*\[168\]") as err:
        OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", mbv3 / "note10_lut", space=MBV3Space(resolutions=[168]))
    assert "\n" not in str(err.value) and "160, 176, 192, 208, 224" in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"predictor_path": "nowhere.pth"}, "predictor_path"),
        ({"lut_dir": "nowhere"}, "lut_dir"),
        ({"space": MBV3Space(resolutions=[168])}, "space"),
        ({"space": MBV3Space(resolutions=[160, 224, 240])}, "space"),
        ({"space": MBV3Space(resolutions=[176]), "lut_dir": "only_224"}, "lut_dir"),
        ({"lut_dir": "only_224"}, "lut_dir"),  # the default space needs all five tables
        ({"predictor_path": "bad.pth"}, "predictor_path"),
    ],
)
def test_bad_arguments_fail_with_one_line(mbv3: Path, tmp_path: Path, change: dict, field: str) -> None:
    (tmp_path / "only_224").mkdir()
    shutil.copy(mbv3 / "note10_lut" / "224_lookup_table.yaml", tmp_path / "only_224")
    torch.save({"0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    args = {"predictor_path": mbv3 / "ofa_acc_predictor.pth", "lut_dir": mbv3 / "note10_lut"}
    args.update({k: tmp_path / v if isinstance(v, str) else v for k, v in change.items()})
    with pytest.raises((ConfigError, DataFileError), match=f"init_args.{field}") as err:
        OFAMBV3Benchmark(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["a: [1, 2", "- 1\n- 2\n", "Conv-input:x: {std: 1.0}\n"])
def test_malformed_table_is_a_one_line_error(mbv3: Path, tmp_path: Path, text: str) -> None:
    (tmp_path / "224_lookup_table.yaml").write_text(text)
    with pytest.raises(DataFileError, match="224_lookup_table.yaml") as err:
        OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", tmp_path, space=MBV3Space(resolutions=[224]))
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def ofa_tutorial() -> types.SimpleNamespace:
    """The ``ofa`` package's tutorial predictor and latency estimator, loaded from their files:
    ``ofa.tutorial``'s ``__init__`` needs torchvision and ``ofa.utils`` star-imports data loaders
    that do, so an empty module stands in for those loaders (the two files use neither)."""
    ofa = pytest.importorskip("ofa", reason="the `ofa` package (nag's `test` extra) holds the reference code")
    modules = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
        for name in ("accuracy_predictor", "latency_table"):
            spec = importlib.util.spec_from_file_location(
                f"ofa_tutorial_{name}", Path(ofa.__file__).parent / "tutorial" / f"{name}.py"
            )
            modules[name] = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(modules[name])
            except (ImportError, FileNotFoundError) as e:
                pytest.skip(f"the installed `ofa` package's tutorial code does not import here: {e}")
    return types.SimpleNamespace(**modules)


def test_agrees_with_ofa_own_code(bench: OFAMBV3Benchmark, mbv3: Path, ofa_tutorial) -> None:
    """Random subnets of every resolution: the predictor and the latency estimator of OFA's
    tutorial, each given the subnet's own ``r``, score them as the benchmark does."""
    predictor = ofa_tutorial.accuracy_predictor.AccuracyPredictor(pretrained=False, device="cpu")
    predictor.model.load_state_dict(torch.load(mbv3 / "ofa_acc_predictor.pth", map_location="cpu", weights_only=True))
    estimators = {}
    for r, path in bench.lut_paths.items():
        estimators[r] = ofa_tutorial.latency_table.LatencyEstimator.__new__(ofa_tutorial.latency_table.LatencyEstimator)
        estimators[r].lut = yaml.safe_load(path.read_text())  # its own yaml.load needs PyYAML < 6
    assert sorted(estimators) == list(RESOLUTIONS)
    drawn = SPACE.sample(20, np.random.default_rng(0))
    subnets = [MBV3Subnet(arch.stages, RESOLUTIONS[i % len(RESOLUTIONS)]) for i, arch in enumerate(drawn)]
    specs = []
    for arch in subnets:
        ks, e, d, r = SPACE.to_ofa(arch)
        specs.append({"ks": [k or 3 for k in ks], "e": [x or 6 for x in e], "d": d, "r": [r]})  # junk past depth
    theirs = predictor.predict_accuracy(specs).squeeze(-1).numpy()
    np.testing.assert_allclose(bench.values(subnets, "top1"), theirs, atol=1e-6)
    for arch, spec in zip(subnets, specs):
        expected = estimators[arch.resolution].predict_network_latency_given_spec(spec)
        assert bench.query(arch, "note10_latency") == pytest.approx(expected, rel=1e-12)
