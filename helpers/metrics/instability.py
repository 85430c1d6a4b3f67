"""Location instability of filters / graph nodes. Lower is better.

ICNN Sec. 5.2.2 (interpretable CNN paper), explainer paper Sec. 4, explanatory graph paper Sec. 4.4 (Experiment 2,
"Stability of inference positions", Table 1). For unit f (a filter, or a graph node) and image I, the inferred
position p_I is the image-plane centre of f's peak unit and its score the peak response (a node: its inferred unit
and inference score).
With landmark k at p_k: d_I = ||p_k - p_I|| / sqrt(H^2 + W^2), H x W the network input size.
D_{f,k} = sample std (N - 1) of d_I over the top-``top_k`` images by score among the images where landmark k is
present exactly once; fewer than 2 such images -> undefined (NaN). A unit's value combines its D_{f,k} over landmarks
(undefined if any is undefined); a layer's value is the mean over defined units.

Everything is exact under streaming: :class:`LocationInstability` keeps, per (category, unit, landmark), the running
top-k (score, image index, distance) and merges each batch in by sorting. Ties in score go to the earlier image.
Scores must be finite; images with a non-finite score are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..config import batch_slices
from ..models.geometry import LayerGeometry

Protocol = Literal["single", "min_category", "assigned_category"]
Combine = Literal["mean_std", "rms"]
PROTOCOLS = ("single", "min_category", "assigned_category")
COMBINES = ("mean_std", "rms")


def peak_positions(activations: Tensor, geometry: LayerGeometry) -> tuple[Tensor, Tensor]:
    """Per image and channel, the image-plane (y, x) of the highest unit and its response (ICNN Sec. 5.2.2).

    ``activations`` (N, C, h, w) on any device -> positions (N, C, 2) float32, scores (N, C). Ties in a map go to the
    first unit in row-major order.
    """
    n, c, h, w = activations.shape
    scores, index = activations.flatten(2).max(dim=2)
    positions = geometry.grid(h, w, device=activations.device)[index]
    return positions, scores


def present_once(landmarks: Tensor, counts: Tensor | None = None) -> Tensor:
    """(N, K) bool: landmark annotated and (when ``counts`` (N, K) instance counts are given) exactly one instance."""
    present = landmarks.isfinite().all(dim=-1)
    return present if counts is None else present & (counts.to(landmarks.device) == 1)


@dataclass
class InstabilityResult:
    """Location instability of a layer; ``units`` indexes the evaluated units in the input's unit axis."""

    value: float  # mean over defined units (NaN if none)
    num_defined: int  # units whose value is defined
    per_unit: Tensor  # (U,) float64, NaN = undefined
    deviation: Tensor  # (U, K) D_{f,k} used for each unit (NaN: undefined, or landmark not in the unit's category)
    num_images: Tensor  # (U, K) images behind each D_{f,k}
    units: Tensor  # (U,) long
    category: Tensor | None  # (U,) category chosen per unit (multi-category protocols), else None


