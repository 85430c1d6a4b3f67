"""Metrics of the four papers (docs/metrics.md): location instability, part interpretability and Network Dissection
IoU, normalized distance, semantic purity, classification accuracy.

Every function takes tensors of any layer (any C, h, w), runs on the inputs' device and is vectorised over images;
the accumulators (:class:`LocationInstability`, :class:`ActivationThreshold` + :class:`PartIoU`,
:class:`SemanticPurity`) take batches (e.g. from ``helpers.models.features.iter_features``) and give exactly the
one-shot functions' results.
"""

from .instability import (
    InstabilityResult,
    LocationInstability,
    explanatory_graph_instability,
    location_instability,
    peak_positions,
    present_once,
    random_position_instability,
)
from .localization import (
    DistanceResult,
    PurityResult,
    SemanticPurity,
    classification_accuracy,
    normalized_distance,
    semantic_purity,
)
from .parts import (
    RF_RADIUS_STRIDES,
    ActivationThreshold,
    DissectionResult,
    PartInterpretabilityResult,
    PartIoU,
    activation_thresholds,
    network_dissection,
    part_interpretability,
    round_rf_regions,
    upsample_to_image,
)

__all__ = [
    "RF_RADIUS_STRIDES",
    "ActivationThreshold",
    "DissectionResult",
    "DistanceResult",
    "InstabilityResult",
    "LocationInstability",
    "PartInterpretabilityResult",
    "PartIoU",
    "PurityResult",
    "SemanticPurity",
    "activation_thresholds",
    "classification_accuracy",
    "explanatory_graph_instability",
    "location_instability",
    "network_dissection",
    "normalized_distance",
    "part_interpretability",
    "peak_positions",
    "present_once",
    "random_position_instability",
    "round_rf_regions",
    "semantic_purity",
    "upsample_to_image",
]
