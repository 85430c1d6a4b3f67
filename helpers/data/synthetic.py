"""The embedded default dataset: procedural part-annotated animals (six Pascal-Part categories) and negatives.

Every sample is generated from ``(seed, kind, index)`` alone, so ``dataset[i]`` is identical across processes and
needs none of the others. Each image is already the object crop at the network input size; part masks, landmarks
(part centres, plus the CUB-style ``back``) and the visible part-label map come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import CATEGORIES, check_categories, check_choice, check_positive
from .common import PartSample, Point
from .rasterize import Canvas, Capsule, Ellipse, NoiseField, Placement, Shape, Texture

QUADRUPED_PARTS = ("head", "neck", "torso", "frontal_legs", "back_legs", "tail")
BIRD_PARTS = ("head", "torso", "wings", "legs", "tail")
PART_NAMES: dict[str, tuple[str, ...]] = {c: BIRD_PARTS if c == "bird" else QUADRUPED_PARTS for c in CATEGORIES}
LANDMARK_NAMES = ("head", "neck", "torso", "back", "tail")
SPLITS = ("train", "val", "test")
SPLIT_OFFSETS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
NEGATIVE = "background"
_KIND_CODES = {**{c: i for i, c in enumerate(CATEGORIES)}, NEGATIVE: len(CATEGORIES)}
MIN_VISIBLE_FRACTION = 0.3  # a landmark is present when at least this much of its part is visible

# One palette for every category and the backgrounds: colour alone never gives the category away.
PALETTE = np.array(
    [
        [0.45, 0.30, 0.18], [0.62, 0.45, 0.28], [0.80, 0.68, 0.50], [0.92, 0.90, 0.84], [0.20, 0.18, 0.17],
        [0.50, 0.50, 0.50], [0.72, 0.40, 0.20], [0.35, 0.38, 0.30], [0.55, 0.58, 0.42], [0.40, 0.45, 0.55],
        [0.66, 0.62, 0.58], [0.30, 0.24, 0.22],
    ]
)
PATTERNS = ("plain", "stripes", "spots", "patches")


@dataclass(frozen=True)
class QuadrupedPlan:
    """Proportions of a quadruped, in torso lengths; angles in degrees (ranges are sampled per instance)."""

    torso_height: float
    neck_length: float
    neck_width: float
    neck_angle: tuple[float, float]  # upward from the forward direction
    head_length: float
    head_height: float
    head_tilt: tuple[float, float]  # downward, relative to the forward direction
    muzzle: tuple[float, float] | None  # (length, width)
    ears: str  # "pointy" | "floppy" | "side"
    horns: bool
    leg_length: float
    leg_width: float
    hooves: bool
    tail_length: float
    tail_width: float
    tail_angle: tuple[float, float]  # downward from the backward direction (negative = raised)
    woolly: bool = False


PLANS: dict[str, QuadrupedPlan] = {
    "cat": QuadrupedPlan(0.36, 0.12, 0.13, (30, 60), 0.30, 0.27, (-5, 15), None, "pointy", False,
                         0.42, 0.075, False, 0.75, 0.06, (-80, -25)),
    "dog": QuadrupedPlan(0.40, 0.22, 0.14, (35, 65), 0.30, 0.26, (0, 25), (0.18, 0.14), "floppy", False,
                         0.52, 0.085, False, 0.45, 0.065, (-70, -20)),
    "cow": QuadrupedPlan(0.56, 0.14, 0.24, (0, 25), 0.30, 0.30, (20, 50), (0.10, 0.20), "side", True,
                         0.40, 0.12, True, 0.50, 0.035, (60, 85)),
    "horse": QuadrupedPlan(0.42, 0.42, 0.16, (45, 70), 0.40, 0.19, (30, 60), (0.12, 0.15), "pointy", False,
                           0.70, 0.075, True, 0.55, 0.09, (40, 75)),
    "sheep": QuadrupedPlan(0.58, 0.10, 0.16, (10, 40), 0.26, 0.21, (10, 35), None, "side", False,
                           0.34, 0.065, False, 0.16, 0.08, (30, 70), woolly=True),
}


@dataclass
class Part:
    """A shape of the object, drawn in order; ``part`` = None for details that belong to no part."""

    shape: Shape
    part: str | None
    shade: float = 1.0
    dark: bool = False  # eyes, noses, hooves: drawn in a dark colour


@dataclass
class Animal:
    parts: list[Part]
    extra_landmarks: dict[str, tuple[float, float]]  # object-frame points that are not part centres


def _deg(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.deg2rad(rng.uniform(*bounds)))


def _jitter(rng: np.random.Generator, value: float, amount: float = 0.12) -> float:
    return value * rng.uniform(1 - amount, 1 + amount)


def _quadruped(plan: QuadrupedPlan, rng: np.random.Generator) -> Animal:
    """Shapes of a quadruped facing forward (+u), torso centred at the origin, far-side limbs first."""
    j = lambda x: _jitter(rng, x)  # noqa: E731 - local shorthand
    torso_h = j(plan.torso_height)
    torso = Ellipse(0.0, 0.0, 0.5, torso_h / 2)
    leg_len, leg_w = j(plan.leg_length), j(plan.leg_width)
    legs_top = 0.28 * torso_h

    def leg(u: float, part: str, shade: float) -> list[Part]:
        angle = np.pi / 2 + _deg(rng, (-22, 22))
        shape = Capsule.from_angle(u, legs_top, leg_len, angle, leg_w * 0.6, leg_w * 0.42)
        out = [Part(shape, part, shade)]
        if plan.hooves:
            end = shape.end
            out.append(Part(Capsule.from_angle(*end, 0.001, angle, leg_w * 0.45, leg_w * 0.45), part, shade, dark=True))
        return out

    parts: list[Part] = []
    parts += leg(0.36, "frontal_legs", 0.78) + leg(-0.28, "back_legs", 0.78)

    tail_angle = np.pi - _deg(rng, plan.tail_angle)  # pointing backwards, raised for negative angles
    tail = Capsule.from_angle(-0.47, -0.12 * torso_h, j(plan.tail_length), tail_angle, j(plan.tail_width) / 2,
                              plan.tail_width / 3)
    parts.append(Part(tail, "tail"))

    if plan.woolly:  # lumpy fleece: a ring of bumps around the torso ellipse
        for t in np.linspace(0, 2 * np.pi, 9, endpoint=False) + rng.uniform(0, 0.6):
            parts.append(Part(Ellipse(0.42 * np.cos(t), 0.8 * torso_h / 2 * np.sin(t), 0.14, 0.12), "torso"))
    parts.append(Part(torso, "torso"))

    neck_angle = -_deg(rng, plan.neck_angle)
    neck_base = (0.36, -0.18 * torso_h)
    neck = Capsule.from_angle(*neck_base, j(plan.neck_length), neck_angle, j(plan.neck_width) / 2,
                              plan.neck_width * 0.42)
    parts.append(Part(neck, "neck"))

    tilt = _deg(rng, plan.head_tilt)
    head_len, head_h = j(plan.head_length), j(plan.head_height)
    d = np.array([np.cos(tilt), np.sin(tilt)])  # head axis
    n = np.array([np.sin(tilt), -np.cos(tilt)])  # "up" normal of the head
    centre = np.array(neck.end) + 0.3 * head_len * d
    head_parts: list[Part] = []
    if plan.ears == "pointy":
        for k, off in enumerate((-0.22, 0.12)):
            base = centre + off * head_len * d + 0.3 * head_h * n
            ang = np.arctan2(n[1], n[0]) + (-0.35 + 0.25 * k)
            head_parts.append(Part(Capsule.from_angle(*base, 0.17 * head_len / 0.3, ang, 0.055, 0.004), "head",
                                   0.85 + 0.15 * k))
    elif plan.ears == "floppy":
        base = centre - 0.2 * head_len * d + 0.3 * head_h * n
        ang = np.arctan2(-n[1], -n[0]) + 0.5  # hanging down and back
        head_parts.append(Part(Capsule.from_angle(*base, 0.2, ang, 0.045, 0.065), "head", 0.7))
    else:  # "side": short ears sticking out backwards
        base = centre - 0.25 * head_len * d + 0.25 * head_h * n
        ang = np.arctan2(-d[1], -d[0]) - 0.6
        head_parts.append(Part(Ellipse(*(base + 0.06 * np.array([np.cos(ang), np.sin(ang)])), 0.09, 0.035, ang),
                               "head", 0.85))
    if plan.horns:
        for k in range(2):
            base = centre - (0.05 + 0.12 * k) * head_len * d + 0.35 * head_h * n
            ang = np.arctan2(n[1], n[0]) + 0.5 - 0.25 * k
            head_parts.append(Part(Capsule.from_angle(*base, 0.16, ang, 0.03, 0.008), "head", 1.15))
    head_parts.append(Part(Ellipse(*centre, head_len / 2, head_h / 2, tilt), "head"))
    if plan.muzzle is not None:
        m_len, m_w = plan.muzzle
        start = centre + 0.25 * head_len * d - 0.1 * head_h * n
        muzzle = Capsule.from_angle(*start, m_len + 0.2 * head_len, tilt + 0.1, m_w / 2, m_w * 0.42)
        head_parts.append(Part(muzzle, "head", 1.08))
        nose_at = np.array(muzzle.end)
    else:
        nose_at = centre + 0.48 * head_len * d + 0.05 * head_h * n
    eye = centre + 0.12 * head_len * d + 0.18 * head_h * n
    head_parts.append(Part(Ellipse(*eye, 0.032, 0.032), "head", dark=True))
    head_parts.append(Part(Ellipse(*nose_at, 0.03, 0.025), "head", dark=True))
    parts += head_parts

    parts += leg(0.28, "frontal_legs", 1.0) + leg(-0.36, "back_legs", 1.0)
    return Animal(parts, {"back": (0.0, -0.42 * torso_h)})


def _bird(rng: np.random.Generator) -> Animal:
    """Shapes of a bird facing forward: tilted body, round head with beak, two wings, two legs, fan tail."""
    j = lambda x: _jitter(rng, x)  # noqa: E731 - local shorthand
    tilt = -_deg(rng, (5, 30))
    c, s = np.cos(tilt), np.sin(tilt)
    rot = lambda u, v: (u * c - v * s, u * s + v * c)  # noqa: E731 - body frame -> object frame
    torso_h = j(0.56)
    parts: list[Part] = []

    leg_len = j(0.42)
    for u, shade in ((0.06, 0.78), (-0.06, 1.0)):
        top = rot(u, 0.32 * torso_h)
        angle = np.pi / 2 + _deg(rng, (-18, 18))
        leg = Capsule.from_angle(*top, leg_len, angle, 0.028, 0.022)
        foot = Capsule.from_angle(*leg.end, 0.12, _deg(rng, (-10, 20)), 0.02, 0.012)
        parts += [Part(leg, "legs", shade), Part(foot, "legs", shade)]

    wing_raise = -_deg(rng, (0, 75))
    wing_len = j(0.45)
    far_wing = Ellipse(*rot(-0.02, -0.18 * torso_h), wing_len, 0.13, tilt + wing_raise - 0.25)
    parts.append(Part(far_wing, "wings", 0.75))

    tail_angle = np.pi + tilt - _deg(rng, (-35, 5))
    tail = Capsule.from_angle(*rot(-0.42, 0.0), j(0.5), tail_angle, 0.07, 0.13)
    parts.append(Part(tail, "tail"))
    parts.append(Part(Ellipse(0.0, 0.0, 0.5, torso_h / 2, tilt), "torso"))

    head_r = j(0.19)
    head_c = np.array(rot(0.5, -0.36 * torso_h))
    beak_angle = tilt + _deg(rng, (-15, 20))
    beak = Capsule.from_angle(*(head_c + 0.12 * np.array([np.cos(beak_angle), np.sin(beak_angle)])), j(0.32),
                              beak_angle, 0.065, 0.006)
    parts += [Part(beak, "head", 1.2), Part(Ellipse(*head_c, head_r, head_r * 0.95), "head")]
    eye = head_c + head_r * np.array([0.3, -0.25])
    parts.append(Part(Ellipse(*eye, 0.035, 0.035), "head", dark=True))

    near_wing = Ellipse(*rot(0.02, -0.1 * torso_h), wing_len, 0.14, tilt + wing_raise)
    parts.append(Part(near_wing, "wings", 1.1))
    neck = 0.5 * (head_c + np.array(rot(0.42, -0.2 * torso_h)))
    return Animal(parts, {"back": rot(-0.05, -0.47 * torso_h), "neck": (float(neck[0]), float(neck[1]))})


def _texture(rng: np.random.Generator, extent: float = 1.2) -> Texture:
    """A random texture: two palette colours (jittered) and a random pattern."""
    a, b = rng.choice(len(PALETTE), size=2, replace=False)
    jitter = lambda col: np.clip(col + rng.normal(0, 0.04, 3), 0, 1)  # noqa: E731
    return Texture(
        jitter(PALETTE[a]),
        jitter(PALETTE[b]),
        str(rng.choice(PATTERNS)),
        NoiseField(rng, int(rng.integers(3, 6)), extent),
        NoiseField(rng, int(rng.integers(10, 18)), extent),
        frequency=float(rng.uniform(3, 8)),
        direction=float(rng.uniform(0, np.pi)),
        contrast=float(rng.uniform(0.5, 1.0)),
    )


def _dark_texture(rng: np.random.Generator) -> Texture:
    colour = np.full(3, rng.uniform(0.04, 0.14))
    return Texture(colour, colour, "plain", NoiseField(rng, 2, 1.0), NoiseField(rng, 2, 1.0), contrast=0.0)


def _outline_box(shapes: Sequence[Shape], placement: Placement) -> tuple[float, float, float, float]:
    """(y0, x0, y1, x1) pixel extent of shapes under ``placement``."""
    ys, xs = zip(*(placement.to_pixels(*shape.outline()) for shape in shapes), strict=True)
    y, x = np.concatenate(ys), np.concatenate(xs)
    return y.min(), x.min(), y.max(), x.max()


def _place_object(shapes: Sequence[Shape], size: int, rng: np.random.Generator) -> Placement:
    """Scale and shift so that the object fills 50-95% of the crop (per axis, mildly anisotropic)."""
    facing = int(rng.choice((-1, 1)))
    angle = _deg(rng, (-12, 12))
    unit = Placement(0.0, 0.0, 1.0, 1.0, angle, facing)
    y0, x0, y1, x1 = _outline_box(shapes, unit)
    fill = rng.uniform(0.5, 0.95)
    scale = fill * size / max(y1 - y0, x1 - x0)
    sx = scale * rng.uniform(0.9, 1.1)
    sy = scale * rng.uniform(0.9, 1.1)
    width, height = (x1 - x0) * sx, (y1 - y0) * sy
    if max(width, height) > 0.95 * size:
        shrink = 0.95 * size / max(width, height)
        sx, sy, width, height = sx * shrink, sy * shrink, width * shrink, height * shrink
    left = rng.uniform(0, size - 1 - width)
    top = rng.uniform(0, size - 1 - height)
    return Placement(left - x0 * sx, top - y0 * sy, sx, sy, angle, facing)


def _random_placement(size: int, rng: np.random.Generator, scale: tuple[float, float]) -> Placement:
    """A random placement for clutter: position anywhere, object unit = ``scale`` x image size."""
    s = rng.uniform(*scale) * size
    return Placement(rng.uniform(0, size), rng.uniform(0, size), s, s, rng.uniform(0, 2 * np.pi), 1)


def _distractor(rng: np.random.Generator) -> list[Part]:
    """A part-like clutter object: a head with an eye and an ear, a pair of legs, a tail or a wing."""
    kind = rng.choice(("head", "legs", "tail", "wing"))
    if kind == "head":
        out = [Part(Capsule.from_angle(-0.08, -0.1, 0.15, -np.pi / 2 + rng.uniform(-0.4, 0.4), 0.05, 0.004), None)]
        out += [Part(Ellipse(0.0, 0.0, 0.16, 0.13, rng.uniform(-0.5, 0.5)), None),
                Part(Ellipse(0.05, -0.03, 0.03, 0.03), None, dark=True)]
        return out
    if kind == "legs":
        return [Part(Capsule.from_angle(u, 0.0, 0.45, np.pi / 2 + rng.uniform(-0.3, 0.3), 0.045, 0.032), None)
                for u in (-0.08, 0.08)]
    if kind == "tail":
        return [Part(Capsule.from_angle(0.0, 0.0, 0.6, rng.uniform(0, 2 * np.pi), 0.04, 0.015), None)]
    return [Part(Ellipse(0.0, 0.0, 0.42, 0.13, rng.uniform(0, np.pi)), None)]


@dataclass
class RenderedSample:
    image: np.ndarray  # (H, W, 3) float in [0, 1]
    labels: np.ndarray  # (H, W) int: 0 = no part, i + 1 = part_names[i]
    part_names: tuple[str, ...]
    landmarks: dict[str, Point | None]
    placement: Placement | None


def render(kind: str, size: int, rng: np.random.Generator) -> RenderedSample:
    """Render one sample of ``kind`` (a category or ``"background"``) at ``size`` x ``size`` pixels."""
    animal = None
    if kind != NEGATIVE:
        animal = _bird(rng) if kind == "bird" else _quadruped(PLANS[kind], rng)
        placement = _place_object([p.shape for p in animal.parts], size, rng)
    else:
        placement = Placement(size / 2, size / 2, size / 2, size / 2)
    canvas = Canvas(size, size, placement)
    canvas.fill(_texture(rng, extent=1.5))

    # Background clutter, then part-like distractors (more of them on negatives, so shape parts alone don't decide).
    for _ in range(int(rng.integers(2, 6))):
        blob = Ellipse(0.0, 0.0, rng.uniform(0.3, 1.0), rng.uniform(0.15, 0.5))
        canvas.draw(blob, _texture(rng), placement=_random_placement(size, rng, (0.1, 0.3)))
    n_distractors = int(rng.integers(1, 3)) if animal is None else int(rng.integers(0, 3))
    for _ in range(n_distractors):
        where = _random_placement(size, rng, (0.25, 0.5))
        texture = _texture(rng)
        dark = _dark_texture(rng)
        for piece in _distractor(rng):
            canvas.draw(piece.shape, dark if piece.dark else texture, placement=where)

    part_names = PART_NAMES.get(kind, ())
    landmarks: dict[str, Point | None] = {}
    if animal is not None:
        body = _texture(rng)(canvas.u, canvas.v)
        dark = np.broadcast_to(np.full(3, rng.uniform(0.04, 0.14)), body.shape)
        full = {name: np.zeros((size, size)) for name in part_names}
        for piece in animal.parts:
            label = part_names.index(piece.part) + 1 if piece.part else 0
            hit = canvas.draw(piece.shape, dark if piece.dark else body, label, piece.shade)
            if hit is not None and piece.part:
                win, cov = hit
                full[piece.part][win] = np.maximum(full[piece.part][win], cov)
        if rng.random() < 0.35:  # an occluder in front of the object
            occluder = Capsule.from_angle(0.0, 0.0, 1.0, rng.uniform(0, np.pi), 0.08, 0.06)
            canvas.draw(occluder, _texture(rng), placement=_random_placement(size, rng, (0.25, 0.6)))
        landmarks = _landmarks(canvas.labels, full, part_names, animal, placement)

    image = canvas.image * rng.uniform(0.8, 1.15) + rng.uniform(-0.08, 0.08)
    image = image + rng.normal(0.0, 0.02, image.shape)
    return RenderedSample(np.clip(image, 0, 1), canvas.labels.copy(), part_names, landmarks,
                          placement if animal is not None else None)


def _landmarks(
    labels: np.ndarray,
    full: dict[str, np.ndarray],
    part_names: tuple[str, ...],
    animal: Animal,
    placement: Placement,
) -> dict[str, Point | None]:
    """Part centres (centroid of the whole, unoccluded part) where enough of the part is visible."""
    out: dict[str, Point | None] = {}
    for i, name in enumerate(part_names):
        weights = full[name]
        total = weights.sum()
        visible = (labels == i + 1).sum()
        if total < 1.0 or visible < MIN_VISIBLE_FRACTION * total:
            out[name] = None
            continue
        ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
        out[name] = (float((weights * ys).sum() / total), float((weights * xs).sum() / total))
    for name, (u, v) in animal.extra_landmarks.items():
        y, x = placement.to_pixels(np.array([u]), np.array([v]))
        anchor = "torso" if name == "back" else "head"
        out[name] = (float(y[0]), float(x[0])) if out.get(anchor) is not None else None
    return {name: out.get(name) for name in (*part_names, *[n for n in LANDMARK_NAMES if n not in part_names])}


class SyntheticParts(Dataset):
    """Random-access dataset of procedural animals (and background negatives) as :class:`PartSample`.

    Items are ordered category by category (``n_per_category`` each) then ``n_negatives`` negatives.
    ``label`` is the index into :attr:`classes` (the categories, then ``"background"`` when there are negatives).
    """

    def __init__(
        self,
        categories: Sequence[str] | str = CATEGORIES,
        split: str = "train",
        n_per_category: int = 100,
        n_negatives: int = 0,
        image_size: int = 64,
        seed: int = 0,
    ):
        self.categories = check_categories(categories)
        self.split = check_choice("split", split, SPLITS)
        check_positive("n_per_category", n_per_category, allow_zero=True)
        check_positive("n_negatives", n_negatives, allow_zero=True)
        check_positive("image_size", image_size)
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
        self.n_per_category, self.n_negatives = int(n_per_category), int(n_negatives)
        self.image_size, self.seed = int(image_size), int(seed)
        self.classes = self.categories + ((NEGATIVE,) if self.n_negatives else ())

    def __len__(self) -> int:
        return self.n_per_category * len(self.categories) + self.n_negatives

    def config(self) -> dict:
        """Everything that decides the content (the key of caches built from this dataset)."""
        return {
            "dataset": "synthetic",
            "categories": list(self.categories) if self.n_per_category else [],
            "split": self.split,
            "n_per_category": self.n_per_category,
            "n_negatives": self.n_negatives,
            "image_size": self.image_size,
            "seed": self.seed,
        }

    def blocks(self) -> list[SyntheticParts]:
        """One dataset per category, then one for the negatives: the units :func:`arrays.load_arrays` caches
        (empty when this dataset is a single block already)."""
        kinds = len(self.categories) * bool(self.n_per_category) + bool(self.n_negatives)
        if kinds <= 1:
            return []
        out = [SyntheticParts((c,), self.split, self.n_per_category, 0, self.image_size, self.seed)
               for c in self.categories if self.n_per_category]
        if self.n_negatives:
            out.append(SyntheticParts(self.categories[:1], self.split, 0, self.n_negatives, self.image_size, self.seed))
        return out

    def kind_and_index(self, i: int) -> tuple[str, int]:
        """(category or ``"background"``, instance index within that kind and split) of item ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        i = i % len(self)
        block = self.n_per_category * len(self.categories)
        if i < block:
            return self.categories[i // self.n_per_category], i % self.n_per_category
        return NEGATIVE, i - block

    def rng(self, i: int) -> np.random.Generator:
        kind, index = self.kind_and_index(i)
        return np.random.default_rng([self.seed, _KIND_CODES[kind], SPLIT_OFFSETS[self.split] + index])

    def load_raw(self, i: int) -> RenderedSample:
        """Render item ``i`` with numpy only (safe in forked worker processes; see ``arrays.materialize``)."""
        kind, _ = self.kind_and_index(i)
        return render(kind, self.image_size, self.rng(i))

    def from_raw(self, i: int, rendered: RenderedSample) -> PartSample:
        """The :class:`PartSample` of item ``i`` from its rendering."""
        kind, index = self.kind_and_index(i)
        image = torch.from_numpy(rendered.image.astype(np.float32)).permute(2, 0, 1).contiguous()
        masks = {name: torch.from_numpy(rendered.labels == k + 1) for k, name in enumerate(rendered.part_names)}
        return PartSample(
            image=image,
            label=self.classes.index(kind),
            category=kind,
            landmarks=rendered.landmarks,
            part_masks=masks,
            is_negative=kind == NEGATIVE,
            meta={"index": index, "split": self.split,
                  "facing": rendered.placement.facing if rendered.placement else 0},
        )

    def __getitem__(self, i: int) -> PartSample:
        return self.from_raw(i, self.load_raw(i))


def single_category(category: str, split: str, n_positives: int, n_negatives: int, image_size: int,
                    seed: int) -> SyntheticParts:
    """Data for single-category classification: ``category`` vs. background negatives."""
    return SyntheticParts((category,), split, n_positives, n_negatives, image_size, seed)


def multi_category(categories: Sequence[str], split: str, n_per_category: int, image_size: int,
                   seed: int) -> SyntheticParts:
    """Data for multi-category classification (no negatives)."""
    return SyntheticParts(categories, split, n_per_category, 0, image_size, seed)

