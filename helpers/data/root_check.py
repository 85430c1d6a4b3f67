"""Checking and loading the files of a user-supplied dataset root, shared by the real-dataset readers.

A missing or malformed root fails when the dataset is built, with a message that lists the files the dataset expects
and the first problem found (file and line number for text files). The helpers here also cut an object out of an
image (numpy only, so it runs in forked loader processes) and turn it into a :class:`PartSample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .common import PartSample, Point, crop_resize_image, crop_resize_mask

Box = tuple[float, float, float, float]  # (y0, x0, y1, x1) pixel edges: the box covers y0 <= y < y1
Column = tuple[str, Callable[[str], object]]  # (name shown in messages, parser)


class DatasetRootError(ValueError):
    """A dataset root that is missing, incomplete or malformed."""


@dataclass(frozen=True)
class RootLayout:
    """What a dataset expects under its root; turns every problem into a :class:`DatasetRootError`."""

    dataset: str
    root: Path
    expected: tuple[str, ...]  # paths relative to the root, as shown to the user

    def error(self, problem: str) -> DatasetRootError:
        listing = "\n".join(f"  {self.root / item}" for item in self.expected)
        return DatasetRootError(
            f"{self.dataset}: cannot read the dataset root {self.root}.\nFirst problem: {problem}\n"
            f"Expected these files and folders:\n{listing}"
        )

    def error_at(self, path: Path, line: int, problem: str) -> DatasetRootError:
        return self.error(f"{path}, line {line}: {problem}")

    def require(self, *relpaths: str) -> None:
        """Fail unless the root and every one of ``relpaths`` exist (the first missing one is reported)."""
        if not self.root.is_dir():
            raise self.error(f"the folder {self.root} does not exist")
        for relpath in relpaths:
            if not (self.root / relpath).exists():
                raise self.error(f"{self.root / relpath} is missing")

    def read_table(self, relpath: str, columns: Sequence[Column]) -> list[tuple[int, tuple]]:
        """Rows of a whitespace-separated text file as (line number, parsed values); blank lines are skipped.

        The last column takes the rest of the line, so it may contain spaces (e.g. CUB part names).
        """
        path = self.root / relpath
        rows = []
        usage = " ".join(f"<{name}>" for name, _ in columns)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise self.error(f"{path} is not a UTF-8 text file ({error})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=len(columns) - 1)
            try:  # a missing field makes zip raise a ValueError too
                values = tuple(parse(text.strip()) for (_, parse), text in zip(columns, fields, strict=True))
            except ValueError:
                raise self.error_at(path, number, f"expected '{usage}', got {line.rstrip()!r}") from None
            rows.append((number, values))
        return rows


def read_image(layout: RootLayout, path: Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array (grey images are converted)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise layout.error(f"the image {path} is missing") from None
    except (UnidentifiedImageError, OSError) as error:
        raise layout.error(f"the image {path} cannot be read ({error})") from None


def part_landmark(mask: np.ndarray) -> Point:
    """The landmark of a part mask, always on the part: the centroid of its largest connected piece (8-connected;
    ties: the first in raster order), or, when that centroid falls off the piece (a curled tail), the piece's pixel
    nearest to it. A one-piece convex part gets its plain centroid; two legs get the centre of the bigger leg
    instead of a point between them."""
    from scipy import ndimage

    pieces, count = ndimage.label(mask > 0, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise ValueError("the part mask is empty")
    sizes = np.bincount(pieces.ravel())[1:]
    ys, xs = np.nonzero(pieces == int(np.argmax(sizes)) + 1)
    centre = (float(ys.mean()), float(xs.mean()))
    row, col = round(centre[0]), round(centre[1])
    if pieces[row, col] == int(np.argmax(sizes)) + 1:
        return centre
    nearest = int(np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2))
    return float(ys[nearest]), float(xs[nearest])


def clamp_box(box: Box, shape: Sequence[int]) -> Box:
    """``box`` cut to the image of ``shape`` (H, W, ...); fails when nothing of it is left."""
    y0, x0 = max(box[0], 0.0), max(box[1], 0.0)
    y1, x1 = min(box[2], float(shape[0])), min(box[3], float(shape[1]))
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"the box {box} lies outside the {shape[0]}x{shape[1]} image")
    return y0, x0, y1, x1


def cut_region(box: Box, shape: Sequence[int]) -> tuple[slice, slice, Box]:
    """Rows and columns of the pixels the crop of ``box`` can read, and ``box`` in that region's coordinates.

    A one-pixel margin keeps bilinear resampling at the box edges identical to resampling the whole image, so
    loaders can keep only the region in memory.
    """
    top, left = max(math.floor(box[0]) - 1, 0), max(math.floor(box[1]) - 1, 0)
    bottom, right = min(math.ceil(box[2]) + 1, shape[0]), min(math.ceil(box[3]) + 1, shape[1])
    shifted = (box[0] - top, box[1] - left, box[2] - top, box[3] - left)
    return slice(top, bottom), slice(left, right), shifted


@dataclass
class RawObject:
    """One object as loaded from disk (numpy only): what :func:`object_sample` needs to build its sample.

    ``image`` is the region of the source image around the object, ``box`` the object box in that region,
    ``points`` every instance of each landmark already in the network-input frame (empty list = absent),
    ``masks`` bool part masks over the region.
    """

    image: np.ndarray
    box: Box
    points: dict[str, list[Point]]
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def raw_object(image: np.ndarray, box: Box, points: dict[str, list[Point]],
               masks: dict[str, np.ndarray] | None = None) -> RawObject:
    """Keep only the region of ``image`` (and of the full-image ``masks``) that the crop of ``box`` reads."""
    rows, cols, region_box = cut_region(box, image.shape)
    region_masks = {name: np.ascontiguousarray(mask[rows, cols]) for name, mask in (masks or {}).items()}
    return RawObject(np.ascontiguousarray(image[rows, cols]), region_box, points, region_masks)


def object_sample(raw: RawObject, size: int, label: int, category: str, meta: dict) -> PartSample:
    """The :class:`PartSample` of an object: box crop resized (anisotropically) to ``size`` x ``size``.

    ``landmarks`` hold the first instance of each landmark; ``meta["instances"]`` all of them.
    """
    frame = (size, size)
    return PartSample(
        image=crop_resize_image(raw.image, raw.box, frame),
        label=label,
        category=category,
        landmarks={name: points[0] if points else None for name, points in raw.points.items()},
        part_masks={name: crop_resize_mask(mask, raw.box, frame) for name, mask in raw.masks.items()},
        meta={**meta, "instances": {name: list(points) for name, points in raw.points.items()}},
    )


def check_index(i: int, length: int) -> int:
    """``i`` as an index in ``range(length)`` (negative indices count from the end)."""
    if not -length <= i < length:
        raise IndexError(f"index {i} out of range for a dataset of {length} samples")
    return i % length


def check_image_size(image_size: int) -> int:
    """The network input size (at least 16 pixels, like the synthetic data)."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}")
    return int(image_size)
