"""Cells with ZC vectors: the published table's op/edge mapping, splits, normalisation and errors."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from nag.benchmarks.nb201 import NB201Benchmark
from nag.datamodules.architecture import SPLITS
from nag.datamodules.zc_cells import ProxyNormalizer, ZCCellDataModule
from nag.errors import ConfigError, DataFileError
from nag.spaces.nb201 import EDGES, NB201Space

SPACE = NB201Space()
#: NAS-Bench-Suite-Zero's `net` tuple: op codes and edge order as documented in ../shared/data/README.md.
SUITE_ZERO_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
SUITE_ZERO_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def from_net(net: tuple[int, ...], edges=SUITE_ZERO_EDGES) -> tuple[str, ...]:
    by_edge = {e: SUITE_ZERO_OPS[code] for e, code in zip(edges, net)}
    return tuple(by_edge[e] for e in EDGES)


@pytest.fixture(scope="module")
def zc_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "nb201" / "zc_proxies_cifar10.csv", newline="") as f:
        return list(csv.DictReader(f))


def synthetic_table(n: int = 300, seed: int = 0) -> dict[str, list]:
    """Distinct NB201 cells with made-up proxies: conv and pool counts plus noise."""
    archs = list(dict.fromkeys(SPACE.sample(n, np.random.default_rng(seed))))
    rng = np.random.default_rng(seed + 1)
    convs = [sum("conv" in op for op in a) + 0.1 * rng.standard_normal() for a in archs]
    pools = [10.0 ** sum(op == "avg_pool_3x3" for op in a) for a in archs]
    return {"arch": [SPACE.to_string(a) for a in archs], "convs": convs, "pools": pools}


def test_published_net_codes_and_edge_order_reproduce_nb201_params_and_flops(zc_rows, shared_data):
    bench = NB201Benchmark(str(shared_data / "nb201" / "nb201.csv"))
    archs = [from_net(ast.literal_eval(r["net"])) for r in zc_rows]
    assert archs == [SPACE.from_string(r["net_str"]) for r in zc_rows]
    for column, ours in (("params", "cifar10_params_M"), ("flops", "cifar10_flops_M")):
        published = np.array([float(r[column]) for r in zc_rows])
        assert np.allclose(published, [bench.query(a, ours) for a in archs], rtol=0, atol=1e-9)
    # params/FLOPs only count ops, so edge order shows in which cells the table covers: exactly
    # the NB201 rows that have params (every op reachable); reading `net` in string order does not.
    with_params = {a for a, p in zip(bench.archs(), bench.column("cifar10_params_M")) if not np.isnan(p)}
    assert set(archs) == with_params and len(with_params) == len(zc_rows) == 9445
    assert {from_net(ast.literal_eval(r["net"]), EDGES) for r in zc_rows} != with_params


def test_published_table_loads_with_its_string_column(shared_data):
    dm = ZCCellDataModule(
        SPACE, path=str(shared_data / "nb201" / "zc_proxies_cifar10.csv"), proxies=["synflow", "nwot", "params"]
    )
    assert dm.proxies == ["synflow", "nwot", "params"] and len(dm.archs_all) == 9445 and dm.num_dropped == 0
    z = dm.normalized("train")
    assert torch.isfinite(z).all()
    assert z.mean(0).abs().max() < 0.05 and (z.std(0) - 1).abs().max() < 0.05


def test_default_proxies_are_the_numeric_columns(zc_rows, tmp_path):
    path = tmp_path / "zc.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(zc_rows[0]))
        writer.writeheader()
        writer.writerows(zc_rows[:200])
    dm = ZCCellDataModule(SPACE, path=str(path))
    assert "net" not in dm.proxies and "net_str" not in dm.proxies
    assert {"synflow", "nwot", "jacov", "params", "flops"} <= set(dm.proxies)


def test_splits_hold_isomorphism_classes_apart_and_statistics_come_from_train():
    table = synthetic_table()
    dm = ZCCellDataModule(SPACE, table=table, split=(0.6, 0.2, 0.2), seed=3)
    keys = {s: {SPACE.key(a) for a in dm.archs(s)} for s in SPLITS}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert sum(len(dm.archs(s)) for s in SPLITS) == len(table["arch"])
    # moving a held-out value leaves the statistics unchanged; a training value does not
    val_row, train_row = dm.split_indices["val"][0], dm.split_indices["train"][0]
    for row, changes in ((val_row, False), (train_row, True)):
        edited = {k: list(v) for k, v in table.items()}
        edited["convs"][row] = 1e6
        other = ZCCellDataModule(SPACE, table=edited, split=(0.6, 0.2, 0.2), seed=3)
        assert (other.proxy_stats != dm.proxy_stats) == changes


@pytest.mark.parametrize("kind", ["rank", "log"])
def test_normalisation_is_monotone_invertible_and_rebuilt_from_spec(kind):
    dm = ZCCellDataModule(SPACE, table=synthetic_table(), normalization=kind)
    raw = torch.as_tensor(dm.raw_proxies("train"))
    z = dm.normalizer.normalize(raw)
    for j in range(raw.shape[1]):
        order = raw[:, j].argsort()
        assert (z[order, j].diff() >= -1e-12).all()
    assert torch.allclose(dm.normalizer.denormalize(z), raw, rtol=1e-6, atol=1e-6)
    again = ProxyNormalizer.from_spec(dm.spec())
    assert torch.equal(again.normalize(raw), z)
    assert dm.spec()["space"] == SPACE.identity and dm.spec()["proxies"] == ["convs", "pools"]


def test_rank_normalisation_gives_ties_their_mid_rank():
    dm = ZCCellDataModule(SPACE, table=synthetic_table(), proxies=["pools"])
    raw = torch.as_tensor(dm.raw_proxies("train"))[:, 0]
    z = dm.normalized("train")[:, 0]
    for value in raw.unique():
        share_below = float((raw < value).double().mean())
        share_tied = float((raw == value).double().mean())
        assert z[raw == value].unique().numel() == 1
        # within one quantile knot (1/128) of the mid-rank
        assert float(torch.special.ndtr(z[raw == value][0])) == pytest.approx(share_below + share_tied / 2, abs=0.01)


def test_batches_carry_graphs_and_normalised_zc():
    dm = ZCCellDataModule(SPACE, table=synthetic_table(), batch_size=16)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (16, SPACE.max_nodes, SPACE.num_ops) and batch["y"].shape == (16, 2)
    assert torch.allclose(batch["y"], dm.normalized("val")[:16])


def test_non_finite_rows_are_dropped_and_counted():
    table = synthetic_table()
    table["convs"][0], table["pools"][5] = float("nan"), float("inf")
    dm = ZCCellDataModule(SPACE, table=table)
    assert dm.num_dropped == 2 and len(dm.archs_all) == len(table["arch"]) - 2


@pytest.mark.parametrize(
    "change, error, fragment",
    [
        (lambda t: t.update(arch=["|bogus~0|"] + t["arch"][1:]), DataFileError, "row 2, column 'arch'"),
        (lambda t: t.update(arch=[t["arch"][1]] + t["arch"][1:]), DataFileError, "repeats cell"),
        (lambda t: t.update(convs=["x"] + t["convs"][1:]), DataFileError, "'x' is not a number"),
        (lambda t: t.pop("arch") and t.update(cell=[]), DataFileError, "no architecture column"),
    ],
)
def test_bad_tables_fail_in_one_line_naming_the_place(change, error, fragment):
    table = synthetic_table(20)
    change(table)
    with pytest.raises(error, match=fragment):
        ZCCellDataModule(SPACE, table=table, proxies=["convs"])


def test_bad_arguments_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data.proxies: unknown column 'zen'"):
        ZCCellDataModule(SPACE, table=synthetic_table(20), proxies=["zen"])
    with pytest.raises(ConfigError, match="exactly one of data.path"):
        ZCCellDataModule(SPACE, path="a.csv", table=synthetic_table(20))
    with pytest.raises(DataFileError, match="no such file"):
        ZCCellDataModule(SPACE, path=str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="leaves the val split empty"):
        _ = ZCCellDataModule(SPACE, table=synthetic_table(20), split=(1, 0, 0)).split_indices
