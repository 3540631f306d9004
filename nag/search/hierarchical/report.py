"""The hierarchical search's report as terminal tables."""

from __future__ import annotations

from typing import Any

from nag.report import tables
from nag.search.hierarchical.config import Training, shown_proxies


def format_report(report: dict[str, Any]) -> str:
    """The summary and every trained network as terminal tables."""
    s, t = report["summary"], report["task"]
    head = (
        f"task: {t['num_classes']} classes, {t['input_size']}x{t['input_size']}x{t['in_channels']}, "
        f"<= {t['max_params']:,} params, <= {t['max_flops']:,} FLOPs; seeds {report['seeds']}"
    )
    lines = [
        ("generated top-k accuracy", "generated_accuracy"),
        ("random accuracy (same budgets)", "random_accuracy"),
        ("random, screened by the same proxies", "random_screened_accuracy"),
        ("within budget before check", "share_before_check"),
        ("  with the transformer's own cells", "macro_share"),
        ("  random draws", "random_share"),
        ("invalid cell decodes", "invalid_share"),
    ]
    summary = [{"": name, "mean": s[key]["mean"], "std": s[key]["std"]} for name, key in lines]
    summary += [
        {
            "": "generated - random accuracy, per seed",
            "mean": s["accuracy_gain"]["mean"],
            "std": s["accuracy_gain"]["std"],
        },
        {"": f"seeds where generated wins (of {len(report['seeds'])})", "mean": s["seeds_won"]},
        {
            "": "generated - screened random accuracy, per seed",
            "mean": s["gain_vs_screened"]["mean"],
            "std": s["gain_vs_screened"]["std"],
        },
        {"": "seeds where generated beats screened random", "mean": s["seeds_won_vs_screened"]},
        {"": "generated / random accuracy", "mean": s["accuracy_ratio"]},
        {"": "within budget after check", "mean": s["share_after_check"]},
    ]
    proxies = shown_proxies(Training(**report["training"]))
    networks = [
        {"seed": run["seed"], "source": kind, **r}
        for run in report["runs"]
        for kind in ("generated", "random", "random_screened")
        for r in run.get(kind, [])
    ]
    return "\n\n".join(
        [
            head,
            tables.format_table(summary, ["", "mean", "std"]),
            tables.format_table(networks, ["seed", "source", "params", "flops", *proxies, "accuracy", "arch"]),
        ]
    )
