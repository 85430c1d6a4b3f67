"""Part interpretability (ICNN Sec. 5.2.1, after Network Dissection, Bau et al. 2017). Higher is better.

Per filter f: T_f = the 99.5th percentile of f's activations over all positions of all images, i.e.
p(x > T_f) = 0.005. Percentile definition: numpy's default ("linear": the value at rank q (n - 1) of the ascending
sorted values, interpolated between neighbours), the same as ``torch.quantile``. On image I, S_f^I = the map
upsampled bilinearly to the input size, > T_f. IoU^I_{f,k} = |S_f^I & S_k^I| / |S_f^I | S_k^I| with S_k^I the mask of
part k; P_{f,k} = mean over images containing part k of 1(IoU^I_{f,k} > 0.2); P_f = max_k P_{f,k}; report mean_f P_f.

The region S_f^I has two definitions. Network Dissection's (the default): the bilinearly upsampled map > T_f. The
ICNN paper's (its footnote 6, ``rf_radius`` set): "a round RF for each valid activation", the union over the units
above T_f of discs of radius ``rf_radius`` pixels around their receptive-field centres. The paper gives no radius;
:data:`RF_RADIUS_STRIDES` (one stride: neighbouring units' discs overlap, so adjacent valid activations make one
connected region) is this project's choice.
Also the dataset-level Network Dissection IoU: sum_I |S_f & S_k| / sum_I |S_f | S_k|, a detector if > 0.04.

Two passes over the activations: :class:`ActivationThreshold` (exact, streaming), then :class:`PartIoU`.
Part masks come as a label map (N, H, W): 0 = no part, k + 1 = part k (merge groups first with
``PartArrays.merged_part_labels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.geometry import LayerGeometry

PartProtocol = Literal["single", "assigned_category"]
RF_RADIUS_STRIDES = 1.0  # round-RF radius in strides of the layer (``rf_radius = RF_RADIUS_STRIDES * stride``)


class ActivationThreshold:
    """Exact streaming per-channel quantile of all activations (ICNN Sec. 5.2.1: T_f with p(x > T_f) = 0.005).

    Needs the number of images up front: with n = num_images * h * w values per channel it keeps only the top
    n - floor(q (n - 1)) of them (about 0.5% + 1), merged batch by batch with ``topk``.
    """

    def __init__(self, num_images: int, quantile: float = 0.995):
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
        self.num_images, self.quantile = num_images, quantile
        self._seen = 0
        self._map_size: tuple[int, int] | None = None
        self._top: Tensor | None = None  # (C, <= keep) descending

    def update(self, activations: Tensor) -> None:
        """Add a batch of maps (B, C, h, w)."""
        b, c, h, w = activations.shape
        if self._map_size is None:
            self._map_size = (h, w)
            self._top = activations.new_empty((c, 0))
        elif self._map_size != (h, w):
            raise ValueError(f"map size changed from {self._map_size} to {(h, w)}")
        values = activations.detach().transpose(0, 1).reshape(c, -1)
        merged = torch.cat([self._top, values], dim=1)
        self._top = merged.topk(min(self._keep(), merged.shape[1]), dim=1).values
        self._seen += b

    def _total(self) -> int:
        return self.num_images * self._map_size[0] * self._map_size[1]

    def _keep(self) -> int:
        return self._total() - math.floor(self.quantile * (self._total() - 1))

    def result(self) -> Tensor:
        """(C,) thresholds."""
        if self._seen != self.num_images:
            raise ValueError(f"expected {self.num_images} images (num_images), got {self._seen}")
        total = self._total()
        if not total:  # no image (or empty maps): no threshold
            return torch.full(self._top.shape[:1], math.nan, dtype=self._top.dtype, device=self._top.device)
        position = self.quantile * (total - 1)
        lower = math.floor(position)
        upper = min(lower + 1, total - 1)
        below, above = self._top[:, total - 1 - lower].double(), self._top[:, total - 1 - upper].double()
        return (below + (position - lower) * (above - below)).to(self._top.dtype)


def activation_thresholds(activations: Tensor, quantile: float = 0.995) -> Tensor:
    """One-shot :class:`ActivationThreshold` on (N, C, h, w) maps -> (C,)."""
    threshold = ActivationThreshold(len(activations), quantile)
    threshold.update(activations)
    return threshold.result()


def _interpolation_matrix(out_size: int, in_size: int, geometry: LayerGeometry | None, device: torch.device,
                          dtype: torch.dtype) -> Tensor:
    """(out, in) bilinear weights: pixel p samples unit u(p), clamped to the map (linear between neighbours)."""
    pixels = torch.arange(out_size, dtype=torch.float64, device=device)
    if geometry is None:
        source = (pixels + 0.5) * (in_size / out_size) - 0.5
    else:
        source = (pixels - geometry.centre) / geometry.stride
    source = source.clamp(0, in_size - 1)
    lower = source.floor().long()
    upper = (lower + 1).clamp(max=in_size - 1)
    weight = torch.zeros(out_size, in_size, dtype=torch.float64, device=device)
    rows = torch.arange(out_size, device=device)
    weight.index_put_((rows, lower), 1 - (source - lower), accumulate=True)
    weight.index_put_((rows, upper), source - lower, accumulate=True)
    return weight.to(dtype)


def upsample_to_image(maps: Tensor, size: tuple[int, int], geometry: LayerGeometry | None = None) -> Tensor:
    """Bilinear upsampling of (B, C, h, w) maps to the input size (H, W) (the region S_f^I of ICNN Sec. 5.2.1).

    Without ``geometry``: ``F.interpolate(..., mode="bilinear", align_corners=False)``. With it: unit i sits at its
    receptive-field centre c + s i (identical for VGG-16 conv5 at 224 px), values clamped beyond the outer units.
    """
    h, w = maps.shape[-2:]
    rows = _interpolation_matrix(size[0], h, geometry, maps.device, maps.dtype)
    cols = _interpolation_matrix(size[1], w, geometry, maps.device, maps.dtype)
    return rows @ maps @ cols.T


@lru_cache(maxsize=8)
def round_rf_matrix(map_size: tuple[int, int], size: tuple[int, int], geometry: LayerGeometry, radius: float,
                    device: torch.device | str = "cpu") -> Tensor:
    """(h w, H W) 0/1 matrix: pixel p lies within ``radius`` of unit u's receptive-field centre (ICNN footnote 6).
    Cached: every batch and channel chunk of a layer reuses it (do not modify it in place)."""
    units = geometry.grid(*map_size, device=device).double()  # (hw, 2)
    ys, xs = torch.meshgrid(torch.arange(size[0], device=device, dtype=torch.float64),
                            torch.arange(size[1], device=device, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([ys.flatten(), xs.flatten()], dim=-1)  # (HW, 2)
    return (torch.cdist(units, pixels) <= radius).float()


def round_rf_regions(maps: Tensor, thresholds: Tensor, size: tuple[int, int], geometry: LayerGeometry,
                     radius: float) -> Tensor:
    """(B, C, H W) 0/1 regions S_f^I: the union of round RFs of the units of (B, C, h, w) ``maps`` above their
    channel's threshold (C,) (ICNN footnote 6)."""
    b, c, h, w = maps.shape
    valid = (maps > thresholds[:, None, None]).flatten(2).float()  # (B, C, hw)
    disc = round_rf_matrix((h, w), size, geometry, radius, maps.device)
    return (valid @ disc > 0).float()


