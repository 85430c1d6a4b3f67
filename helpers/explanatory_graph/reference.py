"""Slow, obviously-correct reference of the miner and of inference: plain Python loops over images, channels,
nodes and units, float64 arithmetic, written straight from Eq. (1)-(4) and Algorithm 1 of the explanatory graph
paper. Only for tiny inputs (tests, the benchmark's speed-up); the vectorised miner must match it.

Positions are (y, x) tuples; node k of a layer is (filter k // N, node k % N).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .graph import STAT_NAMES, ExplanatoryGraph, LayerSpec
from .params import MinerParams


def _norm(maps: np.ndarray) -> list[tuple[float, float]]:
    """Per channel: (mean, population standard deviation) of the responses over all images and units."""
    out = []
    for c in range(maps.shape[1]):
        values = [float(v) for v in maps[:, c].flat]
        mean = sum(values) / len(values)
        out.append((mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))))
    return out


def _gauss(y: float, x: float, centre: tuple[float, float], sigma: float) -> float:
    """N((y, x) | centre, sigma^2 I) in 2-D."""
    d2 = (y - centre[0]) ** 2 + (x - centre[1]) ** 2
    return math.exp(-d2 / (2 * sigma * sigma)) / (2 * math.pi * sigma * sigma)


class _Layer:
    """One layer's data and parameters, as nested Python lists."""

    def __init__(self, spec: LayerSpec, maps: np.ndarray, norm: list[tuple[float, float]], beta: float,
                 input_size: int, mu0: np.ndarray, mirrored: np.ndarray | None = None):
        self.spec = spec
        self.n_images, self.channels = maps.shape[0], spec.channels
        self.rows = [(spec.centre + spec.stride * i) / input_size for i in range(spec.height)]
        self.cols = [(spec.centre + spec.stride * j) / input_size for j in range(spec.width)]
        self.unflipped = _entities(maps, norm, beta)
        self.mirrored = None if mirrored is None else _entities(mirrored, norm, beta)
        self.flips = [False] * self.n_images  # images explained by their mirror image
        self.n_nodes = mu0.shape[1]
        self.mu = [[(float(mu0[c, n, 0]), float(mu0[c, n, 1])) for n in range(self.n_nodes)]
                   for c in range(spec.channels)]
        self.sigma = [[0.0] * self.n_nodes for _ in range(spec.channels)]
        self.parents = [[[] for _ in range(self.n_nodes)] for _ in range(spec.channels)]
        self.positions: list[list[tuple[float, float]]] = []  # [image][k]
        self.scores: list[list[float]] = []  # [image][k]

    def node(self, k: int) -> tuple[int, int]:
        return k // self.n_nodes, k % self.n_nodes

    def f(self, image: int) -> list:
        """F(x) [c][h][w] of ``image`` in its chosen orientation."""
        return self.mirrored[image] if self.flips[image] else self.unflipped[image]


def _entities(maps: np.ndarray, norm: list[tuple[float, float]], beta: float) -> list:
    """F(x) = beta max((response - offset) / scale, 0) as nested lists [image][c][h][w] (0 where scale is 0)."""
    n, channels, height, width = maps.shape
    return [[[[beta * max((float(maps[i, c, h, w]) - norm[c][0]) / norm[c][1], 0.0) if norm[c][1] > 0 else 0.0
               for w in range(width)] for h in range(height)] for c in range(channels)] for i in range(n)]


def _image_objective(layer: _Layer, maps: list, tau: float) -> float:
    """sum_c sum_x F(x) log P(p_x) of one image's maps [c][h][w] under the top layer (Delta = 0)."""
    total = 0.0
    for c in range(layer.channels):
        for h, y in enumerate(layer.rows):
            for w, x in enumerate(layer.cols):
                mixture = sum(_gauss(y, x, layer.mu[c][n], layer.sigma[c][n]) for n in range(layer.n_nodes)) + tau
                total += maps[c][h][w] * math.log(mixture / (layer.n_nodes + 1))
    return total


def _choose_flips(layer: _Layer, tau: float) -> None:
    """Flip alignment: each image takes the orientation whose maps the top layer explains better (Eq. 1)."""
    for image in range(layer.n_images):
        layer.flips[image] = (_image_objective(layer, layer.mirrored[image], tau)
                              > _image_objective(layer, layer.unflipped[image], tau))


