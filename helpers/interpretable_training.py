"""Ordinary vs interpretable CNNs trained the same way from the same initialisation (interpretable CNN paper, Sec. 5)
and their evaluation (Sec. 5.2: part interpretability, location instability; Table 7: accuracy).

Protocol (Sec. 5, "Implementation details"): take a trained performer (notebook 00), keep its conv layers, make its
top conv layer interpretable and insert a new interpretable conv layer above it (:func:`helpers.interpretable.
make_interpretable`: new conv randomly initialised), re-initialise the FC layers, then fine-tune with the task loss
plus the filter loss (Eq. 3). The ordinary baseline is the identical architecture, from the identical weights,
fine-tuned with the same data, schedule and seed but without masks and filter loss.

Knobs (``PROFILES``, a section for :func:`helpers.config.resolve`), all prefixed ``icnn_``:
``epochs_single`` / ``epochs_multi`` (fine-tuning epochs), ``lr`` (peak of the one-cycle schedule), ``grad_ratio``
(filter-loss gradient relative to the task gradient at each interpretable layer), ``decay`` (weight x 1/epoch, as
the official code), ``mu`` (centroid, as the official code, | argmax, as the paper's text), ``reinit_head``
(re-initialise fc6-fc8, as the paper). Teach values come from a sweep on the synthetic data (64 px, small VGG):
keeping the performer's head removed most of the effect; instability ratios (interpretable / ordinary, three
categories) were 0.82 / 0.81 / 0.77 / 0.91 at grad ratios 0.3 / 1 / 3 / 10, 0.96 without the 1/epoch decay, 0.83
with the argmax instead of the centroid, 0.78 with 10 epochs instead of 6; the multi-category net lost 5.3 points of
accuracy after 3 epochs and 0.5 after 5.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .config import batch_slices, check_choice, get_device
from .data.arrays import PartArrays
from .evaluation import (
    PrecomputedMaps,
    instability,
    instability_shortfall,
    mean_of_measured,
    part_interpretability,
    random_reference_instability,
)
from .interpretable import (
    FilterLossConfig,
    filter_loss,
    interpretable_layers,
    make_interpretable,
    set_loss_epoch,
    sibling_name,
)
from .metrics import RF_RADIUS_STRIDES, PartInterpretabilityResult, peak_positions
from .models.geometry import LayerGeometry, feature_size, layer_geometry
from .models.nets import Performer, build_performer
from .models.performers import SplitData, multi_category_performer, single_category_performer
from .models.training import ExtraLoss, TrainingRun, TrainSettings, correct_predictions, train_cached
from .results import claim, paper_numbers

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"icnn_epochs_single": 1, "icnn_epochs_multi": 1, "icnn_lr": 1e-3, "icnn_grad_ratio": 3.0,
              "icnn_decay": True, "icnn_mu": "centroid", "icnn_reinit_head": True},
    "teach": {"icnn_epochs_single": 6, "icnn_epochs_multi": 5, "icnn_lr": 1e-3, "icnn_grad_ratio": 3.0,
              "icnn_decay": True, "icnn_mu": "centroid", "icnn_reinit_head": True},
    "paper": {"icnn_epochs_single": 10, "icnn_epochs_multi": 10, "icnn_lr": 1e-4, "icnn_grad_ratio": 3.0,
              "icnn_decay": True, "icnn_mu": "centroid", "icnn_reinit_head": True},
}
KINDS = ("ordinary", "interpretable")
VERSION = 3  # of the protocol: bump when a change makes cached fine-tuned nets stale
TOP_K = 100  # Sec. 5.2.2: the top-100 images per filter and landmark


# ----------------------------------------------------------------------------------------------------------------
# Building and fine-tuning

def loss_config(settings: dict[str, Any]) -> FilterLossConfig:
    """The filter-loss weighting of ``settings`` (grad-ratio weighting; see ``helpers.interpretable``)."""
    return FilterLossConfig(grad_ratio=settings["icnn_grad_ratio"], decay=settings["icnn_decay"])


def reset_head(net: Performer, seed: int) -> None:
    """Re-initialise the FC layers (Sec. 5: "We initialized parameters of fully-connected (FC) layers"), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in net.classifier.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()


