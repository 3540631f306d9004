"""Few-shot latency prediction for a new device, and generation under that device's budget.

``LatencyMetaPredictor`` is meta-trained on the device tables nag has (:mod:`.sources`) and
adapted in closed form to K measured ``arch,latency`` rows (:mod:`.tables`), with a
calibrated Student-t predictive distribution (:mod:`.bayes`); :mod:`.baselines` holds what
it must beat; :mod:`.meta_training` trains it once per set of tables (cached);
:mod:`.selection` keeps the best candidates predicted to fit a budget and :mod:`.active` picks
which to measure next (drawing them from a generator is :mod:`nag.generation.device`'s);
:mod:`.measure` times architectures on this machine and writes such a table (``nag measure-latency``).
"""

from nag.hardware.active import propose_measurements
from nag.hardware.baselines import CostFit, NearestDevice
from nag.hardware.bayes import spearman
from nag.hardware.features import ArchFeatures, TableCosts, live_labels, pruned
from nag.hardware.measure import Measurement, measure_device_table, measure_latency, write_latency_table
from nag.hardware.meta_training import meta_train, meta_trained
from nag.hardware.predictor import AdaptedLatency, LatencyMetaPredictor, LatencyModel, LatencyPrediction
from nag.hardware.selection import DeviceSelection, predictor_scores, select_for_device
from nag.hardware.sources import cost_columns, device_family, source_values
from nag.hardware.tables import Budget, DeviceTable, parse_budget, read_device_table

__all__ = [
    "AdaptedLatency",
    "ArchFeatures",
    "Budget",
    "CostFit",
    "DeviceSelection",
    "DeviceTable",
    "LatencyMetaPredictor",
    "LatencyModel",
    "LatencyPrediction",
    "Measurement",
    "NearestDevice",
    "TableCosts",
    "cost_columns",
    "device_family",
    "live_labels",
    "measure_device_table",
    "measure_latency",
    "meta_train",
    "meta_trained",
    "parse_budget",
    "predictor_scores",
    "propose_measurements",
    "pruned",
    "read_device_table",
    "select_for_device",
    "source_values",
    "spearman",
    "write_latency_table",
]