def _delta(layer: _Layer, upper: _Layer | None, image: int, c: int, n: int) -> tuple[float, float]:
    """Delta_{I,V}: the 1/sigma'^2-weighted mean of p_V'^I - mu_V' over the parents of V (0 without parents)."""
    if upper is None or not layer.parents[c][n]:
        return 0.0, 0.0
    total, dy, dx = 0.0, 0.0, 0.0
    for k in layer.parents[c][n]:
        pc, pn = upper.node(k)
        weight = 1.0 / upper.sigma[pc][pn] ** 2
        total += weight
        dy += weight * (upper.positions[image][k][0] - upper.mu[pc][pn][0])
        dx += weight * (upper.positions[image][k][1] - upper.mu[pc][pn][1])
    return dy / total, dx / total


def _pass(layer: _Layer, upper: _Layer | None, tau: float):
    """E-step (Eq. 2-4) and inference over all images. Returns the objective of Eq. (1), the weighted samples
    [(F r, p_x - Delta)] of every node, and the inferred positions and scores [image][k]."""
    n_nodes = layer.n_nodes
    objective = 0.0
    samples = [[[] for _ in range(n_nodes)] for _ in range(layer.channels)]
    positions, scores = [], []
    for image in range(layer.n_images):
        positions.append([])
        scores.append([])
        for c in range(layer.channels):
            shift = [_delta(layer, upper, image, c, n) for n in range(n_nodes)]
            centres = [(layer.mu[c][n][0] + shift[n][0], layer.mu[c][n][1] + shift[n][1]) for n in range(n_nodes)]
            best = [(-1.0, (0.0, 0.0)) for _ in range(n_nodes)]
            for h, y in enumerate(layer.rows):
                for w, x in enumerate(layer.cols):
                    f = layer.f(image)[c][h][w]
                    density = [_gauss(y, x, centres[n], layer.sigma[c][n]) for n in range(n_nodes)]
                    mixture = sum(density) + tau
                    objective += f * math.log(mixture / (n_nodes + 1))
                    for n in range(n_nodes):
                        samples[c][n].append((f * density[n] / mixture, (y - shift[n][0], x - shift[n][1])))
                        if f * density[n] > best[n][0]:
                            best[n] = (f * density[n], (y, x))
            for n in range(n_nodes):
                scores[-1].append(best[n][0])
                positions[-1].append(best[n][1])
    return objective, samples, positions, scores


def _m_step(layer: _Layer, samples, low: float, high: float) -> None:
    """mu_V = weighted mean of p_x - Delta; sigma_V = sqrt(weighted variance per axis) clamped to [low, high]."""
    for c in range(layer.channels):
        for n in range(layer.n_nodes):
            total = sum(w for w, _ in samples[c][n])
            if total <= 0:
                continue
            my = sum(w * q[0] for w, q in samples[c][n]) / total
            mx = sum(w * q[1] for w, q in samples[c][n]) / total
            variance = sum(w * ((q[0] - my) ** 2 + (q[1] - mx) ** 2) for w, q in samples[c][n]) / (2 * total)
            layer.mu[c][n] = (my, mx)
            layer.sigma[c][n] = min(max(math.sqrt(variance), low), high)


