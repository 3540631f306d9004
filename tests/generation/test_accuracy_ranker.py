"""The device flow's default accuracy ranker: exact where labelled, a useful ranking elsewhere."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from nag.benchmarks import NBGraphBenchmark
from nag.datamodules import ArchitectureDataModule
from nag.errors import ConfigError
from nag.generation.accuracy_ranker import RidgeRanker, default_ranker


@pytest.fixture(scope="module")
def cora() -> NBGraphBenchmark:
    return NBGraphBenchmark("cora")


def test_labelled_architectures_keep_their_labels_and_the_rest_are_ranked(cora):
    archs, acc = cora.archs(), cora.column("valid_acc")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(archs))
    train, test = order[:3000], order[3000:6000]
    ranker = RidgeRanker(cora.space, [archs[i] for i in train], acc[train], "valid_acc")
    np.testing.assert_allclose(ranker([archs[i] for i in train[:50]]), acc[train[:50]])
    rho = spearmanr(ranker([archs[i] for i in test]), acc[test])[0]
    assert rho > 0.5, f"held-out Spearman {rho:.2f}"


def test_a_cost_is_negated_so_larger_scores_stay_better(cora):
    archs, latency = cora.archs()[:500], cora.column("latency")[:500]
    fast_first = RidgeRanker(cora.space, archs, latency, "latency", higher_is_better=False)
    np.testing.assert_allclose(fast_first(archs[:5]), -latency[:5])


def test_too_few_labels_is_a_config_error(cora):
    with pytest.raises(ConfigError, match="valid_acc"):
        RidgeRanker(cora.space, cora.archs()[:3], np.array([0.5, np.nan, np.nan]), "valid_acc")


def test_the_default_ranks_by_the_first_maximised_target_of_the_training_split(cora):
    dm = ArchitectureDataModule(cora, targets=["latency", "valid_acc"], split=(0.8, 0.1, 0.1), train_size=500)
    ranker = default_ranker(dm)
    assert ranker.metric == "valid_acc" and ranker.labels == 500
    assert "500 training-split labels" in ranker.description
    costs_only = ArchitectureDataModule(cora, targets=["latency"], split=(0.8, 0.1, 0.1))
    assert default_ranker(costs_only) is None
