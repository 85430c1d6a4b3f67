"""What notebook 03 measures on a learned explainer (Sec. 4): location instability of conv-interp-2 against the
performer's layers (Tables 1, 5, 6), classification error through the reconstruction (Tables 3, 7), Grad-CAM maps
(Fig. 5) and the contribution of each semantic part to the classification score (Fig. 5, right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import batch_slices, get_device
from ..data.arrays import PartArrays
from ..evaluation import (
    MapSource,
    instability,
    instability_shortfall,
    named_layer,
    part_groups,
    random_reference_instability,
)
from ..metrics import InstabilityResult, location_instability
from ..models.features import FeatureRecorder
from ..models.nets import Performer
from ..models.training import accuracy
from .model import ExplainedPerformer, Explainer, attachment


def interpretable_source(model: ExplainedPerformer, device: str | torch.device = "auto") -> MapSource:
    """conv-interp-2 (after ReLU and mask) as a :class:`helpers.evaluation.MapSource`."""
    device = get_device(device)
    model.eval().to(device)
    return MapSource(model.interpretable_maps, model.geometry, model.map_size, device)


def performer_sources(net: Performer, model: ExplainedPerformer, device: str | torch.device = "auto"
                      ) -> dict[str, MapSource]:
    """The layers Table 5 compares: the performer's input layer of the explainer, its top conv layer, and the
    explainer's conv-interp-2."""
    return {"input layer": named_layer(net, model.where.input_layer, device),
            "top conv": named_layer(net, model.where.top_conv, device),
            "explainer": interpretable_source(model, device)}


def fixed_position_instability(source: MapSource, arrays: PartArrays, landmarks: Sequence[str], top_k: int = 100,
                               seed: int = 0) -> float:
    """A second reference beside the random one: the instability of the best "filter" that always peaks at one fixed
    unit, whatever the image (min over the units of ``source``'s map; top-k images drawn at random). A layer below
    it tracks parts better than any fixed location can on these crops."""
    positives = arrays.positives()
    points, counts = positives.select_landmarks(landmarks)
    grid = source.geometry.grid(*source.map_size)
    positions = grid[None].expand(len(positives), *grid.shape)
    scores = torch.rand(len(positives), len(grid), generator=torch.Generator().manual_seed(seed))
    result = location_instability(positions, scores, points, positives.image_size, top_k=top_k, counts=counts)
    defined = result.per_unit[result.per_unit.isfinite()]
    return float(defined.min()) if len(defined) else math.nan  # NaN: too few images to measure any unit


@dataclass
class LayerComparison:
    """Table 5 for one performer: the location instability of its explainer's input layer, its top conv layer and
    the explainer's conv-interp-2, under ``protocol``, and the references on the same images and landmarks."""

    results: dict[str, InstabilityResult]  # "input layer", "top conv", "explainer"
    references: dict[str, float]  # "random positions" (and, single-category, "fixed position")
    sources: dict[str, MapSource]
    protocol: str
    shortfall: str | None = None  # why the instability could not be measured on these images (None: it could)

    def values(self) -> dict[str, float]:
        return {**{name: result.value for name, result in self.results.items()}, **self.references}


def compare_layers(net: Performer, model: ExplainedPerformer, arrays: PartArrays, landmarks: Sequence[str],
                   seed: int = 0, device: str | torch.device = "auto") -> LayerComparison:
    """Location instability of the three layers of :func:`performer_sources` on the positives of ``arrays``:
    single-category performers with the ICNN protocol (all the category's images), multi-category ones with the
    explainer paper's assigned-category protocol (Sec. 4)."""
    sources = performer_sources(net, model, device)
    positives = arrays.positives()
    multi = net.num_outputs > 1
    protocol = "assigned_category" if multi else "single"
    # the explainer protocol (Sec. 4): each filter assigned the category whose images activate it most
    by_category = {"categories": positives.labels, "num_categories": len(positives.classes)} if multi else {}
    results = {name: instability(source, arrays, landmarks, protocol=protocol, **by_category)
               for name, source in sources.items()}
    references = {"random positions": random_reference_instability(sources["explainer"], arrays, landmarks,
                                                                   seed=seed, protocol=protocol,
                                                                   **by_category).value}
    if not multi:
        references["fixed position"] = fixed_position_instability(sources["explainer"], arrays, landmarks, seed=seed)
    return LayerComparison(results, references, sources, protocol,
                           instability_shortfall(arrays, landmarks, by_category=multi))


