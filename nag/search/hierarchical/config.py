"""Settings of the hierarchical pipeline: the task and its budgets, the cell table, the three
models' fits, generation, ranking and training (the sections of
``configs/hierarchical/pipeline.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nag.search.short_training import Schedule
from nag.spaces.macro import MacroConstraints
from nag.zc import PROXIES

MNIST = "../shared/data/images/mnist_5k.csv.gz"


@dataclass
class Task:
    """What networks are generated for: a classification task and two budgets."""

    num_classes: int = 10
    input_size: int = 16
    in_channels: int = 1
    max_params: int = 40_000
    max_flops: int = 4_000_000

    @property
    def constraints(self) -> MacroConstraints:
        return MacroConstraints(self.num_classes, self.input_size, self.max_params, self.max_flops, self.in_channels)


@dataclass
class CellTable:
    """ZC vectors of ``num_cells`` distinct random CellSpace cells, each scored inside a small
    network (a ``width``-channel stem and the cell, global pooling, linear head) on a seeded
    batch of ``batch_size`` images resized to ``image_size``."""

    path: str = "runs/hierarchical/cell_zc.csv"
    num_cells: int = 1000
    images: str = MNIST
    image_size: int = 8
    batch_size: int = 32
    width: int = 16
    num_classes: int = 10
    proxies: list[str] = field(default_factory=lambda: list(PROXIES))
    seed: int = 0


@dataclass
class ModelFit:
    """A model of the pipeline: its ``nag fit`` YAML, fitted here for ``epochs`` (default: the
    YAML's ``max_epochs``) unless a trained checkpoint ``ckpt`` is given."""

    config: str
    epochs: int | None = None
    ckpt: str | None = None


@dataclass
class Generation:
    """How networks are generated.

    ``condition``: proxy -> quantile of the cell table's training cells that the CCNF is
    asked for (rank-normalised ZC units, so quantile ``q`` is the normal quantile of ``q``).
    ``match``: proxies conditioned on the value of the slot's vocabulary cell instead (cost
    proxies keep a slot as expensive as the macro transformer planned it).
    ``cell_candidates``: cells drawn per slot; a network takes, slot by slot, the candidate
    of best predicted ZC (the encoder's head, mean over ``condition``'s proxies) that still
    lets the network meet both budgets with the cheapest candidates in the remaining slots
    (closed-form costs), or the cheapest one when none does. With 1, every slot takes its
    one draw as it comes.
    ``cell_rounds``: draws for a slot whose candidates all failed to decode, before its
    network is given up.
    """

    num_samples: int = 64
    temperature: float = 1.0
    condition: dict[str, float] = field(default_factory=lambda: {"synflow": 0.9, "nwot": 0.9})
    match: list[str] = field(default_factory=lambda: ["params", "flops"])
    cell_candidates: int = 4
    cell_rounds: int = 4


@dataclass
class Training:
    """Ranking and brief training of the networks that are kept.

    ``rank_by``: proxies of the whole network, combined by mean rank. NASWOT by default: the
    generator already pushes synflow up (CCNF condition, the macro transformer's evolution
    fitness), and among its networks synflow no longer tracked 2-epoch accuracy in a one-off
    check on seeds 10 and 11, kept apart from the benchmark's (Spearman -0.04 vs 0.57 for
    nwot, 12 networks). Each network is trained through a
    :class:`~nag.search.training_benchmark.TrainingBenchmark`, ``repeats`` times from seeds
    derived from the run's (each draws the weights and the batches) and averaged, each training
    kept in ``store`` so a rerun trains nothing twice.
    """

    top_k: int = 3
    rank_by: list[str] = field(default_factory=lambda: ["nwot"])
    proxy_batch_size: int = 32
    epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    test_size: int = 1000
    train_size: int | None = None
    split_seed: int = 0
    schedule: Schedule = "constant"
    repeats: int = 1
    store: str | None = "runs/trainings"
    accelerator: str = "auto"


def shown_proxies(training: Training) -> list[str]:
    """Proxies reported for every trained network: the ranking ones, synflow and nwot."""
    return list(dict.fromkeys([*training.rank_by, "synflow", "nwot"]))


DEFAULT_TASK, DEFAULT_TABLE, DEFAULT_GENERATION, DEFAULT_TRAINING = Task(), CellTable(), Generation(), Training()
DEFAULT_MACRO = ModelFit("configs/hierarchical/macro_transformer.yaml", epochs=25)
DEFAULT_ENCODER = ModelFit("configs/hierarchical/cell_encoder.yaml")
DEFAULT_FLOW = ModelFit("configs/hierarchical/cell_flow.yaml")
