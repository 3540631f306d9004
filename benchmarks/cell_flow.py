"""Cell encoder + conditional flow (CCNF) on NAS-Bench-201 with the published ZC proxies.

Scores checkpoints written by ``nag fit`` with configs/nb201/cell_encoder.yaml and
configs/nb201/cell_flow.yaml (same data section):

* encoder, on the held-out test cells: exact reconstruction from the latent mean, Spearman
  between pairwise latent and ZC distances, the ZC head's Spearman, validity of N(0, I) decodes;
* flow: invalid-decode share; adherence (Spearman between a target proxy and the *published*
  proxy of the decoded cell, conditioning on each test cell's ZC vector);
* the question that matters: cells sampled for a high synflow + nwot target (both at the
  ``--quantile`` of the training cells, other proxies unspecified) against the flow's
  unconditional samples (the baseline, same run), the VAE prior, uniform NB201 cells and, as a
  reference, table cells that meet the target (a filter that needs every cell's proxies), by
  their true CIFAR-10 test accuracy in nb201.csv. Spread over ``--seeds``.

    python benchmarks/cell_flow.py          # fits both with `nag fit` (8 and 20 epochs), cached in --run-dir
    python benchmarks/cell_flow.py \\
        --encoder runs/nb201_cell_encoder/lightning_logs/version_0/checkpoints/last.ckpt \\
        --flow runs/nb201_cell_flow/lightning_logs/version_0/checkpoints/last.ckpt
Without ``--encoder``/``--flow`` the script fits them (:func:`nag.io.fit_cache.fit_cached`, one
torch thread) as ``OMP_NUM_THREADS=1 nag fit --config configs/nb201/cell_encoder.yaml
--trainer.max_epochs 8`` and ``... cell_flow.yaml --trainer.max_epochs 20`` with that encoder
would, and reuses a finished fit of the same config and arguments.
Writes benchmarks/results/cell_flow.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, ROOT, command, fit, markdown_table, write_report
from torchmetrics.functional import spearman_corrcoef

from nag.benchmarks import NB201Benchmark
from nag.datamodules.zc_cells import ZCCellDataModule
from nag.generation import decode_samples
from nag.io.checkpoints import load_module
from nag.lightning_modules.cell_encoder import CellEncoderModule
from nag.lightning_modules.cell_flow import CellFlowModule
from nag.spaces import NB201Space

METRIC = "cifar10_test_200ep"
PROXIES = ["synflow", "snip", "grad_norm", "jacov", "nwot", "fisher", "params", "flops"]


def encoder_report(enc: CellEncoderModule, dm: ZCCellDataModule, prior_samples: int) -> dict:
    archs = dm.archs("test")
    x, adj, mask = dm.space.encode_batch(archs)
    zc = dm.normalized("test")
    with torch.no_grad():
        mu = enc.embed(x, adj, mask)
        decoded = decode_samples(dm.space, enc.decode(mu), project=False)
        prior = decode_samples(dm.space, enc.sample_prior(prior_samples, seed=0), project=False)
        head = spearman_corrcoef(enc.predict_zc(mu), zc)
    return {
        "test_cells": len(archs),
        "recon_acc": float(np.mean([a == b for a, b in zip(decoded.archs, archs)])),
        "latent_zc_spearman": float(spearman_corrcoef(torch.pdist(mu), torch.pdist(zc))),
        "zc_head_spearman": dict(zip(dm.proxies, map(float, head))),
        "prior_validity": len(prior.valid) / len(prior.archs),
    }


def adherence(flow: CellFlowModule, dm: ZCCellDataModule, seed: int) -> dict:
    """Condition on each test cell's full ZC vector; compare each target proxy with the published
    value of the decoded cell (where the table has the cell)."""
    targets = dm.normalized("test")
    decoded = decode_samples(dm.space, flow.sample(targets, seed=seed), project=False)
    table = {a: i for i, a in enumerate(dm.archs_all)}
    rows = [(i, table[a]) for i, a in enumerate(decoded.archs) if a is not None and a in table]
    published = dm.normalizer.normalize(torch.as_tensor(dm.raw[[j for _, j in rows]])).float()
    wanted = targets[[i for i, _ in rows]]
    return {
        "invalid_share": 1 - len(decoded.valid) / len(decoded.archs),
        "in_zc_table": len(rows) / len(decoded.archs),
        "spearman_target_vs_published": dict(zip(dm.proxies, map(float, spearman_corrcoef(published, wanted)))),
    }


def describe(archs: list, bench: NB201Benchmark, dm: ZCCellDataModule, top: float) -> dict:
    valid = [a for a in archs if a is not None]
    acc = np.array([bench.query(a, METRIC) for a in valid])
    table = {a: i for i, a in enumerate(dm.archs_all)}
    in_table = [table[a] for a in valid if a in table]
    pct = {
        p: float(np.mean([(dm.raw[:, dm.proxies.index(p)] < dm.raw[i, dm.proxies.index(p)]).mean() for i in in_table]))
        if in_table
        else float("nan")
        for p in ("synflow", "nwot")
    }
    keys = [dm.space.key(a) for a in valid]
    return {
        "invalid_share": 1 - len(valid) / len(archs),
        "unique": len(set(keys)),
        "novel_share": float(np.mean([k not in dm.train_keys() for k in keys])),
        "acc_mean": float(acc.mean()),
        "acc_median": float(np.median(acc)),
        "top5pct_share": float((acc >= top).mean()),
        "synflow_percentile": pct["synflow"],
        "nwot_percentile": pct["nwot"],
    }


def fit_models(args: argparse.Namespace) -> None:
    """``args.encoder`` and ``args.flow`` fitted with ``nag fit`` where not given (one thread)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = [f"--data.init_args.path={args.zc}"]
    if args.encoder is None:
        config = ROOT / "configs" / "nb201" / "cell_encoder.yaml"
        args.encoder = str(fit(config, args.run_dir, [*data, f"--trainer.max_epochs={args.encoder_epochs}"])[0])
    if args.flow is None:
        overrides = [
            *data,
            f"--trainer.max_epochs={args.flow_epochs}",
            f"--model.init_args.encoder_ckpt={args.encoder}",
        ]
        args.flow = str(fit(ROOT / "configs" / "nb201" / "cell_flow.yaml", args.run_dir, overrides)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=None, help="a trained encoder checkpoint (default: fit one)")
    parser.add_argument("--flow", default=None, help="a trained flow checkpoint (default: fit one on --encoder)")
    parser.add_argument("--encoder-epochs", type=int, default=8)
    parser.add_argument("--flow-epochs", type=int, default=20)
    parser.add_argument("--run-dir", default="runs/benchmarks/cell_flow")
    parser.add_argument("--zc", default="../shared/data/nb201/zc_proxies_cifar10.csv")
    parser.add_argument("--nb201", default="../shared/data/nb201/nb201.csv")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quantile", type=float, default=0.95)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    for path in (args.zc, args.nb201, args.encoder, args.flow):
        if path is not None and not Path(path).is_file():
            sys.exit(f"skipped: {path} not found")
    torch.set_num_threads(1)
    fit_models(args)
    space = NB201Space()
    dm = ZCCellDataModule(space, path=args.zc, arch_column="net_str", proxies=PROXIES)
    bench = NB201Benchmark(args.nb201)
    enc = load_module(CellEncoderModule, args.encoder, None, "--encoder")
    flow = load_module(CellFlowModule, args.flow, None, "--flow")
    all_acc = bench.column(METRIC)
    top = float(np.quantile(all_acc, 0.95))
    level = float(np.sqrt(2) * torch.erfinv(torch.tensor(2 * args.quantile - 1)))
    target = {"synflow": level, "nwot": level}

    report = {
        "encoder": encoder_report(enc, dm, args.samples),
        "adherence": adherence(flow, dm, 0),
        "target": {
            "normalised": target,
            "raw": dict(
                zip(
                    ["synflow", "nwot"],
                    [
                        float(np.quantile(dm.raw_proxies("train")[:, dm.proxies.index(p)], args.quantile))
                        for p in ("synflow", "nwot")
                    ],
                )
            ),
        },
        "nb201_top5pct_threshold": top,
        "methods": {},
    }
    train = dm.raw_proxies("train")
    meeting = np.flatnonzero(
        np.all(
            [
                dm.raw[:, dm.proxies.index(p)] >= np.quantile(train[:, dm.proxies.index(p)], args.quantile)
                for p in target
            ],
            axis=0,
        )
    )
    methods = {
        "flow, high synflow+nwot": lambda s: (
            decode_samples(space, flow.sample(target, args.samples, seed=s), project=False).archs
        ),
        "flow, unconditional": lambda s: (
            decode_samples(space, flow.sample(None, args.samples, seed=s), project=False).archs
        ),
        "vae prior N(0, I)": lambda s: (
            decode_samples(space, flow.encoder.sample_prior(args.samples, seed=s), project=False).archs
        ),
        "uniform NB201": lambda s: space.sample(args.samples, np.random.default_rng(s)),
        "uniform ZC-table cell": lambda s: [
            dm.archs_all[i] for i in np.random.default_rng(s).choice(len(dm.archs_all), args.samples)
        ],
        "ZC-table cells meeting the target": lambda s: [
            dm.archs_all[i] for i in np.random.default_rng(s).choice(meeting, args.samples)
        ],
    }
    for name, draw in methods.items():
        with torch.no_grad():
            runs = [describe(draw(seed), bench, dm, top) for seed in range(args.seeds)]
        report["methods"][name] = {
            k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
            for k in runs[0]
        }
    base = report["methods"]["flow, unconditional"]["acc_mean"]["mean"]
    for m in report["methods"].values():
        m["acc_ratio_vs_unconditional"] = m["acc_mean"]["mean"] / base
    text = markdown(report, args)
    write_report(Path(args.out) / "cell_flow", command(__file__), report, text)
    print(text)