def classification_error(model: torch.nn.Module, arrays: PartArrays, device: str | torch.device = "auto") -> float:
    """1 - accuracy: of the performer, or of the explainer's reconstruction fed into its classifier (Table 3)."""
    return 1.0 - accuracy(model, arrays, device)


@dataclass
class PartContribution:
    """Fig. 5 (right): conv-interp-2 filters assigned to parts and the parts' shares of the classification score."""

    parts: tuple[str, ...]  # the ground-truth part groups, then "other" (background)
    assignment: torch.Tensor  # (C,) index into ``parts`` per filter
    filters: dict[str, int]  # filters per part
    contribution: dict[str, float]  # share of sum_f contribution_f per part (sums to 1)


def _upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def part_contributions(model: ExplainedPerformer, arrays: PartArrays, target: int = 0,
                       device: str | torch.device = "auto", batch_size: int = 64, threshold: float = 0.5
                       ) -> PartContribution:
    """Fig. 5 (right) on the positive images of ``arrays``.

    Every conv-interp-2 filter is assigned to the ground-truth part its activations overlap most: the largest
    dataset-level IoU (Network Dissection style: intersections and unions summed over images) between the filter's
    region — its map upsampled to the image, above ``threshold`` times its peak — and each part's mask, the
    background counting as "other". The score of class ``target`` is split over the filters by gradient x
    activation at conv-interp-2, sum_ij dy/dx_ij x_ij (a first-order decomposition), and summed per part."""
    device = get_device(device)
    model.eval().to(device)
    positives = arrays.positives()
    names, labels = positives.merged_part_labels(part_groups(positives))
    intersection = region_area = part_area = contribution = 0.0
    for index in batch_slices(len(positives), batch_size):  # no image: one empty batch (shares NaN)
        with FeatureRecorder(model.explainer, ["mask_2"], detach=False) as recorder:
            score = model(positives.float_images(index).to(device))[:, target]
        maps = recorder.outputs["mask_2"]
        (grad,) = torch.autograd.grad(score.sum(), maps)
        maps = _upsampled(maps.detach(), positives.image_size)
        peak = maps.amax(dim=(2, 3), keepdim=True)
        region = ((maps > threshold * peak) & (peak > 0)).float()
        parts = F.one_hot(labels[index].long().to(device), len(names) + 1).roll(-1, dims=-1).permute(0, 3, 1, 2)
        intersection = intersection + torch.einsum("nchw,nkhw->ck", region, parts.float())
        region_area = region_area + region.sum(dim=(0, 2, 3))
        part_area = part_area + parts.sum(dim=(0, 2, 3))
        contribution = contribution + (grad * recorder.outputs["mask_2"].detach()).sum(dim=(0, 2, 3))
    iou = intersection / (region_area[:, None] + part_area[None, :] - intersection).clamp_min(1)
    parts = (*names, "other")  # background (label 0) rolled to the end
    assignment = iou.argmax(dim=1).cpu()
    per_part = torch.zeros(len(parts)).index_add_(0, assignment, contribution.cpu())
    total = per_part.sum()
    return PartContribution(parts, assignment, {p: int((assignment == k).sum()) for k, p in enumerate(parts)},
                            {p: float(per_part[k] / total) for k, p in enumerate(parts)})