def start_net(performer: Performer, kind: str, settings: dict[str, Any], seed: int = 0) -> Performer:
    """A copy of ``performer`` with the interpretable structure of Sec. 5 (``kind="interpretable"``) or the
    identical ordinary one (no masks, no filter loss); both get the same new conv layer and head from ``seed``."""
    check_choice("kind", kind, KINDS)
    interpretable = kind == "interpretable"
    net = make_interpretable(copy.deepcopy(performer), masks=interpretable, loss=interpretable,
                             mu=settings["icnn_mu"], config=loss_config(settings), seed=seed)
    if settings["icnn_reinit_head"]:
        reset_head(net, seed)
    return net


def filter_loss_hook(multi_category: bool) -> ExtraLoss:
    """The ``extra_loss`` of :func:`helpers.models.training.train`: the filter losses of all interpretable layers
    (Eq. 1-4), told the 1-based epoch (for the 1/epoch decay); filters' categories: the positive class (single) or
    :class:`helpers.interpretable.FilterCategories` from the labels (multi)."""

    def hook(net: nn.Module, labels: torch.Tensor, is_negative: torch.Tensor, epoch: int) -> torch.Tensor:
        set_loss_epoch(net, epoch + 1)
        return filter_loss(net, labels=labels) if multi_category else filter_loss(net, positive=~is_negative)

    return hook


def weights_digest(net: nn.Module) -> str:
    """A short hash of a net's weights (part of a fine-tuned net's cache key: where it started from)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def icnn_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``icnn_*`` knobs of ``settings``."""
    return {key: value for key, value in settings.items() if key.startswith("icnn_")}


ORDINARY_KNOBS = ("icnn_reinit_head",)  # the knobs (besides the schedule) that shape the ordinary net


def _cache_knobs(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The knobs a ``kind`` net depends on: all for the interpretable net; the ordinary net ignores the loss and mask
    knobs, so sweeping them reuses its cached copy."""
    knobs = icnn_settings(settings)
    return knobs if kind == "interpretable" else {key: knobs[key] for key in ORDINARY_KNOBS}


def fine_tune(performer: Performer, data: SplitData, kind: str, settings: dict[str, Any], epochs: int, loss: str,
              name: str, seed: int = 0, device: str | torch.device = "auto", use_cache: bool = True) -> TrainingRun:
    """Fine-tune the ``kind`` net built by :func:`start_net` from ``performer`` on ``data.train`` (cached by the
    start weights, the data, the ``icnn_*`` knobs and the schedule)."""
    multi = performer.num_outputs > 1
    net_config = {"version": VERSION, "arch": performer.arch, "kind": kind, "start": weights_digest(performer),
                  "multi": multi, "icnn": _cache_knobs(kind, settings), "outputs": performer.num_outputs}
    run_settings = TrainSettings(epochs=epochs, batch_size=settings["batch_size"], lr=settings["icnn_lr"],
                                 loss=loss, seed=seed)
    hook = filter_loss_hook(multi) if kind == "interpretable" else None
    return train_cached(lambda: start_net(performer, kind, settings, seed), net_config, data.train, data.key,
                        run_settings, data.val, device, name=f"icnn-{kind}-{name}", use_cache=use_cache,
                        extra_loss=hook)


def single_category_pair(settings: dict[str, Any], category: str, seed: int = 0, device: str | torch.device = "auto",
                         use_cache: bool = True) -> tuple[dict[str, TrainingRun], SplitData]:
    """Ordinary and interpretable nets for ``category`` vs. negatives (logistic loss) from its performer."""
    performer, data = single_category_performer(settings, category, seed, device)
    runs = {kind: fine_tune(performer.net, data, kind, settings, settings["icnn_epochs_single"], "logistic",
                            f"single-{category}", seed, device, use_cache) for kind in KINDS}
    return runs, data


def multi_category_pair(settings: dict[str, Any], seed: int = 0, device: str | torch.device = "auto",
                        use_cache: bool = True) -> tuple[dict[str, TrainingRun], SplitData]:
    """Ordinary and interpretable nets for the softmax multi-category task from the multi-category performer."""
    performer, data = multi_category_performer(settings, seed, device)
    runs = {kind: fine_tune(performer.net, data, kind, settings, settings["icnn_epochs_multi"], "softmax", "multi",
                            seed, device, use_cache) for kind in KINDS}
    return runs, data


# ----------------------------------------------------------------------------------------------------------------
# Evaluation (Sec. 5.2, Table 7)

def evaluated_layer(net: Performer) -> str:
    """The layer the tables evaluate: the output of the top conv layer's mask (after ReLU and mask, Sec. 5.2.1;
    the identity in the ordinary net)."""
    return sibling_name(next(reversed(interpretable_layers(net).values())).conv, "mask")


class LayerMaps(NamedTuple):
    """The top interpretable layer's maps for some images (Fig. 4): ``x`` after ReLU, the ``mask`` the mask layer
    applied (all ones in the ordinary net), ``output`` = x * mask; each (N, C, h, w) on the CPU."""

    x: torch.Tensor
    mask: torch.Tensor
    output: torch.Tensor


@torch.no_grad()
def _top_layer_passes(net: Performer, arrays: PartArrays, device: str | torch.device = "auto", batch_size: int = 128
                      ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Eval-mode forward passes over ``arrays``: (index range, logits, top-layer map x after ReLU, applied mask)."""
    device = get_device(device)
    net.eval().to(device)
    layer = interpretable_layers(net)[net.top_conv]
    for index in batch_slices(len(arrays), batch_size):  # no image: one empty pass (empty maps, right shape)
        logits = net(arrays.float_images(index).to(device))
        mask = layer.mask if layer.use_masks else torch.ones_like(layer.feature_map)
        yield index, logits, layer.feature_map, mask


