"""Hierarchical generative NAS end to end (``nag search-hierarchical``).

For a task (classes, input size) and params/FLOPs budgets:

1. the macro transformer writes ``generation.num_samples`` macro networks (stem, stages of
   cell slot / channels / stride / repeats) for the budgets;
2. the CCNF fills every cell slot with a new cell, sampled for a target ZC vector: chosen
   proxies at high quantiles of the training cells (``generation.condition``), optionally
   with the slot's vocabulary cell's own cost proxies (``generation.match``) so the macro's
   budget reasoning still holds; undecodable cells are counted and re-drawn; of a slot's
   ``generation.cell_candidates`` cells the one of best predicted ZC that keeps the network
   completable within budget (closed-form costs) is kept;
3. the networks are built and checked exactly (closed-form params/FLOPs): the share within
   both budgets *before* the check is reported, only satisfiers go on;
4. satisfiers are ranked by zero-cost proxies of the whole network on a task image batch;
5. the top-k are trained briefly on MNIST-5k (fixed split) and their test accuracy reported,
   next to ``top_k`` random networks (random macro, random cells) within the same budgets,
   trained the same way -- the baseline of the same run, over the same seeds.

The three models come from their YAML configs (the ones ``nag fit`` reads) and are fitted
by ``nag fit`` itself when no checkpoint is given (:func:`nag.io.fit_cache.fit_cached`),
cached under ``cache_dir`` by a digest of everything that determines them; the cell models
learn from ZC vectors of CellSpace cells that are computed here with :mod:`nag.zc` on small
networks (written once to ``cell_table.path``).

Files: :mod:`.config` (the settings), :mod:`.cell_table` (ZC vectors of cells),
:mod:`.generator` (macro transformer + CCNF), :mod:`.pipeline` (models, ranking, training,
the search), :mod:`.report` (terminal tables).
"""

from nag.search.hierarchical.cell_table import CellProxies, build_cell_table
from nag.search.hierarchical.config import (
    MNIST,
    CellTable,
    Generation,
    ModelFit,
    Task,
    Training,
    shown_proxies,
)
from nag.search.hierarchical.generator import (
    SKIP_CELL,
    Generated,
    HierarchicalGenerator,
    free_space,
    random_satisfiers,
)
from nag.search.hierarchical.pipeline import (
    build,
    evaluate,
    fit_model,
    network_proxies,
    prepare_models,
    rank_score,
    run_hierarchical_search,
    search,
)
from nag.search.hierarchical.report import format_report

__all__ = [
    "MNIST",
    "SKIP_CELL",
    "CellProxies",
    "CellTable",
    "Generated",
    "Generation",
    "HierarchicalGenerator",
    "ModelFit",
    "Task",
    "Training",
    "build",
    "build_cell_table",
    "evaluate",
    "fit_model",
    "format_report",
    "free_space",
    "network_proxies",
    "prepare_models",
    "random_satisfiers",
    "rank_score",
    "run_hierarchical_search",
    "search",
    "shown_proxies",
]