def grad_cam_maps(model: torch.nn.Module, layer: torch.nn.Module, images: torch.Tensor,
                  targets: Sequence[int], device: str | torch.device = "auto") -> np.ndarray:
    """Grad-CAM (Selvaraju et al., the explainer paper's [27]) of ``layer`` for the classes ``targets``, with the
    maintained ``pytorch-grad-cam`` package; (N, H, W) maps in [0, 1]."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if not len(images):  # no image: no map (pytorch-grad-cam needs a non-empty batch)
        return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
    device = get_device(device)
    model.eval().to(device)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=images.to(device), targets=[ClassifierOutputTarget(int(t)) for t in targets])


def most_stable_filters(result: InstabilityResult, count: int) -> list[int]:
    """The ``count`` units with the lowest instability (defined ones only), as indices into the layer's channels."""
    values = result.per_unit.nan_to_num(math.inf)
    order = values.argsort(stable=True)[:count]
    return [int(result.units[k]) for k in order if values[k].isfinite()]


@torch.no_grad()
def strongest_images(source: MapSource, arrays: PartArrays, filters: Sequence[int], count: int = 5,
                     batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``filters``: the ``count`` positive images of ``arrays`` where its peak response is highest
    (indices into ``arrays.positives()``, (F, count)) and its maps on them ((F, count, h, w), on the CPU) (Fig. 4)."""
    positives = arrays.positives()
    channels = torch.as_tensor(list(filters), dtype=torch.long)
    maps = torch.cat([batch[:, channels.to(batch.device)].cpu() for _, batch in source.batches(positives, batch_size)])
    index = maps.flatten(2).amax(dim=-1).topk(min(count, len(positives)), dim=0).indices.T  # (F, count)
    return index, maps[index, torch.arange(len(channels))[:, None]]


def paper_summary(numbers: dict) -> dict:
    """The explainer paper's numbers this notebook compares with, from ``paper_numbers()["explainer"]``: the p range
    (Table 2/4), explainer / performer instability ratios over every net and dataset (Table 1), the VGG-16 rows,
    and the multi-category error gaps in points (Table 3)."""
    tables = ("location_instability_voc_single", "location_instability_voc_multi", "location_instability_cub")
    ratios = [explainer / performer for table in tables for net, pair in numbers[table].items()
              if not net.startswith("_") for performer, explainer in [pair]]
    errors = {net: row for net, row in numbers["classification_error_voc_multi_percent"].items()
              if not net.startswith("_")}
    return {
        "p_range": numbers["p_value_range"],
        "instability_ratio_range": [min(ratios), max(ratios)],
        "instability_vgg16_single": numbers["location_instability_voc_single"]["VGG-16"],
        "instability_vgg16_multi": numbers["location_instability_voc_multi"]["VGG-16"],
        "error_multi_percent": errors,
        "error_gap_multi_points": {net: round(row["explainer"] - row["performer"], 2) for net, row in errors.items()},
        "error_single_percent": {net: row for net, row in numbers["classification_error_voc_single_percent"].items()
                                 if not net.startswith("_")},
    }


@torch.no_grad()
def initialisation_gaps(net: Performer, images: torch.Tensor, device: str | torch.device = "auto",
                        **options) -> dict[str, float]:
    """How exactly a fresh explainer starts from the performer (Sec. 4) on ``images``: max |conv-interp-1(x) -
    top conv(x)| (batch norm folded in), and max |decoder - performer| for fc6 and fc7 when the calibrated decoder
    reads the performer's own pooled top conv map divided by its channel energies."""
    device = get_device(device)
    net.eval().to(device)
    explainer = Explainer.from_performer(net, **options).to(device).eval()
    where = attachment(net)
    top = where.batch_norm or where.top_conv
    pooled = where.pooled
    with FeatureRecorder(net, [where.input_layer, top, pooled, "fc6", "fc7"]) as recorder:
        net(images.to(device))
    out = recorder.outputs
    energy = out[pooled].sum(dim=(2, 3)).mean(dim=0).clamp_min(1e-12)
    explainer.calibrate_decoder(energy)
    fc6, fc7 = explainer.decode(out[pooled] / energy[:, None, None])
    conv = explainer.conv_interp_1(out[where.input_layer])
    return {"conv-interp-1 vs top conv": (conv - out[top]).abs().max().item(),
            "fc-dec-1 vs fc6": (fc6 - out["fc6"]).abs().max().item(),
            "fc-dec-2 vs fc7": (fc7 - out["fc7"]).abs().max().item()}