def _allowed(upper: _Layer, min_motion: float, spacing: float) -> list[bool]:
    """Candidate parents that move across images and whose prior lies on the map (within half a unit)."""
    out = []
    n = upper.n_images
    for k in range(upper.n_nodes * upper.channels):
        mean_y = sum(upper.positions[i][k][0] for i in range(n)) / n
        mean_x = sum(upper.positions[i][k][1] for i in range(n)) / n
        spread = sum((upper.positions[i][k][0] - mean_y) ** 2 + (upper.positions[i][k][1] - mean_x) ** 2
                     for i in range(n)) / n
        mu = upper.mu[k // upper.n_nodes][k % upper.n_nodes]
        inside = (upper.rows[0] - spacing / 2 <= mu[0] <= upper.rows[-1] + spacing / 2
                  and upper.cols[0] - spacing / 2 <= mu[1] <= upper.cols[-1] + spacing / 2)
        out.append(spread >= min_motion**2 and inside)
    return out


def _select(layer: _Layer, upper: _Layer, old_mu, params: MinerParams, spacing: float) -> None:
    """E_V: top-M allowed parents by sum_I w_V^I c_V'^I exp(-|(p_V - mu_V) - (p_V' - mu_V')|^2 / 2 s^2)."""
    n = layer.n_images
    allowed = _allowed(upper, params.min_motion_units * spacing, spacing)
    s = params.edge_scale_units * spacing
    k_up = upper.n_nodes * upper.channels
    up_mean = [sum(upper.scores[i][j] for i in range(n)) / n for j in range(k_up)]
    for k in range(layer.n_nodes * layer.channels):
        c, m = layer.node(k)
        total = sum(layer.scores[i][k] for i in range(n))
        ranked = []
        for j in range(k_up):
            if not allowed[j] or total <= 0 or up_mean[j] <= 0:
                continue
            pc, pn = upper.node(j)
            score = 0.0
            for i in range(n):
                gy = (layer.positions[i][k][0] - old_mu[c][m][0]) - (upper.positions[i][j][0] - upper.mu[pc][pn][0])
                gx = (layer.positions[i][k][1] - old_mu[c][m][1]) - (upper.positions[i][j][1] - upper.mu[pc][pn][1])
                active = min(1.0, upper.scores[i][j] / up_mean[j])
                score += layer.scores[i][k] / total * active * math.exp(-(gy * gy + gx * gx) / (2 * s * s))
            if score > 0:
                ranked.append((-score, j))
        layer.parents[c][m] = [j for _, j in sorted(ranked)[: params.n_parents]]


def _fit(layer: _Layer, upper: _Layer | None, params: MinerParams, input_size: int,
         fixed: list | None) -> list[float]:
    """Algorithm 1 for one layer; returns the objective before every iteration and after the last."""
    low, start, high = params.sigma_bounds(layer.spec.spacing(input_size))
    layer.sigma = [[start] * layer.n_nodes for _ in range(layer.channels)]
    if fixed is not None:
        layer.parents = fixed
    history = []
    choose = upper is None and layer.mirrored is not None
    for iteration in range(params.iterations):
        if choose and iteration > 0:  # the first pass takes the initial orientations
            _choose_flips(layer, params.tau)
        objective, samples, layer.positions, layer.scores = _pass(layer, upper, params.tau)
        history.append(objective)
        old_mu = [list(row) for row in layer.mu]
        _m_step(layer, samples, low, high)
        if upper is not None and fixed is None and iteration < params.iterations - 1:
            _select(layer, upper, old_mu, params, upper.spec.spacing(input_size))
    if choose:
        _choose_flips(layer, params.tau)
    objective, _, layer.positions, layer.scores = _pass(layer, upper, params.tau)
    history.append(objective)
    return history


def _stats(layer: _Layer, top_k: int) -> dict[str, torch.Tensor]:
    out = {name: np.zeros((layer.channels, layer.n_nodes)) for name in STAT_NAMES}
    for k in range(layer.channels * layer.n_nodes):
        c, n = layer.node(k)
        values = sorted((layer.scores[i][k] for i in range(layer.n_images)), reverse=True)
        out["score_mean"][c, n] = sum(values) / len(values)
        top = values[: min(top_k, len(values))]
        out["score_top"][c, n] = sum(top) / len(top)
        out["score_total"][c, n] = sum(values)
    return {name: torch.from_numpy(value) for name, value in out.items()}


def _parents_tensor(layer: _Layer) -> torch.Tensor:
    width = max((len(p) for row in layer.parents for p in row), default=0)
    out = torch.full((layer.channels, layer.n_nodes, width), -1, dtype=torch.long)
    for c in range(layer.channels):
        for n in range(layer.n_nodes):
            for slot, k in enumerate(layer.parents[c][n]):
                out[c, n, slot] = k
    return out


def mine_reference(maps: Mapping[str, np.ndarray], specs: Sequence[LayerSpec], params: MinerParams, *,
                   input_size: int, init: Mapping[str, np.ndarray], edges: Mapping[str, np.ndarray] | None = None,
                   mirrored: Mapping[str, np.ndarray] | None = None,
                   flips: Sequence[bool] | None = None) -> ExplanatoryGraph:
    """Reference Algorithm 1 on whole feature maps ``{layer: (n, C, H, W)}``; ``specs`` bottom to top; ``init`` the
    mu^(0) (C, N, 2) of every layer; ``edges`` optional fixed parents (C, N, M) of lower layers (-1 = none);
    ``mirrored`` the maps of the mirror images (flip alignment, chosen by the top layer) with ``flips`` the
    orientations of the first E-step."""
    layers, histories, norms = {}, {}, {}
    upper = None
    for spec in reversed(list(specs)):
        norms[spec.name] = _norm(np.asarray(maps[spec.name], dtype=np.float64))
        mirror = None if mirrored is None else np.asarray(mirrored[spec.name], dtype=np.float64)
        layer = _Layer(spec, np.asarray(maps[spec.name], dtype=np.float64), norms[spec.name], params.beta,
                       input_size, np.asarray(init[spec.name], dtype=np.float64), mirror)
        if upper is not None:
            layer.flips = list(upper.flips)
        elif mirrored is not None:
            layer.flips = [bool(flip) for flip in flips]
        fixed = None
        if edges is not None and upper is not None and spec.name in edges:
            fixed = [[[int(k) for k in edges[spec.name][c, n] if k >= 0] for n in range(layer.n_nodes)]
                     for c in range(layer.channels)]
        histories[spec.name] = _fit(layer, upper, params, input_size, fixed)
        layers[spec.name] = upper = layer
    names = [spec.name for spec in specs]
    return ExplanatoryGraph(
        tuple(specs), input_size,
        mu={name: torch.tensor(layers[name].mu, dtype=torch.float64) for name in names},
        sigma={name: torch.tensor(layers[name].sigma, dtype=torch.float64) for name in names},
        parents={name: _parents_tensor(layers[name]) for name in names},
        norm={name: torch.tensor(norms[name], dtype=torch.float64).T for name in names},
        stats={name: _stats(layers[name], params.top_k) for name in names},
        meta={"layers": names, "params": params.to_dict(), "history": histories, "n_images": len(maps[names[0]]),
              **({"flips": layers[names[-1]].flips} if mirrored is not None else {})})


def infer_reference(graph: ExplanatoryGraph, maps: Mapping[str, np.ndarray],
                    mirrored: Mapping[str, np.ndarray] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference inference: per layer, top-down, positions (n, C, N, 2) and scores (n, C, N) as float64 arrays.
    With ``mirrored`` maps, each image is explained in the orientation its top layer fits better, and positions
    found on a mirror image are mapped back (unit column w -> W - 1 - w)."""
    params = MinerParams(**graph.meta["params"])
    out = {}
    upper = None
    for spec in reversed(graph.specs):
        norm = [(float(offset), float(scale)) for offset, scale in graph.norm[spec.name].T]
        mirror = None if mirrored is None else np.asarray(mirrored[spec.name], dtype=np.float64)
        layer = _Layer(spec, np.asarray(maps[spec.name], dtype=np.float64), norm, params.beta, graph.input_size,
                       graph.mu[spec.name].numpy(), mirror)
        layer.sigma = graph.sigma[spec.name].tolist()
        layer.parents = [[[k for k in row if k >= 0] for row in channel]
                         for channel in graph.parents[spec.name].tolist()]
        if upper is not None:
            layer.flips = upper.flips
        elif mirror is not None:
            _choose_flips(layer, params.tau)
        _, _, layer.positions, layer.scores = _pass(layer, upper, params.tau)
        shape = (layer.n_images, layer.channels, layer.n_nodes)
        positions = [[_unmirror(layer, p) if layer.flips[i] else p for p in row] for i, row in
                     enumerate(layer.positions)]
        out[spec.name] = (np.array(positions).reshape(*shape, 2), np.array(layer.scores).reshape(shape))
        upper = layer
    return out


def _unmirror(layer: _Layer, position: tuple[float, float]) -> tuple[float, float]:
    """The position of unit column w on a mirror image, in the image: that of column W - 1 - w."""
    return position[0], layer.cols[len(layer.cols) - 1 - layer.cols.index(position[1])]
