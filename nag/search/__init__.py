"""Search strategies run against a benchmark through a counting :class:`QueryOracle`."""

from nag.search.bo import BayesianOptimization
from nag.search.conditional_generation import ConditionalGenerationSearch
from nag.search.evaluators import Evaluator, Failed, InProcess, ProcessPool, Ray
from nag.search.evolution import RegularizedEvolution
from nag.search.local_search import LocalSearch
from nag.search.oracle import (
    BudgetExhausted,
    QueryOracle,
    SearchResult,
    candidate_stream,
)
from nag.search.other_tasks import OtherTasksRanking, SourceTask
from nag.search.random_search import RandomSearch
from nag.search.result_store import ResultStore
from nag.search.runner import run_search
from nag.search.strategy import SearchStrategy
from nag.search.training_benchmark import TrainingBenchmark
from nag.search.transfer import TransferSearch

__all__ = [
    "BayesianOptimization",
    "BudgetExhausted",
    "ConditionalGenerationSearch",
    "Evaluator",
    "Failed",
    "InProcess",
    "LocalSearch",
    "OtherTasksRanking",
    "ProcessPool",
    "QueryOracle",
    "RandomSearch",
    "Ray",
    "RegularizedEvolution",
    "ResultStore",
    "SearchResult",
    "SearchStrategy",
    "SourceTask",
    "TrainingBenchmark",
    "TransferSearch",
    "candidate_stream",
    "run_search",
]
