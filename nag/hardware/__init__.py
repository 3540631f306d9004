"""Few-shot latency prediction for a new device, and generation under that device's budget.

``LatencyMetaPredictor`` is meta-trained on the device tables nag has (:mod:`.sources`) and
adapted in closed form to K measured ``arch,latency`` rows (:mod:`.tables`), with a
calibrated Student-t predictive distribution (:mod:`.bayes`); :mod:`.baselines` holds what
it must beat; :mod:`.generate` turns a Generator's samples into the most accurate
architectures predicted to fit the budget (``nag generate --device_table ... --budget ...``);
:mod:`.measure` times architectures on this machine and writes such a table (``nag measure-latency``).
"""

from nag.hardware.baselines import CostFit, NearestDevice
from nag.hardware.bayes import spearman
from nag.hardware.features import ArchFeatures, TableCosts, live_labels, pruned
from nag.hardware.generate import (
    DeviceSelection,
    condition_for_budget,
    generate_for_device,
    generate_for_device_table,
    meta_train,
    predictor_scores,
    propose_measurements,
    select_for_device,
)
from nag.hardware.measure import Measurement, measure_device_table, measure_latency, write_latency_table
from nag.hardware.predictor import AdaptedLatency, LatencyMetaPredictor, LatencyModel, LatencyPrediction
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
    "condition_for_budget",
    "cost_columns",
    "device_family",
    "generate_for_device",
    "generate_for_device_table",
    "live_labels",
    "measure_device_table",
    "measure_latency",
    "meta_train",
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