def _merge_top(score: Tensor, index: Tensor, payload: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``k`` highest scores along the last dim. Equal scores must come in ascending image index (as in a
    kept list followed by a later batch); the stable sort keeps that order, so ties go to the earlier image."""
    order = score.argsort(dim=-1, descending=True, stable=True)[..., :k]
    return score.gather(-1, order), index.gather(-1, order), payload.gather(-1, order)


def _merge_into(old: tuple[Tensor, Tensor, Tensor], new: tuple[Tensor, Tensor, Tensor],
                k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Running top-k (score, index, payload) merged with a batch's candidates."""
    return _merge_top(*(torch.cat([kept, added], -1) for kept, added in zip(old, new, strict=True)), k)


def _sample_std(score: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    """Sample std (N - 1) of ``dist`` over the entries with a finite score, last dim; (std or NaN if n < 2, n)."""
    valid = score.isfinite()
    n = valid.sum(-1)
    dist = torch.where(valid, dist.double(), 0.0)
    mean = dist.sum(-1) / n.clamp_min(1)
    var = (torch.where(valid, dist - mean[..., None], 0.0) ** 2).sum(-1) / (n - 1).clamp_min(1)
    return torch.where(n >= 2, var.sqrt(), math.nan), n


def _combine(deviation: Tensor, used: Tensor, combine: Combine) -> Tensor:
    """Unit value from D_{f,k} over the landmarks in ``used``: mean (ICNN) or sqrt(mean D^2) (explanatory graph)."""
    values = deviation if combine == "mean_std" else deviation**2
    total = torch.where(used, values, 0.0).sum(-1)
    undefined = (used & deviation.isnan()).any(-1) | ~used.any(-1)
    value = total / used.sum(-1).clamp_min(1)
    value = value if combine == "mean_std" else value.sqrt()
    return torch.where(undefined, math.nan, value)


class LocationInstability:
    """Streaming accumulator of location instability (ICNN Sec. 5.2.2; explainer Sec. 4; expl. graph Table 1).

    Feed batches with :meth:`update` (positions and scores of any units) or :meth:`update_maps` (a layer's maps),
    then call :meth:`result`. ``categories`` (per image, ``0 .. num_categories - 1``) are needed only by the
    multi-category protocols; pass positive images only. Memory: O(categories x units x landmarks x top_k).
    """

    def __init__(self, image_size: tuple[int, int], top_k: int = 100, num_categories: int = 1):
        if top_k < 2:
            raise ValueError(f"top_k must be >= 2 (a std needs two images), got {top_k}")
        self.diagonal = math.hypot(*image_size)
        self.top_k, self.num_categories = top_k, num_categories
        self._seen = 0
        self._missing_energy = False
        self._buffers: tuple[Tensor, Tensor, Tensor] | None = None  # (Cat, U, K, T) score, image index, distance
        self._rank: Tensor | None = None  # (U, <= T) top scores over all images

    def _allocate(self, units: int, landmarks: int, device: torch.device) -> None:
        shape = (self.num_categories, units, landmarks, 0)
        self._buffers = (torch.empty(shape, device=device), torch.empty(shape, dtype=torch.long, device=device),
                         torch.empty(shape, device=device))
        self._rank = torch.empty(units, 0, device=device)
        self._energy = torch.zeros(self.num_categories, units, dtype=torch.float64, device=device)
        self._category_images = torch.zeros(self.num_categories, dtype=torch.float64, device=device)
        self._landmark_images = torch.zeros(self.num_categories, landmarks, dtype=torch.long, device=device)

    def update(self, positions: Tensor, scores: Tensor, landmarks: Tensor, *, categories: Tensor | None = None,
               counts: Tensor | None = None, energy: Tensor | None = None) -> None:
        """Add a batch: positions (B, U, 2) image-plane (y, x), scores (B, U), landmarks (B, K, 2) (NaN = absent).

        ``counts`` (B, K): landmark instance counts (an image counts for landmark k only if it has exactly one);
        default: annotated = one instance. ``energy`` (B, U): summed response per image, needed by the
        ``assigned_category`` protocol (explainer Sec. 4: category activating the unit most).
        """
        b, u = scores.shape
        device = scores.device
        if self._buffers is None:
            self._allocate(u, landmarks.shape[1], device)
        landmarks, positions = landmarks.to(device).float(), positions.to(device).float()
        categories = self._categories(categories, b, device)
        valid = present_once(landmarks, counts)  # (B, K)
        dist = (landmarks[:, None] - positions[:, :, None]).norm(dim=-1) / self.diagonal  # (B, U, K)
        dist = torch.where(valid[:, None], dist, 0.0)
        scores = torch.where(scores.isfinite(), scores.float(), -math.inf)
        index = torch.arange(self._seen, self._seen + b, device=device)

        mine = categories[None] == torch.arange(self.num_categories, device=device)[:, None]  # (Cat, B)
        keep = mine[:, :, None, None] & valid[None, :, None, :]  # (Cat, B, 1, K)
        candidate = torch.where(keep, scores[None, :, :, None], -math.inf).permute(0, 2, 3, 1)  # (Cat, U, K, B)
        shape = candidate.shape
        new = (candidate, index.expand(shape), dist.permute(1, 2, 0).expand(shape))
        self._buffers = _merge_into(self._buffers, new, self.top_k)
        ranked = torch.cat([self._rank, scores.T], dim=1)
        self._rank = ranked.topk(min(self.top_k, ranked.shape[1]), dim=1).values

        self._landmark_images.index_add_(0, categories, valid.long())
        if energy is None:
            self._missing_energy = True
        else:
            self._energy.index_add_(0, categories, energy.to(device).double())
            self._category_images.index_add_(0, categories, torch.ones(b, dtype=torch.float64, device=device))
        self._seen += b

    def update_maps(self, activations: Tensor, geometry: LayerGeometry, landmarks: Tensor, *,
                    categories: Tensor | None = None, counts: Tensor | None = None) -> None:
        """Add a batch of a layer's maps (B, C, h, w): peak positions/scores, energy = sum of each map."""
        positions, scores = peak_positions(activations, geometry)
        self.update(positions, scores, landmarks, categories=categories, counts=counts,
                    energy=activations.sum(dim=(2, 3)))

    def _categories(self, categories: Tensor | None, b: int, device: torch.device) -> Tensor:
        if categories is None:
            return torch.zeros(b, dtype=torch.long, device=device)
        categories = categories.to(device).long()
        if b and (categories.min() < 0 or categories.max() >= self.num_categories):
            raise ValueError(f"categories must lie in 0..{self.num_categories - 1} (num_categories), "
                             f"got {categories.min().item()}..{categories.max().item()}")
        return categories

    def unit_ranking(self) -> Tensor:
        """(U,) mean of each unit's top-``top_k`` scores over all images (explanatory graph Sec. 4.4 ranking)."""
        score = self._rank
        valid = score.isfinite()
        return torch.where(valid, score.double(), 0.0).sum(-1) / valid.sum(-1).clamp_min(1)

    def result(self, protocol: Protocol = "single", combine: Combine = "mean_std", num_units: int | None = None,
               category_landmarks: Tensor | None = None) -> InstabilityResult:
        """Instability under ``protocol``:

        - ``single``: all images pooled (one category; ICNN Tables 3/4, explainer Table 1 single-category).
        - ``min_category``: ICNN Sec. 5.2.2 multi-category, mean_f min_c mean_{k in landmarks of c} D^c_{f,k}, each
          D^c on category c's images (categories where the unit is undefined are skipped).
        - ``assigned_category``: explainer Sec. 4 (and its Appendix), each unit assigned to
          argmax_c mean_{I in c} sum_ij x_ij, then D on that category's images and landmarks only.

        ``combine``: ``mean_std`` = mean_k D_{f,k} (ICNN, explainer); ``rms`` = sqrt(mean_k D_{f,k}^2), the
        explanatory graph paper's sqrt((var_head + var_back + var_tail) / 3). ``num_units``: keep the units with the
        highest mean top-``top_k`` score (explanatory graph Table 1). ``category_landmarks`` (Cat, K) bool: the
        landmarks of each category; default: those annotated on at least one of the category's images.
        """
        if protocol not in PROTOCOLS or combine not in COMBINES:
            raise ValueError(f"protocol must be one of {PROTOCOLS} and combine one of {COMBINES}, "
                             f"got {protocol!r}, {combine!r}")
        if self._buffers is None:
            raise ValueError("no data: call update() first")
        if protocol == "single":
            deviation, count, category = self._pooled()
            used = torch.ones_like(deviation, dtype=torch.bool)
        else:
            deviation, count, used, category = self._per_category(protocol, combine, category_landmarks)
        per_unit = _combine(deviation, used, combine)
        deviation = torch.where(used, deviation, math.nan)
        units = torch.arange(per_unit.shape[0], device=per_unit.device)
        if num_units is not None:
            units = self.unit_ranking().argsort(descending=True, stable=True)[:num_units]
        defined = per_unit[units].isfinite()
        value = per_unit[units][defined].mean().item() if defined.any() else math.nan
        return InstabilityResult(value, int(defined.sum()), per_unit[units], deviation[units], count[units], units,
                                 None if category is None else category[units])

    def _pooled(self) -> tuple[Tensor, Tensor, None]:
        """D_{f,k} over all categories' images: the top-k of the union of the per-category top-k lists."""
        score, index, dist = (t.permute(1, 2, 0, 3).flatten(2) for t in self._buffers)
        by_index = index.argsort(dim=-1, stable=True)
        score, index, dist = (t.gather(-1, by_index) for t in (score, index, dist))
        score, _, dist = _merge_top(score, index, dist, self.top_k)
        deviation, count = _sample_std(score, dist)
        return deviation, count, None

    def _per_category(self, protocol: Protocol, combine: Combine,
                      category_landmarks: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        deviation, count = _sample_std(self._buffers[0], self._buffers[2])  # (Cat, U, K)
        parts = self._landmark_images > 0 if category_landmarks is None else category_landmarks.to(deviation.device)
        parts = parts.bool()[:, None, :].expand_as(deviation)
        if protocol == "min_category":
            value = _combine(deviation, parts, combine)  # (Cat, U)
            category = torch.where(value.isnan(), math.inf, value).argmin(0)
        else:
            if self._missing_energy:
                raise ValueError("the assigned_category protocol needs energy= in every update() (or update_maps)")
            mean_energy = self._energy / self._category_images[:, None]
            category = torch.where(mean_energy.isnan(), -math.inf, mean_energy).argmax(0)
        pick = category[None, :, None].expand(1, *deviation.shape[1:])
        return (deviation.gather(0, pick)[0], count.gather(0, pick)[0], parts.gather(0, pick)[0], category)


def location_instability(positions: Tensor, scores: Tensor, landmarks: Tensor, image_size: tuple[int, int], *,
                         top_k: int = 100, counts: Tensor | None = None, categories: Tensor | None = None,
                         num_categories: int | None = None, energy: Tensor | None = None,
                         protocol: Protocol = "single", combine: Combine = "mean_std", num_units: int | None = None,
                         category_landmarks: Tensor | None = None) -> InstabilityResult:
    """One-shot :class:`LocationInstability` on full tensors (positions (N, U, 2), scores (N, U), landmarks (N, K, 2)).

    Defaults are the ICNN protocol (Sec. 5.2.2: top-100 images, mean over landmarks). For filters, get positions and
    scores from :func:`peak_positions`, and ``energy = activations.sum((2, 3))`` for ``assigned_category``.
    """
    if num_categories is None:
        num_categories = int(categories.max()) + 1 if categories is not None and len(categories) else 1
    accumulator = LocationInstability(image_size, top_k, num_categories)
    accumulator.update(positions, scores, landmarks, categories=categories, counts=counts, energy=energy)
    return accumulator.result(protocol, combine, num_units, category_landmarks)


def explanatory_graph_instability(positions: Tensor, scores: Tensor, landmarks: Tensor, image_size: tuple[int, int],
                                  num_units: int, *, top_k: int = 20, counts: Tensor | None = None,
                                  combine: Combine = "rms") -> InstabilityResult:
    """Explanatory graph Table 1: keep the ``num_units`` units (nodes, or raw filters for the baseline: give both the
    same number) with the highest mean top-20 score; D over each unit's top-20 images;
    unit value sqrt((var_head + var_back + var_tail) / 3) (``combine="rms"``, Sec. 4.4)."""
    return location_instability(positions, scores, landmarks, image_size, top_k=top_k, counts=counts,
                                combine=combine, num_units=num_units)


def random_position_instability(landmarks: Tensor, image_size: tuple[int, int], geometry: LayerGeometry,
                                map_size: tuple[int, int], *, num_units: int = 256, top_k: int = 100,
                                counts: Tensor | None = None, categories: Tensor | None = None,
                                num_categories: int | None = None, protocol: Protocol = "single",
                                combine: Combine = "mean_std", category_landmarks: Tensor | None = None,
                                seed: int = 0, batch_size: int = 1024) -> InstabilityResult:
    """Reference instability of ``num_units`` fake units whose peak is a uniformly random unit of an (h, w) map,
    projected with ``geometry``, on the same images and landmarks (docs/metrics.md, "Reference").

    Scores (and energies) are i.i.d. uniform, so each unit's top-k images are a random subset of the eligible ones.
    Deterministic for a given ``seed`` on any device (random numbers drawn on the CPU).
    """
    if num_categories is None:
        num_categories = int(categories.max()) + 1 if categories is not None and len(categories) else 1
    generator = torch.Generator().manual_seed(seed)
    accumulator = LocationInstability(image_size, top_k, num_categories)
    device, (h, w) = landmarks.device, map_size
    for index in batch_slices(len(landmarks), batch_size):  # no image: one empty batch (the result is NaN)
        shape = (index.stop - index.start, num_units)
        rows = torch.randint(h, shape, generator=generator).float()
        cols = torch.randint(w, shape, generator=generator).float()
        positions = torch.stack([geometry.to_image(rows), geometry.to_image(cols)], dim=-1)
        scores, energy = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
        accumulator.update(positions.to(device), scores.to(device), landmarks[index],
                           categories=None if categories is None else categories[index],
                           counts=None if counts is None else counts[index], energy=energy.to(device))
    return accumulator.result(protocol, combine, None, category_landmarks)
