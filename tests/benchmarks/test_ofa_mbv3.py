"""OFAMBV3Benchmark: OFA's accuracy predictor and Note10 latency table for any MobileNetV3 subnet.

The predictor's input is checked against feature vectors written out by hand, the latency
against layer keys written out by hand and summed from the YAML, and both against the ``ofa``
package's own tutorial code (its predictor and latency estimator) on random subnets.
"""

from __future__ import annotations

import importlib.util
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
from nag.errors import ConfigError, DataFileError, UnknownMetric
from nag.spaces.mbv3 import MBV3Arch, MBV3Space

SPACE = MBV3Space()
LARGEST: MBV3Arch = (((7, 6),) * 4,) * 5
SMALLEST: MBV3Arch = (((3, 3),) * 2,) * 5
MIXED: MBV3Arch = (
    ((3, 3), (5, 4)),
    ((7, 6), (3, 3), (5, 4)),
    ((3, 4), (3, 4), (3, 4), (3, 4)),
    ((7, 3), (7, 3)),
    ((5, 6), (5, 6), (5, 6)),
)


def onehot(text: str) -> list[float]:
    return [float(c) for c in text if c in "01"]


# Per slot: kernel {3, 5, 7} / expand {3, 4, 6} one-hot, 4 slots a stage, zero past its depth;
# then the resolution {112, 128, ..., 224}.
HAND_FEATURES = {
    (MIXED, 176): onehot(
        "100 010 000 000  001 100 010 000  100 100 100 100  001 001 000 000  010 010 010 000"
        "100 010 000 000  001 100 010 000  010 010 010 010  100 100 000 000  001 001 001 000"
        "00001000"
    ),
    (LARGEST, 224): onehot("001 001 001 001  " * 5 + "001 001 001 001  " * 5 + "00000001"),
    (SMALLEST, 160): onehot("100 100 000 000  " * 5 + "100 100 000 000  " * 5 + "00010000"),
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


@pytest.fixture(scope="module")
def mbv3(shared_data: Path) -> Path:
    root = shared_data / "mbv3"
    if not (root / "ofa_acc_predictor.pth").is_file() or not (root / "note10_lut").is_dir():
        pytest.skip(f"OFA predictor and Note10 tables not found in {root}")
    return root


@pytest.fixture(scope="module")
def benches(mbv3: Path, single_thread) -> dict[int, OFAMBV3Benchmark]:
    return {r: OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", mbv3 / "note10_lut", resolution=r) for r in RESOLUTIONS}


def random_subnets(n: int, seed: int) -> list[tuple[MBV3Arch, int]]:
    rng = np.random.default_rng(seed)
    return [(arch, int(rng.choice(RESOLUTIONS))) for arch in SPACE.sample(n, rng)]


def test_features_match_the_hand_written_ones() -> None:
    for (arch, resolution), expected in HAND_FEATURES.items():
        assert len(expected) == 128
        np.testing.assert_array_equal(predictor_features(SPACE, [arch], resolution)[0], expected)
    batch = predictor_features(SPACE, [arch for arch, _ in HAND_FEATURES], 176)
    assert batch.shape == (3, 128) and batch[:, 124].all() and batch[:, 120:].sum() == 3


def test_features_ignore_values_in_slots_past_the_depth() -> None:
    junk = SPACE.from_string(
        "ks=3-5-7-7-7-3-5-7-3-3-3-3-7-7-5-5-5-5-5-3|e=3-4-6-6-6-3-4-6-4-4-4-4-3-3-6-6-6-6-6-4|d=2-3-4-2-3"
    )
    assert junk == MIXED
    np.testing.assert_array_equal(predictor_features(SPACE, [junk], 176)[0], HAND_FEATURES[(MIXED, 176)])


def test_top1_is_the_predictor_on_the_features(benches: dict[int, OFAMBV3Benchmark], mbv3: Path) -> None:
    weights = torch.load(mbv3 / "ofa_acc_predictor.pth", map_location="cpu", weights_only=True)
    for (arch, resolution), features in HAND_FEATURES.items():
        h = torch.tensor(features)
        for i in (0, 2, 4):
            h = torch.relu(weights[f"{i}.weight"] @ h + weights[f"{i}.bias"])
        expected = float(weights["6.weight"] @ h + weights["6.bias"])
        assert benches[resolution].query(arch, "top1") == pytest.approx(expected, abs=1e-6)
    assert benches[224].query(LARGEST, "top1") == pytest.approx(0.836, abs=5e-4)  # the data README's figure


def test_latency_sums_the_hand_built_layer_keys(benches: dict[int, OFAMBV3Benchmark], mbv3: Path) -> None:
    assert note10_layer_keys(SMALLEST, 160) == SMALLEST_160_KEYS
    table = yaml.safe_load((mbv3 / "note10_lut" / "160_lookup_table.yaml").read_text())
    expected = sum(table[key]["mean"] for key in SMALLEST_160_KEYS)
    assert benches[160].query(SMALLEST, "note10_latency") == pytest.approx(expected, rel=1e-12)
    keys = note10_layer_keys(MIXED, 176)
    assert len(keys) == 2 + 14 + 4
    assert keys[3] == "expanded_conv-input:44x44x32-output:44x44x32-expand:128-kernel:5-stride:1-idskip:1-se:0-hs:0"


def test_batch_values_equal_single_queries(benches: dict[int, OFAMBV3Benchmark]) -> None:
    bench, archs = benches[192], SPACE.sample(50, np.random.default_rng(1))
    for metric in ("top1", "note10_latency"):
        batch = bench.values(archs, metric)
        assert batch.shape == (50,) and batch.dtype == np.float64
        np.testing.assert_allclose(batch, [bench.query(a, metric) for a in archs], rtol=1e-6)
    assert bench.values([], "top1").shape == (0,)


def test_metrics_and_directions(benches: dict[int, OFAMBV3Benchmark]) -> None:
    bench = benches[224]
    assert bench.metrics == ("top1", "note10_latency")
    assert bench.higher_is_better("top1") and not bench.higher_is_better("note10_latency")
    assert LARGEST in bench and ((),) not in bench and bench
    with pytest.raises(UnknownMetric, match="available: top1, note10_latency"):
        bench.query(LARGEST, "flops")


def test_table_only_calls_fail_with_one_line(benches: dict[int, OFAMBV3Benchmark]) -> None:
    bench = benches[224]
    for call in (bench.archs, lambda: len(bench), lambda: bench.best("top1"), lambda: bench.column("top1")):
        with pytest.raises(ConfigError, match="no table") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(UnknownMetric):
        bench.column("flops")


def test_missing_layer_key_is_a_one_line_error(mbv3: Path, tmp_path: Path) -> None:
    table = yaml.safe_load((mbv3 / "note10_lut" / "224_lookup_table.yaml").read_text())
    missing = note10_layer_keys(LARGEST, 224)[-5]  # the last MBConv of stage 5
    del table[missing]
    (tmp_path / "224_lookup_table.yaml").write_text(yaml.safe_dump(table))
    bench = OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", tmp_path)
    assert bench.query(SMALLEST, "note10_latency") > 0
    with pytest.raises(DataFileError, match=f"no Note10 latency for layer '{missing}'") as err:
        bench.values([SMALLEST, LARGEST], "note10_latency")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"predictor_path": "nowhere.pth"}, "predictor_path"),
        ({"lut_dir": "nowhere"}, "lut_dir"),
        ({"resolution": 168}, "resolution"),
        ({"resolution": 176, "lut_dir": "only_224"}, "lut_dir"),
        ({"predictor_path": "bad.pth"}, "predictor_path"),
    ],
)
def test_bad_arguments_fail_with_one_line(mbv3: Path, tmp_path: Path, change: dict, field: str) -> None:
    (tmp_path / "only_224").mkdir()
    shutil.copy(mbv3 / "note10_lut" / "224_lookup_table.yaml", tmp_path / "only_224")
    torch.save({"0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    args = {"predictor_path": mbv3 / "ofa_acc_predictor.pth", "lut_dir": mbv3 / "note10_lut", "resolution": 224}
    args.update({k: tmp_path / v if isinstance(v, str) else v for k, v in change.items()})
    with pytest.raises((ConfigError, DataFileError), match=f"init_args.{field}") as err:
        OFAMBV3Benchmark(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["a: [1, 2", "- 1\n- 2\n", "Conv-input:x: {std: 1.0}\n"])
def test_malformed_table_is_a_one_line_error(mbv3: Path, tmp_path: Path, text: str) -> None:
    (tmp_path / "224_lookup_table.yaml").write_text(text)
    with pytest.raises(DataFileError, match="224_lookup_table.yaml") as err:
        OFAMBV3Benchmark(mbv3 / "ofa_acc_predictor.pth", tmp_path)
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


def test_agrees_with_ofa_own_code(benches: dict[int, OFAMBV3Benchmark], mbv3: Path, ofa_tutorial) -> None:
    predictor = ofa_tutorial.accuracy_predictor.AccuracyPredictor(pretrained=False, device="cpu")
    predictor.model.load_state_dict(torch.load(mbv3 / "ofa_acc_predictor.pth", map_location="cpu", weights_only=True))
    estimators = {}
    for r, bench in benches.items():
        estimators[r] = ofa_tutorial.latency_table.LatencyEstimator.__new__(ofa_tutorial.latency_table.LatencyEstimator)
        estimators[r].lut = yaml.safe_load(bench.lut_path.read_text())  # its own yaml.load needs PyYAML < 6
    subnets = random_subnets(20, seed=0)
    specs = []
    for arch, r in subnets:
        ks, e, d = SPACE.to_ofa(arch)
        specs.append({"ks": [k or 3 for k in ks], "e": [x or 6 for x in e], "d": d, "r": [r]})  # junk past depth
    theirs = predictor.predict_accuracy(specs).squeeze(-1).numpy()
    ours = np.array([benches[r].query(arch, "top1") for arch, r in subnets])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    for (arch, r), spec in zip(subnets, specs):
        expected = estimators[r].predict_network_latency_given_spec(spec)
        assert benches[r].query(arch, "note10_latency") == pytest.approx(expected, rel=1e-12)
