"""Terminal tables: aligned columns, compact numbers, and which latency column is shown."""

import math
from types import SimpleNamespace

from nag.report.tables import cell, format_table, latency_metric


def test_cells_are_compact_and_missing_values_are_dashes():
    assert [cell(v) for v in (94.37333, 0.819333, 344346.0, 3, math.nan, True, "gcn~0")] == [
        "94.37",
        "0.8193",
        "344346",
        "3",
        "-",
        "True",
        "gcn~0",
    ]
    assert cell(1234.5678) == "1234.57"


def test_numbers_right_aligned_text_left_last_column_unpadded():
    rows = [{"rank": 1, "acc": 94.37, "arch": "long|arch|string"}, {"rank": 10, "acc": 9.5, "arch": "x"}]
    lines = format_table(rows, ["rank", "acc", "arch"], headers={"acc": "accuracy"}).splitlines()
    assert lines == ["rank  accuracy  arch", "   1     94.37  long|arch|string", "  10       9.5  x"]


def test_latency_column_is_shown_only_when_unambiguous():
    one = SimpleNamespace(metrics=("valid_acc", "latency", "params"))
    many = SimpleNamespace(
        metrics=(
            "cifar10_test_200ep",
            "hwnb_cifar10_fpga_latency",
            "hwnb_cifar10_pixel3_latency",
            "hwnb_cifar100_fpga_latency",
        )
    )
    per_dataset = SimpleNamespace(
        metrics=("cifar10_test_200ep", "hwnb_cifar10_fpga_latency", "hwnb_cifar100_fpga_latency")
    )
    assert latency_metric(one, ["valid_acc"]) == "latency"
    assert latency_metric(one, ["valid_acc", "latency"]) is None  # already shown
    assert latency_metric(many, ["cifar10_test_200ep"]) is None  # two cifar10 devices: ask with --metrics
    assert latency_metric(per_dataset, ["cifar10_test_200ep"]) == "hwnb_cifar10_fpga_latency"
    assert latency_metric(None, ["valid_acc"]) is None
