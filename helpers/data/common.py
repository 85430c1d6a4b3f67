"""The sample schema every dataset yields, object cropping, batching and part groups.

Coordinates are (y, x), 0-based pixel indices in the network-input frame (the object crop resized to the input size).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

Point = tuple[float, float]


@dataclass
class PartSample:
    """One object crop at the network input size with its part annotations.

    ``landmarks[name]`` is the (y, x) part centre, or None when the part is absent or invisible;
    ``part_masks[name]`` is a bool (H, W) tensor (empty dict for datasets without masks).
    """

    image: torch.Tensor
    label: int
    category: str
    landmarks: dict[str, Point | None] = field(default_factory=dict)
    part_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    is_negative: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])


@dataclass
class PartBatch:
    """A batch of samples: stacked images and labels, per-sample annotations kept as lists."""

    images: torch.Tensor
    labels: torch.Tensor
    categories: list[str]
    landmarks: list[dict[str, Point | None]]
    part_masks: list[dict[str, torch.Tensor]]
    is_negative: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def collate_part_samples(samples: Sequence[PartSample]) -> PartBatch:
    """``collate_fn`` for a ``DataLoader`` over any dataset of :class:`PartSample`."""
    return PartBatch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        categories=[s.category for s in samples],
        landmarks=[s.landmarks for s in samples],
        part_masks=[s.part_masks for s in samples],
        is_negative=torch.tensor([s.is_negative for s in samples], dtype=torch.bool),
    )


# Merged part groups of the interpretable-CNN paper (its Sec. 5.2.1), in terms of the synthetic data's part names.
# Real-data readers map their own part names onto the same group names.
ICNN_PART_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "bird": {"head": ("head",), "torso": ("torso", "neck", "wings"), "legs": ("legs",), "tail": ("tail",)},
    **{
        category: {
            "head": ("head",),
            "torso": ("torso", "neck"),
            "frontal_legs": ("frontal_legs",),
            "back_legs": ("back_legs",),
            "tail": ("tail",),
        }
        for category in ("cat", "dog")
    },
    **{
        category: {
            "head": ("head",),
            "torso": ("torso", "neck"),
            "frontal_legs": ("frontal_legs",),
            "back_legs": ("back_legs",),
        }
        for category in ("cow", "horse", "sheep")
    },
}


def merge_part_masks(
    part_masks: Mapping[str, torch.Tensor], groups: Mapping[str, Iterable[str]]
) -> dict[str, torch.Tensor]:
    """Union of the masks of each group's parts; groups whose parts are all missing are left out."""
    merged = {}
    for group, names in groups.items():
        masks = [part_masks[name] for name in names if name in part_masks]
        if masks:
            merged[group] = torch.stack(masks).any(dim=0)
    return merged


def mask_centre(mask: torch.Tensor | np.ndarray) -> Point | None:
    """(y, x) centroid of a bool mask, None when it is empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(ys) == 0:
        return None
    return float(ys.mean()), float(xs.mean())


def crop_box_to_frame(
    point: Point, box: tuple[float, float, float, float], size: tuple[int, int]
) -> Point:
    """Map an image (y, x) into the frame of ``box`` = (y0, x0, y1, x1) resized (anisotropically) to ``size``.

    Box edges are pixel-edge coordinates: the box covers pixels y0 <= y < y1 (pixel centres at integer + 0.5 edges).
    """
    y0, x0, y1, x1 = box
    height, width = size
    y = (point[0] + 0.5 - y0) * height / (y1 - y0) - 0.5
    x = (point[1] + 0.5 - x0) * width / (x1 - x0) - 0.5
    return float(y), float(x)


def crop_resize_image(image: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` = (y0, x0, y1, x1) (pixel edges) from an (H, W, 3) uint8/float image, resize to ``size``.

    Returns a float (3, h, w) tensor in [0, 1]. Bilinear resampling with ``align_corners=False`` matches
    :func:`crop_box_to_frame`.
    """
    tensor = torch.as_tensor(np.ascontiguousarray(image))
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    tensor = tensor.float()
    if tensor.ndim == 2:
        tensor = tensor[..., None].expand(-1, -1, 3)
    tensor = tensor.permute(2, 0, 1)[None]
    grid = _box_grid(box, size, tensor.shape[-2:])
    crop = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crop[0].clamp(0, 1)


def crop_resize_mask(mask: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """Crop and resize a bool mask like :func:`crop_resize_image` (nearest neighbour)."""
    tensor = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    grid = _box_grid(box, size, tensor.shape[-2:])
    crop = F.grid_sample(tensor, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return crop[0, 0] > 0.5


def _box_grid(box: tuple[float, float, float, float], size: tuple[int, int], source: Sequence[int]) -> torch.Tensor:
    """Sampling grid (1, h, w, 2) in grid_sample's normalised source coordinates for the crop ``box``."""
    y0, x0, y1, x1 = box
    height, width = size
    src_h, src_w = int(source[0]), int(source[1])
    ys = y0 + (torch.arange(height, dtype=torch.float32) + 0.5) * (y1 - y0) / height  # pixel-edge coordinates
    xs = x0 + (torch.arange(width, dtype=torch.float32) + 0.5) * (x1 - x0) / width
    gy = ys / src_h * 2 - 1
    gx = xs / src_w * 2 - 1
    grid_y, grid_x = torch.meshgrid(gy, gx, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)[None]