@dataclass
class PartInterpretabilityResult:
    """ICNN Sec. 5.2.1 part interpretability."""

    value: float  # mean_f P_f over filters with a defined P_f
    per_filter: Tensor  # (C,) P_f = max_k P_{f,k}
    probability: Tensor  # (C, P) P_{f,k}; NaN where no evaluated image contains part k
    best_part: Tensor  # (C,) argmax_k P_{f,k}
    category: Tensor | None  # (C,) assigned category (``assigned_category`` protocol)


@dataclass
class DissectionResult:
    """Network Dissection dataset-level IoU (Bau et al. 2017) over the images fed."""

    iou: Tensor  # (C, P) sum_I |S_f & S_k| / sum_I |S_f | S_k|
    best_part: Tensor  # (C,)
    best_iou: Tensor  # (C,)
    is_detector: Tensor  # (C,) bool, best_iou > threshold
    num_detectors: int


class PartIoU:
    """Streaming second pass: per-image IoUs of thresholded upsampled maps with part masks (ICNN Sec. 5.2.1).

    ``thresholds`` (C,) from :class:`ActivationThreshold`; ``num_parts`` = P (labels 1..P). Work is split over
    channels so no block exceeds ``chunk_elements`` upsampled values. ``categories`` in :meth:`update` are needed for
    the multi-category protocol only. ``rf_radius`` (pixels; needs ``geometry``) selects the paper's round-RF
    regions instead of the bilinear upsampling.
    """

    def __init__(self, thresholds: Tensor, num_parts: int, *, geometry: LayerGeometry | None = None,
                 iou_threshold: float = 0.2, num_categories: int = 1, chunk_elements: int = 2**25,
                 rf_radius: float | None = None):
        if rf_radius is not None and (geometry is None or rf_radius <= 0):
            raise ValueError(f"rf_radius needs the layer's geometry and a positive radius, got {rf_radius}")
        self.thresholds, self.num_parts, self.geometry = thresholds, num_parts, geometry
        self.rf_radius = rf_radius
        self.iou_threshold, self.num_categories, self.chunk_elements = iou_threshold, num_categories, chunk_elements
        self._sums: dict[str, Tensor] | None = None

    def _allocate(self, channels: int, device: torch.device) -> None:
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=device)  # noqa: E731
        cat, p = self.num_categories, self.num_parts
        self._sums = {"hits": zeros(cat, channels, p), "present": zeros(cat, p), "energy": zeros(cat, channels),
                      "images": zeros(cat), "intersection": zeros(channels, p), "union": zeros(channels, p)}

    def update(self, activations: Tensor, part_labels: Tensor, categories: Tensor | None = None) -> None:
        """Add maps (B, C, h, w) with the label maps (B, H, W) of the same images."""
        b, c = activations.shape[:2]
        device = activations.device
        if self._sums is None:
            self._allocate(c, device)
        categories = torch.zeros(b, dtype=torch.long, device=device) if categories is None else \
            categories.to(device).long()
        intersection, union, present = self._overlaps(activations, part_labels.to(device))
        hits = (intersection / union.clamp_min(1) > self.iou_threshold) & present[:, None]
        sums = self._sums
        sums["hits"].index_add_(0, categories, hits.double())
        sums["present"].index_add_(0, categories, present.double())
        sums["energy"].index_add_(0, categories, activations.sum(dim=(2, 3)).double())
        sums["images"].index_add_(0, categories, torch.ones(b, dtype=torch.float64, device=device))
        sums["intersection"] += intersection.sum(0).double()
        sums["union"] += union.sum(0).double()

    def _overlaps(self, activations: Tensor, part_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, P) |S_f & S_k| and |S_f | S_k| per image, and (B, P) part present."""
        b, c = activations.shape[:2]
        size = part_labels.shape[-2:]
        masks = F.one_hot(part_labels.long().flatten(1), self.num_parts + 1)[..., 1:].float()  # (B, HW, P)
        area = masks.sum(1)  # (B, P)
        thresholds = self.thresholds.to(activations.device)
        step = max(1, self.chunk_elements // max(1, b * size[0] * size[1]))
        inter = []
        region_area = []
        for start in range(0, c, step):
            region = self._regions(activations[:, start:start + step].float(), thresholds[start:start + step], size)
            inter.append(region @ masks)
            region_area.append(region.sum(-1))
        intersection = torch.cat(inter, dim=1)
        union = torch.cat(region_area, dim=1)[..., None] + area[:, None] - intersection
        return intersection, union, area > 0

    def _regions(self, activations: Tensor, thresholds: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, c', H W) 0/1 regions S_f^I of maps (B, c', h, w)."""
        if self.rf_radius is not None:
            return round_rf_regions(activations, thresholds, size, self.geometry, self.rf_radius)
        upsampled = upsample_to_image(activations, size, self.geometry)
        return (upsampled > thresholds[:, None, None]).flatten(2).float()

    def interpretability(self, protocol: PartProtocol = "single") -> PartInterpretabilityResult:
        """P_f per filter. ``single``: all images (single-category nets); ``assigned_category``: ICNN Sec. 5.2.1
        multi-category, each filter assigned to argmax_c mean_{I in c} sum_ij x_ij and evaluated on c's images."""
        sums = self._require()
        if protocol == "single":
            probability = sums["hits"].sum(0) / sums["present"].sum(0)
            category = None
        elif protocol == "assigned_category":
            mean_energy = sums["energy"] / sums["images"][:, None]
            category = torch.where(mean_energy.isnan(), -math.inf, mean_energy).argmax(0)  # (C,)
            hits = sums["hits"].gather(0, category[None, :, None].expand(1, *sums["hits"].shape[1:]))[0]
            probability = hits / sums["present"][category]
        else:
            raise ValueError(f"protocol must be 'single' or 'assigned_category', got {protocol!r}")
        filled = torch.where(probability.isnan(), -math.inf, probability)
        if self.num_parts:
            best, best_part = filled.max(dim=1)
        else:  # no part to be interpretable for (e.g. no image): undefined
            best, best_part = filled.new_full(filled.shape[:1], -math.inf), filled.new_zeros(filled.shape[:1]).long()
        per_filter = torch.where(best.isinf(), math.nan, best)
        defined = per_filter.isfinite()
        value = per_filter[defined].mean().item() if defined.any() else math.nan
        return PartInterpretabilityResult(value, per_filter, probability, best_part, category)

    def dissection(self, iou_threshold: float = 0.04) -> DissectionResult:
        """Dataset-level IoU per (filter, part); detector if the best part's IoU > ``iou_threshold`` (Bau et al.)."""
        sums = self._require()
        iou = sums["intersection"] / sums["union"].clamp_min(1)
        best_iou, best_part = iou.max(dim=1)
        is_detector = best_iou > iou_threshold
        return DissectionResult(iou, best_part, best_iou, is_detector, int(is_detector.sum()))

    def _require(self) -> dict[str, Tensor]:
        if self._sums is None:
            raise ValueError("no data: call update() first")
        return self._sums