def markdown(r: dict, args: argparse.Namespace) -> str:
    e, a = r["encoder"], r["adherence"]
    lines = [
        "# Cell encoder + CCNF on NAS-Bench-201 (published CIFAR-10 ZC proxies)",
        "",
        (
            f"Encoder on {e['test_cells']} held-out test cells: exact reconstruction {e['recon_acc']:.3f}, "
            f"latent-vs-ZC distance Spearman {e['latent_zc_spearman']:.3f}, "
            f"ZC head Spearman (mean over proxies) {np.mean(list(e['zc_head_spearman'].values())):.3f}, "
            f"N(0, I) decode validity {e['prior_validity']:.3f}."
        ),
        "",
        (
            f"Flow conditioned on each test cell's ZC vector: invalid decodes {a['invalid_share']:.3f} "
            f"({a['in_zc_table']:.3f} of decodes are cells of the ZC table); Spearman(target, published value "
            "of the decoded cell): " + ", ".join(f"{k} {v:.2f}" for k, v in a["spearman_target_vs_published"].items())
        ),
        "",
        (
            f"High target: synflow and nwot at the {args.quantile:.0%} training quantile "
            f"(normalised {r['target']['normalised']['synflow']:.2f}; raw synflow "
            f"{r['target']['raw']['synflow']:.1f}, nwot {r['target']['raw']['nwot']:.1f}). "
            f"{args.samples} samples x {args.seeds} seeds (mean ± std over seeds); top 5% = C10 test acc >= "
            f"{r['nb201_top5pct_threshold']:.2f}; pct = percentile of the published proxy among the table's cells; "
            "novel = share of valid samples whose isomorphism class is not in the training split; "
            "acc ratio = mean accuracy / the unconditional flow's."
        ),
        "",
        *markdown_table(
            [
                "method",
                "invalid",
                "unique",
                "novel",
                "C10 acc mean",
                "median",
                "top-5% share",
                "synflow pct",
                "nwot pct",
                "acc ratio",
            ],
            (
                [
                    name,
                    f"{m['invalid_share']['mean']:.3f}",
                    f"{m['unique']['mean']:.0f}",
                    f"{m['novel_share']['mean']:.2f}",
                    f"{m['acc_mean']['mean']:.2f} ± {m['acc_mean']['std']:.2f}",
                    f"{m['acc_median']['mean']:.2f}",
                    f"{m['top5pct_share']['mean']:.3f}",
                    f"{m['synflow_percentile']['mean']:.2f}",
                    f"{m['nwot_percentile']['mean']:.2f}",
                    f"{m['acc_ratio_vs_unconditional']:.3f}",
                ]
                for name, m in r["methods"].items()
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
