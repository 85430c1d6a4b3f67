"""Part localization and semantic metrics: normalized distance (explanatory graph Sec. 4.5, Experiment 3, Tables 2-5),
semantic purity (automatic stand-in for the explanatory graph paper's human raters, Fig. 6/8) and accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


@dataclass
class DistanceResult:
    value: float  # mean normalized distance over objects that have the part (NaN if none)
    per_object: Tensor  # (N,) NaN where the object lacks the part
    count: int  # objects that have the part
    inside_rate: float | None  # fraction of those whose prediction lies inside a ground-truth box


def _instances(values: Tensor | Sequence[Tensor], width: int) -> Tensor:
    """(N, width) or (N, M, width) tensor, or N tensors (M_i, width) -> (N, M, width), NaN-padded."""
    if isinstance(values, Tensor):
        return values[:, None] if values.dim() == 2 else values
    rows = [torch.as_tensor(v, dtype=torch.float32).reshape(-1, width) for v in values]
    return pad_sequence(rows, batch_first=True, padding_value=math.nan)


def normalized_distance(predicted: Tensor, truth: Tensor | Sequence[Tensor], image_size: tuple[int, int],
                        boxes: Tensor | Sequence[Tensor] | None = None) -> DistanceResult:
    """||predicted - nearest ground-truth instance|| / sqrt(H^2 + W^2) (explanatory graph Sec. 4.5, Experiment 3).

    ``predicted`` (N, 2) (y, x) in the object-crop frame; ``truth`` (N, 2), (N, M, 2) or a list of (M_i, 2)
    instances, NaN rows = absent. ``boxes`` (same layouts, last dim 4 = y0, x0, y1, x1, inclusive): also report the
    rate of predictions inside any ground-truth box, over the objects that have the part.
    """
    truth = _instances(truth, 2).to(predicted.device)
    has_part = truth.isfinite().all(-1).any(-1)  # (N,)
    if (has_part & ~predicted.isfinite().all(-1)).any():
        raise ValueError("predicted positions must be finite for every object that has the part")
    dist = (predicted[:, None].float() - truth.float()).norm(dim=-1)  # (N, M)
    nearest = torch.where(dist.isnan(), math.inf, dist).amin(dim=1) if dist.shape[1] else dist.sum(1)
    per_object = torch.where(has_part, nearest / math.hypot(*image_size), math.nan)
    count = int(has_part.sum())
    value = per_object[has_part].mean().item() if count else math.nan
    inside_rate = None
    if boxes is not None:
        box = _instances(boxes, 4).to(predicted.device)
        y, x = predicted[:, None, 0], predicted[:, None, 1]
        inside = ((box[..., 0] <= y) & (y <= box[..., 2]) & (box[..., 1] <= x) & (x <= box[..., 3])).any(-1)
        inside_rate = inside[has_part].float().mean().item() if count else math.nan
    return DistanceResult(value, per_object, count, inside_rate)


@dataclass
class PurityResult:
    value: float  # mean purity over units with a positive total score
    per_unit: Tensor  # (U,) largest fraction of the top-K inferences inside one part
    best_part: Tensor  # (U,) that part's index (0-based, i.e. label - 1)
    num_inferences: Tensor  # (U,) K
    units: Tensor  # (U,) indices of the evaluated units


class SemanticPurity:
    """Streaming semantic purity (explanatory graph Sec. 4.4 "Pattern interpretability", Fig. 6/8).

    Per unit, the top-K inferences by score where K is the smallest count whose scores reach ``energy_fraction``
    (30%) of the unit's total score over all images; purity = the largest fraction of them whose inferred position
    lies on one single part of the label map (pixel floor(y + 0.5), floor(x + 0.5), clamped into the image).
    Scores must be non-negative. Keeps O(images x units) numbers, not the label maps.
    """

    def __init__(self) -> None:
        self._scores: list[Tensor] = []
        self._labels: list[Tensor] = []

    def update(self, positions: Tensor, scores: Tensor, part_labels: Tensor) -> None:
        """Add positions (B, U, 2) image-plane (y, x), scores (B, U) and label maps (B, H, W)."""
        height, width = part_labels.shape[-2:]
        part_labels = part_labels.to(positions.device)
        rows = (positions[..., 0] + 0.5).floor().long().clamp(0, height - 1)
        cols = (positions[..., 1] + 0.5).floor().long().clamp(0, width - 1)
        images = torch.arange(len(positions), device=positions.device)[:, None]
        self._labels.append(part_labels[images, rows, cols].long())
        self._scores.append(scores.detach().double())

    def result(self, energy_fraction: float = 0.3, num_units: int | None = None) -> PurityResult:
        """Purity per unit; ``num_units`` keeps the units with the highest total score (sum_I S_V^I, Sec. 4.4)."""
        if not self._scores:
            raise ValueError("no data: call update() first")
        scores, labels = torch.cat(self._scores).T, torch.cat(self._labels).T  # (U, N)
        order = scores.argsort(dim=1, descending=True, stable=True)
        cumulative = scores.gather(1, order).cumsum(1)
        total = cumulative[:, -1] if scores.shape[1] else scores.sum(1)  # no image: total 0, purity undefined
        reached = cumulative >= energy_fraction * total[:, None] * (1 - 1e-9)  # tolerance for rounding only
        count = torch.where(total > 0, (~reached).sum(1) + 1, 0)
        top = torch.arange(scores.shape[1], device=scores.device)[None] < count[:, None]
        top_label = int(labels.max()) if labels.numel() else 0
        votes = torch.zeros(scores.shape[0], max(top_label, 1) + 1, dtype=torch.float64, device=scores.device)
        votes.scatter_add_(1, labels.gather(1, order), top.double())
        best, best_part = votes[:, 1:].max(dim=1)
        per_unit = torch.where(count > 0, best / count.clamp_min(1), math.nan)
        units = torch.arange(scores.shape[0], device=scores.device)
        if num_units is not None:
            units = total.argsort(descending=True, stable=True)[:num_units]
        defined = per_unit[units].isfinite()
        value = per_unit[units][defined].mean().item() if defined.any() else math.nan
        return PurityResult(value, per_unit[units], best_part[units], count[units], units)


def semantic_purity(positions: Tensor, scores: Tensor, part_labels: Tensor, *, energy_fraction: float = 0.3,
                    num_units: int | None = None) -> PurityResult:
    """One-shot :class:`SemanticPurity` on positions (N, U, 2), scores (N, U) and label maps (N, H, W)."""
    purity = SemanticPurity()
    purity.update(positions, scores, part_labels)
    return purity.result(energy_fraction, num_units)


def classification_accuracy(logits: Tensor, targets: Tensor) -> float:
    """Accuracy (ICNN Table 7; explainer Table 3).

    - (N,) or (N, 1) logits: one-vs-negatives, predicted positive iff logit > 0, true iff target > 0
      (targets bool, 0/1 or -1/+1);
    - (N, C) logits with (N,) class indices: argmax;
    - (N, C) logits with (N, C) targets: C independent sign classifications, averaged (ICNN footnote 5).
    """
    targets = targets.to(logits.device)
    if logits.dim() == 1 or logits.shape[1] == 1:
        correct = (logits.reshape(-1) > 0) == (targets.reshape(-1) > 0)
    elif targets.shape == logits.shape:
        correct = (logits > 0) == (targets > 0)
    else:
        correct = logits.argmax(dim=1) == targets.long()
    return correct.float().mean().item()