def _part_iou(activations: Tensor, part_labels: Tensor, num_parts: int, geometry: LayerGeometry | None,
              quantile: float, iou_threshold: float, categories: Tensor | None, num_categories: int,
              batch_size: int, rf_radius: float | None = None) -> PartIoU:
    """Both passes on full tensors, the second in batches of ``batch_size`` images."""
    accumulator = PartIoU(activation_thresholds(activations, quantile), num_parts, geometry=geometry,
                          iou_threshold=iou_threshold, num_categories=num_categories, rf_radius=rf_radius)
    for start in range(0, len(activations), batch_size):
        stop = start + batch_size
        accumulator.update(activations[start:stop], part_labels[start:stop],
                           None if categories is None else categories[start:stop])
    return accumulator


def part_interpretability(activations: Tensor, part_labels: Tensor, num_parts: int, *,
                          geometry: LayerGeometry | None = None, categories: Tensor | None = None,
                          protocol: PartProtocol = "single", quantile: float = 0.995, iou_threshold: float = 0.2,
                          batch_size: int = 64, rf_radius: float | None = None) -> PartInterpretabilityResult:
    """One-shot ICNN Sec. 5.2.1 part interpretability of maps (N, C, h, w) against label maps (N, H, W)
    (``rf_radius``: round-RF regions, see :class:`PartIoU`)."""
    num_categories = int(categories.max()) + 1 if categories is not None and len(categories) else 1
    accumulator = _part_iou(activations, part_labels, num_parts, geometry, quantile, iou_threshold, categories,
                            num_categories, batch_size, rf_radius)
    return accumulator.interpretability(protocol)


def network_dissection(activations: Tensor, part_labels: Tensor, num_parts: int, *,
                       geometry: LayerGeometry | None = None, quantile: float = 0.995, iou_threshold: float = 0.04,
                       batch_size: int = 64) -> DissectionResult:
    """One-shot Network Dissection IoU of maps (N, C, h, w) against label maps (N, H, W)."""
    accumulator = _part_iou(activations, part_labels, num_parts, geometry, quantile, 0.2, None, 1, batch_size)
    return accumulator.dissection(iou_threshold)
