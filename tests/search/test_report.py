"""Search summaries: medians with spreads, honest run counts, and proposal yields."""

from __future__ import annotations

from dataclasses import asdict
from itertools import accumulate

from nag.search.oracle import SearchResult
from nag.search.proposals import ProposalStats
from nag.search.report import format_proposals, format_summary, summarize


def result(seed: int, values: list[float], prefix: str = "a") -> SearchResult:
    history = [(f"{prefix}{i}", v) for i, v in enumerate(values)]
    best = max(values)
    return SearchResult("m", seed, "acc", history, list(accumulate(values, max)), len(values), "best", best)


def test_summary_counts_identical_runs_once_and_never_reaching_as_beyond_budget():
    same = [result(s, [1.0, 3.0, 2.0]) for s in range(3)]
    others = [result(3, [0.5, 0.6, 0.7], prefix="b"), result(4, [0.7, 0.6, 0.5], prefix="c")]
    summary = summarize([*same, *others], optimum=3.0, checkpoints=(1, 2, 3))
    assert summary["seeds"] == 5 and summary["distinct_runs"] == 3
    assert summary["queries_to_optimum"] == [2, 2, 2, None, None]
    assert summary["reached_optimum"] == 0.6 and summary["median_queries_to_optimum"] == 2
    assert summary["best@1"] == 1.0 and summary["regret@1"] == 2.0
    assert summary["queries_to_optimum_iqr"] == [2, None]  # the 75th percentile run never got there
    row = format_summary([summary], checkpoints=(1, 2, 3)).splitlines()[2]
    assert "| 5 (3) |" in row and "2 [2, >budget]" in row


def test_summary_table_keeps_its_columns_when_no_checkpoint_fits_the_budget():
    """A search of 4 queries without a table's optimum (a training benchmark) has no best@k
    column: header, rule and row still have the same number of cells."""
    summary = summarize([result(0, [0.1, 0.4, 0.2, 0.3])], optimum=float("nan"))
    lines = format_summary([summary]).splitlines()
    assert len({line.count("|") for line in lines}) == 1 and "|  |" not in lines[0]


def test_proposal_table_gives_each_yield_as_a_share_of_what_was_sampled():
    plain = {"method": "transfer"}
    generative = {"method": "bo+generator", "proposals": asdict(ProposalStats(200, 190, 150, 120))}
    table = format_proposals([plain, generative])
    assert "transfer" not in table
    assert "| bo+generator | 200 | 190 (95.0%) | 150 (75.0%) | 120 (60.0%) |" in table
    assert format_proposals([plain]) == ""
    assert ProposalStats(1, 1, 1, 0) + ProposalStats(2, 1, 0, 0) == ProposalStats(3, 2, 1, 0)
