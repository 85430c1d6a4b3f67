"""What every part localizer sees (explanatory graph papers, Experiment 3, "three-shot learning"): object crops as
the performer's conv maps, of the crops and of their mirror images, and the m part annotations (one per template).

Positions are (y, x) pixels in the object-crop frame unless a name says "normalised" (pixels / input size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.arrays import PartArrays
from ..explanatory_graph import analysis


@dataclass
class Views(analysis.Views):
    """The performer's rectified maps ``{conv layer: (n, C, h, w)}`` of n object crops (``maps``) and of their
    horizontal mirror images (``mirrored``), for the flip of the AOG's inference; crops are ``input_size`` square."""

    input_size: int

    def __len__(self) -> int:
        return len(next(iter(self.maps.values())))

    def subset(self, index: Tensor | Sequence[int]) -> Views:
        index = torch.as_tensor(index)
        pick = lambda maps: {name: value[index.to(value.device)] for name, value in maps.items()}
        return Views(pick(self.maps), pick(self.mirrored), self.input_size)

    def swapped(self) -> Views:
        """The views of the mirror images (their mirror images are the crops themselves)."""
        return Views(self.mirrored, self.maps, self.input_size)


def crop_views(net: nn.Module, images: Tensor, layers: Sequence[str], device: str | torch.device = "auto",
               batch_size: int = 64) -> Views:
    """:class:`Views` of object crops (uint8 or float (n, 3, H, W)): the performer run on the crops and on their
    mirror images, maps kept on ``device``."""
    both = analysis.views(net, images, layers, device, batch_size)
    return Views(both.maps, both.mirrored, int(images.shape[-1]))


def mirror_points(points: Tensor, size: int) -> Tensor:
    """(..., 2) pixel (y, x) positions in the mirror image: x -> size - 1 - x (pixel centres map onto each other)."""
    return torch.stack([points[..., 0], size - 1 - points[..., 1]], dim=-1)


def mirror_boxes(boxes: Tensor, size: int) -> Tensor:
    """(..., 4) boxes (y0, x0, y1, x1) in the mirror image."""
    return torch.stack([boxes[..., 0], size - 1 - boxes[..., 3], boxes[..., 2], size - 1 - boxes[..., 1]], dim=-1)


@dataclass
class Examples:
    """The annotations a localizer learns from: ``views`` of the m annotated crops, their part ``centres`` (m, 2)
    and part ``boxes`` (m, 4) = (y0, x0, y1, x1) inclusive pixels, and the maps of unannotated object crops
    (``pool``: the images the explanatory graph was mined from, given to every method alike, Sec. 4.5)."""

    views: Views
    centres: Tensor
    boxes: Tensor
    pool: dict[str, Tensor]

    def __len__(self) -> int:
        return len(self.centres)

    def mirrored(self) -> Examples:
        """The same annotations on the mirror images."""
        size = self.views.input_size
        return Examples(self.views.swapped(), mirror_points(self.centres, size), mirror_boxes(self.boxes, size),
                        self.pool)


def part_boxes(arrays: PartArrays, part: str) -> Tensor:
    """(N, 4) float (y0, x0, y1, x1): the bounding box of each crop's visible ``part`` pixels (NaN if none)."""
    mask = arrays.part_mask(part)
    rows, cols = mask.any(2), mask.any(1)  # (N, H), (N, W)
    index = torch.arange(mask.shape[1]), torch.arange(mask.shape[2])
    first = lambda hit, at: torch.where(hit, at, len(at)).amin(1)
    last = lambda hit, at: torch.where(hit, at, -1).amax(1)
    boxes = torch.stack([first(rows, index[0]), first(cols, index[1]), last(rows, index[0]), last(cols, index[1])],
                        dim=1).float()
    return torch.where(rows.any(1)[:, None], boxes, torch.nan)


def annotated(arrays: PartArrays, part: str) -> Tensor:
    """Indices of the crops with exactly one instance of ``part`` and a visible part mask."""
    counts = arrays.landmark_counts[:, arrays.landmark_names.index(part)]
    return ((counts == 1) & arrays.part_mask(part).flatten(1).any(1)).nonzero().flatten()


def choose_examples(arrays: PartArrays, part: str, count: int, seed: int) -> Tensor:
    """``count`` crops to annotate, drawn without replacement (seeded) from those with exactly one ``part``."""
    candidates = annotated(arrays, part)
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} crops have exactly one {part!r}; {count} annotations were asked for")
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:count]]
