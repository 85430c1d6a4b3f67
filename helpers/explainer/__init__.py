"""Explainer network (Zhang, Yang, Ma, Wang, Zhu: "Unsupervised learning of neural networks to explain neural
networks"): an auto-encoder attached to a pre-trained performer that disentangles the performer's feature maps into
object-part filters (interpretable track) plus a residual ordinary track, learned by distillation without labels.

- :mod:`.model`: the explainer (Sec. 3.1, Fig. 2) and its attachment to any performer by layer names.
- :mod:`.training`: Eq. (1) distillation, Explainer+cls, the checkpoint cache.
- :mod:`.analysis`: Tables 1-7 and Fig. 5 measurements.

Notebook 03 takes its knobs from :data:`PROFILES` (a section for :func:`helpers.config.resolve`) and turns them into
:class:`DistillSettings` with :func:`distill_settings`.
"""

from __future__ import annotations

from typing import Any

from .analysis import (
    LayerComparison,
    PartContribution,
    classification_error,
    compare_layers,
    fixed_position_instability,
    grad_cam_maps,
    initialisation_gaps,
    interpretable_source,
    most_stable_filters,
    paper_summary,
    part_contributions,
    performer_sources,
    strongest_images,
)
from .model import (
    Attachment,
    Encoding,
    ExplainedPerformer,
    Explainer,
    FilterTap,
    NormLayer,
    PartMask,
    attachment,
    explainer_geometry,
    fold_batch_norm,
    performer_bottom,
)
from .training import (
    DistillSettings,
    ExplainerRun,
    PerformerFeatures,
    distill,
    distill_cached,
    fine_tune_with_labels,
    fine_tune_with_labels_cached,
    performer_features,
    predicted_flags,
    reconstruction_loss,
    reconstruction_weights,
    relative_error,
)

# Notebook 03's knobs per profile (explainer_* so they never clash with the shared profile's keys).
# eta is in units where the reconstruction weight c = 1 (the paper: c = 5e4, eta = 1e6, i.e. eta / c = 20; VGG-16:
# eta / c = 3); filter_ratio is the paper's 1/300 in lambda_f. Masks use the official code's activation-weighted
# centroid (see the notebook's section on what we tried).
_COMMON: dict[str, Any] = {
    "explainer_eta": 30.0,
    "explainer_filter_ratio": 1 / 300,
    "explainer_mu": "centroid",
    "explainer_lr": 1e-3,
    "explainer_lr_p": 0.05,
    "explainer_lr_cls": 3e-4,
    "explainer_batch_size": 64,
}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {**_COMMON, "explainer_epochs_single": 1, "explainer_epochs_multi": 1, "explainer_epochs_cls": 1,
              "explainer_batch_size": 32},
    "teach": {**_COMMON, "explainer_epochs_single": 6, "explainer_epochs_multi": 4, "explainer_epochs_cls": 3},
    "paper": {**_COMMON, "explainer_eta": 20.0, "explainer_epochs_single": 20, "explainer_epochs_multi": 20,
              "explainer_epochs_cls": 5, "explainer_batch_size": 32},
}


def distill_settings(settings: dict[str, Any], multi: bool = False, seed: int = 0, cls: bool = False
                     ) -> DistillSettings:
    """:class:`DistillSettings` from resolved notebook settings: single- or multi-category epochs, or with ``cls``
    the epochs and learning rate of the Explainer+cls fine-tuning."""
    epochs = "explainer_epochs_cls" if cls else "explainer_epochs_multi" if multi else "explainer_epochs_single"
    return DistillSettings(
        epochs=settings[epochs], batch_size=settings["explainer_batch_size"],
        lr=settings["explainer_lr_cls" if cls else "explainer_lr"], lr_p=settings["explainer_lr_p"],
        eta=settings["explainer_eta"], filter_ratio=settings["explainer_filter_ratio"], mu=settings["explainer_mu"],
        seed=seed,
    )


__all__ = [
    "PROFILES",
    "Attachment",
    "DistillSettings",
    "Encoding",
    "ExplainedPerformer",
    "Explainer",
    "ExplainerRun",
    "FilterTap",
    "LayerComparison",
    "NormLayer",
    "PartContribution",
    "PartMask",
    "PerformerFeatures",
    "attachment",
    "classification_error",
    "compare_layers",
    "distill",
    "distill_cached",
    "distill_settings",
    "explainer_geometry",
    "fine_tune_with_labels",
    "fine_tune_with_labels_cached",
    "fixed_position_instability",
    "fold_batch_norm",
    "grad_cam_maps",
    "initialisation_gaps",
    "interpretable_source",
    "most_stable_filters",
    "paper_summary",
    "part_contributions",
    "performer_bottom",
    "performer_features",
    "performer_sources",
    "predicted_flags",
    "reconstruction_loss",
    "reconstruction_weights",
    "relative_error",
    "strongest_images",
]