def top_layer_maps(net: Performer, arrays: PartArrays, device: str | torch.device = "auto") -> LayerMaps:
    """:class:`LayerMaps` of ``net``'s top conv layer for the images of ``arrays``."""
    passes = [(x.cpu(), mask.cpu()) for _, _, x, mask in _top_layer_passes(net, arrays, device)]
    x, mask = (torch.cat(parts) for parts in zip(*passes, strict=True))
    return LayerMaps(x, mask, x * mask)


def top_map_size(settings: dict[str, Any]) -> tuple[int, int]:
    """(h, w) of the top conv layer's maps for the profile's net (the size of the templates)."""
    net = build_performer(settings["net"], 1, settings["image_size"])
    return feature_size(net.features, net.relu_of(net.top_conv), net.input_size)


def strongest_filters(maps: torch.Tensor, count: int) -> list[int]:
    """The ``count`` filters with the highest mean peak response over the images of ``maps`` (N, C, h, w); none
    without an image."""
    if not len(maps):
        return []
    return maps.flatten(2).amax(dim=-1).mean(dim=0).topk(min(count, maps.shape[1])).indices.tolist()


def most_stable_filters(evaluation: Evaluation, count: int) -> list[int]:
    """The ``count`` filters with the lowest location instability (undefined ones last)."""
    values = evaluation.per_filter_instability.nan_to_num(math.inf)
    return values.argsort()[:count].tolist()


def top_images(maps: torch.Tensor, filters: Sequence[int], count: int) -> list[torch.Tensor]:
    """For each filter, the indices of the ``count`` images (of ``maps`` (N, C, h, w)) with its highest peak."""
    peaks = maps.flatten(2).amax(dim=-1)
    return [peaks[:, f].topk(min(count, len(maps))).indices for f in filters]


