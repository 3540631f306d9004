"""What ``nag generate`` prints and adds: ranked distinct architectures, predictions, reasons."""

import math

import numpy as np
import pytest
import torch

from nag.datamodules.architecture import space_spec
from nag.generation import (
    GeneratedSet,
    add_predictions,
    decode_samples,
    format_table,
    invalid_reasons,
    rows_for,
    score_samples,
)
from nag.lightning_modules.predictor import PredictorModule
from nag.spaces import NB201Space, NBGraphSpace

pytestmark = pytest.mark.usefixtures("single_thread")


def row(i, arch, key, acc, valid=True):
    return {"sample": i, "valid": valid, "arch": arch, "key": key, "error": "" if valid else "bad", "acc": acc}


def test_table_ranks_distinct_architectures_and_counts_repeats():
    rows = [
        row(0, "a", "ka", 90.0),
        row(1, "b", "kb", 93.0),
        row(2, "a2", "ka", 90.0),
        row(3, "", "", math.nan, valid=False),
        row(4, "c", "kc", math.nan),
    ]
    lines = format_table(rows, ["acc"], limit=2).splitlines()
    assert lines[0].split() == ["rank", "n", "acc", "arch"]
    assert lines[1].split() == ["1", "1", "93", "b"]
    assert lines[2].split() == ["2", "2", "90", "a"]  # two samples share key ka: one row, n = 2
    assert lines[3] == "... 1 more distinct architectures in the output file"
    low_first = format_table(rows, ["acc"], limit=None, maximize=False).splitlines()
    assert [line.split()[-1] for line in low_first[1:]] == ["a", "b", "c"]  # unmeasured last


def test_table_says_when_nothing_was_valid():
    rows = [row(0, "", "", math.nan, False), row(1, "", "", math.nan, False)]
    assert format_table(rows, ["acc"]) == "no valid architecture among 2 samples (--verbose lists why they failed)"


def test_invalid_reasons_are_counted():
    rows = [row(0, "", "", math.nan, False), row(1, "", "", math.nan, False), row(2, "a", "ka", 1.0)]
    assert invalid_reasons(rows).split() == ["2x", "bad"]


def test_predictions_are_the_predictor_outputs_per_valid_sample():
    space = NB201Space()
    archs = space.sample(5, np.random.default_rng(0))
    result = GeneratedSet([archs[0], None, *archs[1:]], [None, "bad", *[None] * 4])
    spec = {**space_spec(space), "targets": ["acc"], "target_stats": {"acc": {"mean": 90.0, "std": 2.0}}}
    torch.manual_seed(0)
    predictor = PredictorModule(spec, hidden=8, num_layers=1).eval()
    rows = rows_for(result, space, None, [])
    assert add_predictions(rows, result, space, predictor, batch_size=2) == ["predicted_acc"]
    assert math.isnan(rows[1]["predicted_acc"])
    x, adj, mask = space.encode_batch(archs)
    with torch.no_grad():
        expected = (predictor(x, adj, mask)[:, 0] * 2.0 + 90.0).tolist()
    got = [r["predicted_acc"] for r in rows if r["valid"]]
    assert got == pytest.approx(expected, abs=1e-5)
    assert "predicted_acc" in format_table(rows, [], limit=3).splitlines()[0]


def test_the_summary_says_how_many_samples_projection_repaired_and_how_much():
    space = NBGraphSpace()
    archs = space.sample(4, np.random.default_rng(0))
    x, adj, mask = space.encode_batch(archs)
    broken = adj.clone()
    broken[1] = 0.0  # no layer reads anything: invalid as sampled, repaired by projection
    result = decode_samples(space, {"x": x, "adj": broken, "mask": mask})
    assert result.raw_valid == [True, False, True, True] and result.repaired == [1]
    assert result.changed[0] == 0 and result.changed[1] == space.changed_entries(
        x[1], broken[1], mask[1], result.archs[1]
    )
    assert result.changed[1] > 0
    summary = score_samples(result, space, set(), None, [])
    assert summary["repaired"] == pytest.approx(0.25)
    assert summary["repair_changes"] == result.changed[1]
    clean = score_samples(decode_samples(space, {"x": x, "adj": adj, "mask": mask}), space, set(), None, [])
    assert clean["repaired"] == 0.0 and math.isnan(clean["repair_changes"])
