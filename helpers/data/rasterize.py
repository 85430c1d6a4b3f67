"""Anti-aliased rasterisation of the procedural dataset's shapes and textures (vectorised numpy).

Shapes live in an object frame (u forward, v down; one unit = the torso length) and are drawn through an
:class:`Placement` (facing, rotation, anisotropic scale, translation) into an image whose pixel (y, x) has its
centre at integer coordinates. Coverage is computed from a signed distance, which gives soft, anti-aliased edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    """Object frame -> pixel frame: x = x0 + sx * a, y = y0 + sy * b with (a, b) the object point
    mirrored by ``facing`` (+1 right, -1 left) and rotated by ``angle`` (radians)."""

    x0: float
    y0: float
    sx: float
    sy: float
    angle: float = 0.0
    facing: int = 1

    @property
    def scale(self) -> float:
        """Mean pixels per object unit (for anti-aliasing widths)."""
        return 0.5 * (self.sx + self.sy)

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object points -> (y, x) pixel coordinates."""
        uf = self.facing * np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        c, s = np.cos(self.angle), np.sin(self.angle)
        a, b = uf * c - v * s, uf * s + v * c
        return self.y0 + self.sy * b, self.x0 + self.sx * a

    def to_object(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (y, x) -> object points (u, v)."""
        a, b = (x - self.x0) / self.sx, (y - self.y0) / self.sy
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.facing * (a * c + b * s), -a * s + b * c


@dataclass(frozen=True)
class Ellipse:
    """Ellipse with centre (cu, cv), semi-axes a (along ``angle``) and b, angle in radians."""

    cu: float
    cv: float
    a: float
    b: float
    angle: float = 0.0

    def outline(self, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        c, s = np.cos(self.angle), np.sin(self.angle)
        du, dv = self.a * np.cos(t), self.b * np.sin(t)
        return self.cu + du * c - dv * s, self.cv + du * s + dv * c

    def distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate signed distance (object units): (r - 1) / |grad r| with r the ellipse radius."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        du, dv = u - self.cu, v - self.cv
        p, q = du * c + dv * s, -du * s + dv * c
        r = np.sqrt((p / self.a) ** 2 + (q / self.b) ** 2)
        grad = np.sqrt((p / self.a**2) ** 2 + (q / self.b**2) ** 2)
        return (r - 1.0) * r / np.maximum(grad, 1e-9)

    def centre(self) -> tuple[float, float]:
        return self.cu, self.cv


@dataclass(frozen=True)
class Capsule:
    """Tapered segment from (u0, v0) with radius r0 to (u1, v1) with radius r1 (exact signed distance)."""

    u0: float
    v0: float
    u1: float
    v1: float
    r0: float
    r1: float

    @staticmethod
    def from_angle(u0: float, v0: float, length: float, angle: float, r0: float, r1: float) -> Capsule:
        """A capsule starting at (u0, v0) pointing along ``angle`` (radians; 0 = forward, positive = down)."""
        return Capsule(u0, v0, u0 + length * np.cos(angle), v0 + length * np.sin(angle), r0, r1)

    @property
    def end(self) -> tuple[float, float]:
        return self.u1, self.v1

    def outline(self, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        us = np.concatenate([self.u0 + self.r0 * np.cos(t), self.u1 + self.r1 * np.cos(t)])
        vs = np.concatenate([self.v0 + self.r0 * np.sin(t), self.v1 + self.r1 * np.sin(t)])
        return us, vs

    def distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = self.u1 - self.u0, self.v1 - self.v0
        length2 = max(du * du + dv * dv, 1e-12)
        t = np.clip(((u - self.u0) * du + (v - self.v0) * dv) / length2, 0.0, 1.0)
        pu, pv = u - (self.u0 + t * du), v - (self.v0 + t * dv)
        return np.sqrt(pu * pu + pv * pv) - (self.r0 + t * (self.r1 - self.r0))

    def centre(self) -> tuple[float, float]:
        return 0.5 * (self.u0 + self.u1), 0.5 * (self.v0 + self.v1)


Shape = Ellipse | Capsule


class NoiseField:
    """Smooth value noise: a random coarse grid bilinearly interpolated over a square domain [-extent, extent]^2."""

    def __init__(self, rng: np.random.Generator, cells: int, extent: float):
        self.grid = rng.random((cells + 1, cells + 1))
        self.cells, self.extent = cells, extent

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        gu = np.clip((u + self.extent) / (2 * self.extent) * self.cells, 0, self.cells - 1e-6)
        gv = np.clip((v + self.extent) / (2 * self.extent) * self.cells, 0, self.cells - 1e-6)
        iu, iv = gu.astype(int), gv.astype(int)
        fu, fv = gu - iu, gv - iv
        g = self.grid
        top = g[iv, iu] * (1 - fu) + g[iv, iu + 1] * fu
        bottom = g[iv + 1, iu] * (1 - fu) + g[iv + 1, iu + 1] * fu
        return top * (1 - fv) + bottom * fv


@dataclass
class Texture:
    """Two colours blended by a pattern evaluated in the frame the shape is drawn in (it moves with the object)."""

    colour_a: np.ndarray
    colour_b: np.ndarray
    pattern: str
    noise: NoiseField
    fine: NoiseField
    frequency: float = 6.0
    direction: float = 0.0
    contrast: float = 1.0

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.pattern == "stripes":
            phase = u * np.cos(self.direction) + v * np.sin(self.direction)
            t = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * self.frequency * phase + 6 * self.noise(u, v)))
        elif self.pattern == "spots":
            t = np.clip((self.fine(u, v) - 0.55) * 6.0, 0.0, 1.0)
        elif self.pattern == "patches":
            t = np.clip((self.noise(u, v) - 0.5) * 4.0 + 0.5, 0.0, 1.0)
        else:  # "plain": gentle shading noise only
            t = 0.3 * self.noise(u, v)
        t = t * self.contrast + 0.15 * (self.fine(u, v) - 0.5)
        return self.colour_a + (self.colour_b - self.colour_a) * np.clip(t, 0, 1)[..., None]


class Canvas:
    """An RGB image plus a part-label map; shapes are composited front to back in call order (painter's order)."""

    def __init__(self, height: int, width: int, placement: Placement):
        self.height, self.width = height, width
        self.image = np.zeros((height, width, 3), dtype=np.float64)
        self.labels = np.zeros((height, width), dtype=np.int16)
        self.placement = placement
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        self.ys, self.xs = ys, xs
        self.u, self.v = placement.to_object(ys, xs)

    def window(self, shape: Shape, placement: Placement) -> tuple[slice, slice] | None:
        """Pixel window (with a 2-pixel margin) that holds ``shape``; None when it falls outside the image."""
        y, x = placement.to_pixels(*shape.outline())
        y0, y1 = int(np.floor(y.min())) - 2, int(np.ceil(y.max())) + 3
        x0, x1 = int(np.floor(x.min())) - 2, int(np.ceil(x.max())) + 3
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, self.height), min(x1, self.width)
        if y0 >= y1 or x0 >= x1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def draw(
        self,
        shape: Shape,
        texture: Texture | np.ndarray,
        label: int = 0,
        shade: float = 1.0,
        placement: Placement | None = None,
    ) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """Composite ``shape`` filled with ``texture``; pixels it covers (> 50 %) get ``label`` (0 = no part).

        ``texture`` is a :class:`Texture` or its colours already evaluated over the whole image (H, W, 3), which
        saves work when many shapes share one texture.

        Returns the pixel window and the anti-aliased coverage in [0, 1] over it (None when off-image)."""
        placement = placement or self.placement
        win = self.window(shape, placement)
        if win is None:
            return None
        if placement is self.placement:
            u, v = self.u[win], self.v[win]
        else:
            u, v = placement.to_object(self.ys[win], self.xs[win])
        distance = shape.distance(u, v) * placement.scale  # in pixels
        cov = np.clip(0.5 - distance, 0.0, 1.0)
        depth = np.clip(-distance / 2.5, 0.0, 1.0)  # darker rim: a 3-D look and visible outlines
        fill = texture[win] if isinstance(texture, np.ndarray) else texture(u, v)
        colour = fill * (shade * (0.72 + 0.28 * depth))[..., None]
        alpha = cov[..., None]
        self.image[win] = self.image[win] * (1 - alpha) + colour * alpha
        self.labels[win][cov > 0.5] = label
        return win, cov

    def fill(self, texture: Texture) -> None:
        """Cover the whole image with ``texture`` evaluated in pixel coordinates scaled to [-1, 1]."""
        scale = max(self.height, self.width) / 2
        u, v = (self.xs - self.width / 2) / scale, (self.ys - self.height / 2) / scale
        self.image[:] = texture(u, v)