def filter_peaks(maps: torch.Tensor, geometry: LayerGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and filter of ``maps`` (N, C, h, w): the image-plane peak position (N, C, 2) and the peak relative
    to the filter's strongest response over these images (N, C), in [0, 1] (the weights of Fig. 6)."""
    positions, scores = peak_positions(maps, geometry)
    if not len(maps):  # no image: nothing to weigh
        return positions, scores
    return positions, scores / scores.amax(dim=0).clamp_min(1e-12)


def heatmap_panels(runs: Mapping[str, Mapping[str, TrainingRun]], data: Mapping[str, SplitData], per_category: int,
                   device: str | torch.device = "auto"
                   ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Fig. 6 inputs: the first ``per_category`` test positives of each category (T, 3, H, W) and, per kind, the
    :func:`filter_peaks` of its top conv layer on them (weights relative to the whole test split)."""
    images, peaks = [], {kind: [] for kind in KINDS}
    for category, by_kind in runs.items():
        positives = data[category].test.positives()
        images.append(positives.float_images(slice(0, per_category)))
        for kind in KINDS:
            net = by_kind[kind].net
            maps = top_layer_maps(net, positives, device).output
            positions, weights = filter_peaks(maps, layer_geometry(net.features, evaluated_layer(net)))
            peaks[kind].append((positions[:per_category], weights[:per_category]))
    panels = {kind: (torch.cat([p for p, _ in rows]), torch.cat([w for _, w in rows])) for kind, rows in peaks.items()}
    return torch.cat(images), panels


@dataclass
class Evaluation:
    """One net on one test split: the metrics of Tables 1-7 (fractions) and the per-filter values behind them."""

    accuracy: float
    instability: float
    random_reference: float
    interpretability: float
    interpretability_before_mask: float
    per_filter_instability: torch.Tensor
    per_filter_interpretability: torch.Tensor
    best_part: torch.Tensor
    part_names: tuple[str, ...]
    instability_shortfall: str | None = None  # why the instability (and its reference) could not be measured


def _category_index(arrays: PartArrays) -> tuple[torch.Tensor, int]:
    """(N,) index of each sample's category among the categories present, and their number."""
    names = list(dict.fromkeys(arrays.categories))
    return torch.tensor([names.index(c) for c in arrays.categories], dtype=torch.long), len(names)


def _forward(net: Performer, arrays: PartArrays, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over ``arrays``: logits (N, K) and, for the positives, the top layer's maps after ReLU and the masks
    applied to them, all on the CPU."""
    logits, maps, masks = [], [], []
    for index, batch_logits, x, mask in _top_layer_passes(net, arrays, device):
        positive = ~arrays.is_negative[index].to(x.device)
        logits.append(batch_logits.cpu())
        maps.append(x[positive].cpu())
        masks.append(mask[positive].cpu())
    return torch.cat(logits), torch.cat(maps), torch.cat(masks)


def evaluate(net: Performer, test: PartArrays, landmarks: Sequence[str], device: str | torch.device = "auto",
             seed: int = 0) -> Evaluation:
    """Accuracy (Table 7), location instability (Tables 3-6) with the random-position reference, and part
    interpretability (Tables 1-2) of ``net``'s top conv layer after ReLU and mask (Sec. 5.2.1) on the positives
    of ``test``; part interpretability also before the mask (the same for the ordinary net).

    Single-category nets pool all positives; multi-category nets use the protocols of Sec. 5.2.1-5.2.2
    (``assigned_category`` for interpretability, ``min_category`` for instability)."""
    device = get_device(device)
    logits, x, mask = _forward(net, test, device)
    geometry = layer_geometry(net.features, evaluated_layer(net))
    positives = test.positives()
    masked = PrecomputedMaps(x * mask, geometry, device)
    categories, num_categories = _category_index(positives)
    by_category = {"categories": categories, "num_categories": num_categories}
    multi = net.num_outputs > 1
    protocol = "min_category" if multi else "single"
    stability = instability(masked, positives, landmarks, TOP_K, protocol=protocol, **by_category)
    reference = random_reference_instability(masked, positives, landmarks, TOP_K, seed, protocol, **by_category)

    def parts_of(source: PrecomputedMaps) -> tuple[PartInterpretabilityResult, tuple[str, ...]]:
        """Sec. 5.2.1 against the paper's merged part groups, a round RF per valid activation (footnote 6);
        multi-category: each filter on the images of the category that activates it most."""
        return part_interpretability(source, positives, protocol="assigned_category" if multi else "single",
                                     rf_radius=RF_RADIUS_STRIDES * geometry.stride, **by_category)

    parts, names = parts_of(masked)
    unmasked = parts if bool((mask == 1).all()) else parts_of(PrecomputedMaps(x, geometry, device))[0]
    correct = correct_predictions(logits, test.labels, test.is_negative).float().mean()
    return Evaluation(float(correct), stability.value, reference.value, parts.value, unmasked.value,
                      stability.per_unit.float().cpu(), parts.per_filter.float().cpu(), parts.best_part.cpu(), names,
                      instability_shortfall(test, landmarks, by_category=multi))


def best_part_counts(evaluations: Mapping[str, Mapping[str, Evaluation]]) -> dict[str, dict[str, int]]:
    """Per kind, how many filters (over all categories' nets) have each part as their best part (argmax_k P_f,k)."""
    counts: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for by_kind in evaluations.values():
        for kind, evaluation in by_kind.items():
            if not evaluation.part_names:  # no positive test image: no part groups, no best parts
                continue
            for part in evaluation.best_part.tolist():
                name = evaluation.part_names[part]
                counts[kind][name] = counts[kind].get(name, 0) + 1
    return counts


def mean_over(evaluations: Sequence[Evaluation], field: str) -> float:
    """Mean of one metric over categories."""
    values = [getattr(e, field) for e in evaluations]
    return float(np.mean(values)) if values else math.nan


def measured_instability(evaluations: Sequence[Evaluation], field: str = "instability") -> float | None:
    """Mean of an instability ``field`` over the evaluations where it could be measured (None if none could)."""
    return mean_of_measured([getattr(e, field) for e in evaluations],
                            [e.instability_shortfall is None for e in evaluations])


def _ratio(numerator: float | None, denominator: float | None) -> float:
    """``numerator / denominator``; NaN where either was not measured (None)."""
    return math.nan if numerator is None or denominator is None else numerator / denominator


# ----------------------------------------------------------------------------------------------------------------
# Tables, paper values, claims

INSTABILITY_TABLES = {"ilsvrc_part": "location_instability_ilsvrc_single", "cub200": "location_instability_cub_single"}
PAPER_NET = "VGG-16"  # the paper's structure closest to the VGG-style performers


def paper_values(dataset: str, net: str = PAPER_NET) -> dict[str, list[float]]:
    """The paper's [ordinary, interpretable] averages for ``net`` that our tables sit beside (fractions): Table 1/2
    (part interpretability, Pascal VOC Part), Table 3/4/5 (instability of the dataset's kind), Table 6 (multi,
    softmax), Table 7 (accuracy, Pascal VOC Part)."""
    numbers = paper_numbers()["interpretable_cnn"]
    table = INSTABILITY_TABLES.get(dataset, "location_instability_voc_single")
    return {
        "interpretability_single": numbers["part_interpretability_voc_single"][net],
        "interpretability_multi": numbers["part_interpretability_voc_multi"][net]["softmax"],
        "instability_single": numbers[table][net],
        "instability_multi": numbers["location_instability_voc_multi_softmax"][net],
        "accuracy_single": [v / 100 for v in numbers["accuracy_single_voc_percent"][net]],
        "accuracy_multi": [v / 100 for v in numbers["accuracy_multi_voc_softmax_percent"][net]],
        "_source": f"{net}; instability: {table}; the rest: Pascal VOC Part, softmax for multi-category",
    }


SUMMARY_FIELDS = ("accuracy", "instability", "interpretability", "interpretability_before_mask")


def paper_by_kind(paper: Mapping[str, Any], key: str) -> dict[str, float]:
    """The paper's [ordinary, interpretable] pair ``paper[key]`` keyed by kind."""
    return dict(zip(KINDS, paper[key], strict=True))


def summary(single: Mapping[str, Mapping[str, Evaluation]], multi: Mapping[str, Evaluation], layer: str,
            landmarks: Sequence[str]) -> dict[str, Any]:
    """The results file's metrics: averages over categories per kind (fractions), per-category values and the
    protocol behind them. ``single[category][kind]``, ``multi[kind]``."""
    metrics: dict[str, Any] = {}
    for kind in KINDS:
        rows = [single[category][kind] for category in single]
        metrics[f"instability_{kind}"] = measured_instability(rows)
        metrics[f"interpretability_{kind}"] = mean_over(rows, "interpretability")
        metrics[f"interpretability_before_mask_{kind}"] = mean_over(rows, "interpretability_before_mask")
        metrics[f"accuracy_single_{kind}"] = mean_over(rows, "accuracy")
        metrics[f"accuracy_multi_{kind}"] = multi[kind].accuracy
        metrics[f"instability_multi_{kind}"] = measured_instability([multi[kind]])
        metrics[f"interpretability_multi_{kind}"] = multi[kind].interpretability
        metrics[f"interpretability_before_mask_multi_{kind}"] = multi[kind].interpretability_before_mask
    metrics["instability_random_positions"] = measured_instability([single[c]["ordinary"] for c in single],
                                                                   "random_reference")
    metrics["instability_multi_random_positions"] = measured_instability([multi["ordinary"]], "random_reference")
    metrics["unmeasured"] = {f"instability {name}": evaluation.instability_shortfall
                             for name, evaluation in [*((c, single[c]["ordinary"]) for c in single),
                                                      ("multi", multi["ordinary"])]
                             if evaluation.instability_shortfall}
    metrics["per_category"] = {
        category: {**{kind: {field: getattr(evaluation, field) for field in SUMMARY_FIELDS}
                      for kind, evaluation in by_kind.items()},
                   "instability_random_positions": by_kind["ordinary"].random_reference}
        for category, by_kind in single.items()}
    metrics["protocol"] = {
        "layer": f"{layer}: the new interpretable conv layer on top (Sec. 5), after its ReLU and mask",
        "instability": f"Sec. 5.2.2, top-{TOP_K} images per filter and landmark, landmarks {list(landmarks)}; "
                       "single-category: the category's test positives; multi-category: mean_f min_c "
                       "mean_k D_f,k (min_category)",
        "interpretability": "Sec. 5.2.1, 99.5th-percentile threshold, a round RF of radius "
                            f"{RF_RADIUS_STRIDES:g} x stride per valid activation (footnote 6), IoU > 0.2, the "
                            "paper's merged part groups; "
                            "multi-category: each filter on its most-activating category's images; "
                            "*_before_mask: the same on the maps before the mask layer (supplementary)",
        "averaging": "single-category metrics: mean over categories of the mean over filters",
    }
    return metrics


def check_claims(metrics: Mapping[str, Any], paper: Mapping[str, Any], max_ratio: float = 0.8,
                 max_accuracy_drop: float = 0.05) -> list[dict[str, Any]]:
    """The paper's claims checked on our numbers: interpretable filters are far more stable (instability ratio
    <= ``max_ratio``; paper ~0.6-0.7) and more part-specific, single-category accuracy drops only slightly, and
    multi-category accuracy does not drop (both within ``max_accuracy_drop``)."""
    ratio = _ratio(metrics["instability_interpretable"], metrics["instability_ordinary"])
    multi_ratio = _ratio(metrics["instability_multi_interpretable"], metrics["instability_multi_ordinary"])
    single_drop = metrics["accuracy_single_ordinary"] - metrics["accuracy_single_interpretable"]
    multi_drop = metrics["accuracy_multi_ordinary"] - metrics["accuracy_multi_interpretable"]
    paper_ratio = paper["instability_single"][1] / paper["instability_single"][0]
    paper_multi_ratio = paper["instability_multi"][1] / paper["instability_multi"][0]
    return [
        claim(f"single-category instability interpretable / ordinary <= {max_ratio}", ratio, paper_ratio,
              ratio <= max_ratio),
        claim("single-category part interpretability: interpretable > ordinary",
              [metrics["interpretability_ordinary"], metrics["interpretability_interpretable"]],
              paper["interpretability_single"],
              metrics["interpretability_interpretable"] > metrics["interpretability_ordinary"]),
        claim(f"single-category accuracy drop <= {max_accuracy_drop}", single_drop,
              paper["accuracy_single"][0] - paper["accuracy_single"][1], single_drop <= max_accuracy_drop),
        claim("multi-category instability: interpretable < ordinary", multi_ratio, paper_multi_ratio,
              multi_ratio < 1),
        claim(f"multi-category accuracy drop <= {max_accuracy_drop}", multi_drop,
              paper["accuracy_multi"][0] - paper["accuracy_multi"][1], multi_drop <= max_accuracy_drop),
    ]
