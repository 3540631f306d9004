"""Generation metrics: exact values, isomorphism, merging and a real two-rank DDP sync."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from nag.benchmarks import Benchmark, NBGraphBenchmark
from nag.errors import ConfigError, UnknownMetric
from nag.metrics import BenchmarkTruth, Novelty, Uniqueness, Validity, op_kl_divergence, stable_key_hash
from nag.spaces import NB201Space

pytestmark = pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")

SPACE = NB201Space()
CONV3 = ("nor_conv_3x3",) * 6
MIXED = ("avg_pool_3x3", "nor_conv_1x1", "skip_connect", "nor_conv_1x1", "skip_connect", "skip_connect")
UNMEASURED = ("nor_conv_1x1",) * 6
ABSENT = ("skip_connect",) * 6
INVALID = ("conv7x7",) * 6
# a and c differ only on edges that feed dead-end nodes, so both compute x + 0
ISO_A = SPACE.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
ISO_C = SPACE.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|")


class TinyTable(Benchmark):
    """Three NB201 cells, one without a measurement: exact expectations without data files."""

    def __init__(self) -> None:
        self.space = SPACE
        self._set_table([CONV3, MIXED, UNMEASURED], {"acc": np.array([0.9, 0.7, np.nan])})


def make_metrics() -> dict[str, Any]:
    return {
        "validity": Validity(),
        "uniqueness": Uniqueness(),
        "lonely": Uniqueness(),
        "novelty": Novelty(["a", "b"]),
        "truth": BenchmarkTruth(TinyTable(), "acc", top_fraction=0.5),
    }


#: Update arguments per metric for each of two ranks; rank 1 never updates ``lonely``/``truth``.
SHARDS: list[dict[str, list[tuple]]] = [
    {
        "validity": [(torch.tensor([True, False, True]),)],
        "uniqueness": [(["a", "b", "a"],)],
        "lonely": [(["a", "b", "a"],)],
        "novelty": [(["a", "x"],)],
        "truth": [([CONV3, ABSENT, None],)],
    },
    {"validity": [(1, 4)], "uniqueness": [(["b", "c"],)], "novelty": [(["c"],)]},
]
EXPECTED = {
    "validity": 3 / 7,
    "uniqueness": 3 / 5,
    "lonely": 2 / 3,
    "novelty": 2 / 3,
    "truth/mean": 0.9,
    "truth/best": 0.9,
    "truth/top_share": 1.0,
    "truth/in_table": 0.5,
}
HASH_KEYS = ["a", "gcn~0|gat~1|skip~1|sage~2", "0+0+0+0"]


def flatten(results: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in results.items():
        if isinstance(value, dict):
            out.update({f"{name}/{k}": float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out


def feed(metrics: dict[str, Any], shards: list[int]) -> dict[str, Any]:
    for shard in shards:
        for name, calls in SHARDS[shard].items():
            for args in calls:
                metrics[name].update(*args)
    return metrics


def compute_all(metrics: dict[str, Any]) -> dict[str, float]:
    return flatten({name: m.compute() for name, m in metrics.items()})


def run_shards(shards: list[int]) -> dict[str, float]:
    """Fresh metrics fed the given shards; ``compute`` syncs when a process group is up."""
    return compute_all(feed(make_metrics(), shards))


def test_validity_counts_invalid_samples() -> None:
    validity = Validity()
    validity.update(torch.tensor([True, False, False, True]))
    validity.update(1, 4)
    validity.update(torch.tensor(0), 2)
    validity.update(torch.tensor([]))
    assert validity.compute().item() == pytest.approx(3 / 10)


@pytest.mark.parametrize("args", [(5, 4), (-1, 4), (3,), (torch.tensor(3),), (torch.tensor([True]), 1)])
def test_validity_rejects_inconsistent_counts(args: tuple) -> None:
    with pytest.raises(ValueError):
        Validity().update(*args)


def test_uniqueness_counts_duplicates_across_updates() -> None:
    uniqueness = Uniqueness()
    uniqueness.update(["a", "b"])
    uniqueness.update(["c", "a"])
    assert uniqueness.compute().item() == pytest.approx(0.75)


def test_isomorphic_cells_are_duplicates() -> None:
    assert ISO_A != ISO_C and SPACE.key(ISO_A) == SPACE.key(ISO_C)
    uniqueness = Uniqueness()
    uniqueness.update([SPACE.key(a) for a in (ISO_A, ISO_C, CONV3)])
    assert uniqueness.compute().item() == pytest.approx(2 / 3)


def test_novelty_against_the_reference() -> None:
    novelty = Novelty([SPACE.key(ISO_A), SPACE.key(MIXED)])
    novelty.update([SPACE.key(a) for a in (ISO_C, MIXED, CONV3, CONV3)])
    assert novelty.compute().item() == pytest.approx(0.5)
    assert "reference" not in novelty.state_dict()


def test_empty_metrics_are_nan() -> None:
    for metric in (Validity(), Uniqueness(), Novelty(["a"])):
        assert math.isnan(metric.compute().item())
    assert all(math.isnan(v) for v in flatten({"t": BenchmarkTruth(TinyTable(), "acc").compute()}).values())


def test_truth_skips_invalid_and_counts_missing() -> None:
    truth = BenchmarkTruth(TinyTable(), "acc", top_fraction=0.5)
    truth.update([CONV3, MIXED, UNMEASURED, ABSENT, None, INVALID])
    out = flatten(truth.compute())
    assert out == pytest.approx({"mean": 0.8, "best": 0.9, "top_share": 0.5, "in_table": 0.5})


def test_truth_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="top_fraction"):
        BenchmarkTruth(TinyTable(), "acc", top_fraction=0.0)
    with pytest.raises(UnknownMetric):
        BenchmarkTruth(TinyTable(), "latency")


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora")


@pytest.mark.parametrize("metric", ["test_acc", "latency"])
def test_truth_agrees_with_numpy_on_cora(cora: NBGraphBenchmark, metric: str) -> None:
    archs = cora.archs()[::500]
    truth = BenchmarkTruth(cora, metric)
    truth.update(archs[:20])
    truth.update(archs[20:])
    values = np.array([cora.query(a, metric) for a in archs])
    column = cora.column(metric)
    k = math.ceil(0.05 * len(column))
    better = (column > values[:, None]) if metric == "test_acc" else (column < values[:, None])
    out = flatten(truth.compute())
    assert out["mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert out["best"] == pytest.approx(values.max() if metric == "test_acc" else values.min(), rel=1e-6)
    assert out["top_share"] == pytest.approx(np.mean(better.sum(1) < k))
    assert out["in_table"] == 1.0


@pytest.mark.parametrize("metric", ["test_acc", "latency"])
def test_top_share_of_best_and_worst_arch(cora: NBGraphBenchmark, metric: str) -> None:
    column = cora.column(metric)
    worst = cora.archs()[int(np.nanargmin(column) if metric == "test_acc" else np.nanargmax(column))]
    for arch, share in ((cora.best(metric)[0], 1.0), (worst, 0.0)):
        truth = BenchmarkTruth(cora, metric)
        truth.update([arch])
        assert truth.compute()["top_share"].item() == share, (metric, arch)


def test_merged_halves_equal_one_pass() -> None:
    first, second = feed(make_metrics(), [0]), feed(make_metrics(), [1])
    for name, metric in first.items():
        metric.merge_state(second[name])
    merged = compute_all(first)
    assert merged == pytest.approx(compute_all(feed(make_metrics(), [0, 1])))
    assert merged == pytest.approx(EXPECTED)


def test_reset_forgets_everything() -> None:
    metrics = make_metrics()
    first = compute_all(feed(metrics, [0]))
    for metric in metrics.values():
        metric.reset()
    assert all(math.isnan(v) for v in compute_all(metrics).values())
    assert compute_all(feed(metrics, [0])) == pytest.approx(first)
    assert first["uniqueness"] == pytest.approx(2 / 3) and first["validity"] == pytest.approx(2 / 3)


_RANK_SCRIPT = """
import datetime, importlib.util, json, sys
import torch.distributed as dist
from nag.metrics import stable_key_hash
store, tests = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("generation_tests", tests)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dist.init_process_group("gloo", init_method="file://" + store, rank=1, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
metrics = module.run_shards([1])
dist.destroy_process_group()
print(json.dumps({"metrics": metrics, "hashes": stable_key_hash(module.HASH_KEYS).tolist(),
                  "python_hash": hash(module.HASH_KEYS[0])}))
"""


@pytest.mark.skipif(
    not dist.is_available() or dist.is_initialized(), reason="needs torch.distributed and no process group yet"
)
def test_two_rank_ddp_sync_and_stable_hash(tmp_path: Path) -> None:
    """This process is rank 0; rank 1 is a fresh interpreter with another hash salt that
    never updates ``lonely`` or ``truth``, so their empty states must still gather."""
    repo = str(Path(__file__).resolve().parents[2])
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    store = str(tmp_path / "store")
    child = subprocess.Popen(
        [sys.executable, "-c", _RANK_SCRIPT, store, __file__],
        cwd=repo,
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": repo},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{store}", rank=0, world_size=2, timeout=timedelta(seconds=60)
        )
        try:
            local = run_shards([0])
        finally:
            dist.destroy_process_group()
    finally:
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-2000:]
    remote = json.loads(out.strip().splitlines()[-1])
    assert local == pytest.approx(EXPECTED)
    assert remote["metrics"] == pytest.approx(EXPECTED)
    assert remote["python_hash"] != hash(HASH_KEYS[0])
    assert remote["hashes"] == stable_key_hash(HASH_KEYS).tolist()


def test_stable_hash_is_int64_and_distinguishes_keys() -> None:
    hashes = stable_key_hash(["a", "b", "a"])
    assert hashes.dtype == torch.int64 and hashes[0] == hashes[2] != hashes[1]
    assert stable_key_hash([]).shape == (0,)
    with pytest.raises(TypeError):
        stable_key_hash("a")


def _one_hot(ops: list[list[int]], num_ops: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(ops), num_ops).float()


def test_op_kl_is_zero_for_identical_marginals() -> None:
    x, _, mask = SPACE.encode_batch([CONV3, MIXED, ISO_A])
    assert op_kl_divergence(x, x, mask, mask) == 0.0
    # same marginal from different samples, and default masks from non-zero rows
    assert op_kl_divergence(_one_hot([[0, 1]], 3), _one_hot([[1], [0]], 3)) == pytest.approx(0.0, abs=1e-12)


def test_op_kl_value_direction_and_masks() -> None:
    reference = _one_hot([[0, 1], [0, 1]], 2)
    generated = _one_hot([[0, 0], [0, 1]], 2)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert op_kl_divergence(generated, reference) == pytest.approx(expected, rel=1e-5)
    collapsed = _one_hot([[0, 0], [0, 0]], 2)
    # the reference comes first: a generator that drops an op pays far more than log 2
    assert op_kl_divergence(reference, collapsed) == pytest.approx(math.log(2), abs=1e-4)
    assert op_kl_divergence(collapsed, reference) > 5.0
    padded = torch.cat([generated, _one_hot([[1], [1]], 2)], dim=1)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    assert op_kl_divergence(padded, reference, mask_gen=mask) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="vocabularies"):
        op_kl_divergence(_one_hot([[0]], 3), reference)
