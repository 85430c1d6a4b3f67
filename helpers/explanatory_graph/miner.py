"""Top-down EM mining of the explanatory graph (Algorithm 1, explanatory graph paper), streamed in image batches.

Per pass over the images, feature-sized tensors exist for one batch at a time; what is kept for all images is the
inferred position and score of every node (n x K), which the layer below needs as R_{L+1}.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..config import get_device, progress
from . import model
from .graph import STAT_NAMES, ExplanatoryGraph, LayerSpec
from .params import MinerParams
from .source import Batch, FeatureSource, as_source, iterate, iterate_pairs


@dataclass
class LayerFit:
    """A mined layer: parameters (float64), edges, and R_L = inferred positions/scores on the mining images."""

    spec: LayerSpec
    mu: torch.Tensor  # (C, N, 2)
    sigma: torch.Tensor  # (C, N)
    parents: torch.Tensor  # (C, N, M) flat indices into the layer above, -1 for none
    positions: torch.Tensor  # (n, K, 2)
    scores: torch.Tensor  # (n, K)
    history: list[float]  # objective of Eq. (1) before each iteration and after the last
    seconds: dict[str, float]  # wall time of the EM passes ("em") and of the edge selection ("edges")


@dataclass
class _Context:
    """What every pass over one layer shares."""

    source: FeatureSource
    spec: LayerSpec
    norm: torch.Tensor
    n_images: int
    input_size: int
    params: MinerParams
    device: torch.device
    dtype: torch.dtype
    mirrored: FeatureSource | None = None  # the mirror images' features (flip alignment), else None
    flips: torch.Tensor | None = None  # (n,) bool: images explained mirrored; chosen by the top layer


def channel_statistics(source: FeatureSource, specs: Sequence[LayerSpec], device: torch.device,
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """One pass: per channel, the mean and standard deviation of the response over all images and units (the
    (offset, scale) of f_x in F(x), (2, C)), the mean map (C, H, W) used to seed mu, and the number of images."""
    maps = {s.name: torch.zeros(s.channels, s.height, s.width, dtype=torch.float64, device=device) for s in specs}
    squares = {s.name: torch.zeros(s.channels, dtype=torch.float64, device=device) for s in specs}
    n_images = 0
    for _, batch in iterate(source, specs):
        for spec in specs:
            values = batch[spec.name].to(device, torch.float64)
            maps[spec.name] += values.sum(0)
            squares[spec.name] += values.pow(2).sum((0, 2, 3))
        n_images += len(batch[specs[0].name])
    if n_images == 0:
        raise ValueError("the feature source yielded no images")
    norm = {}
    for spec in specs:
        units = n_images * spec.height * spec.width
        mean = maps[spec.name].sum((1, 2)) / units
        norm[spec.name] = torch.stack([mean, (squares[spec.name] / units - mean.pow(2)).clamp_min(0).sqrt()])
    return norm, {name: m / n_images for name, m in maps.items()}, n_images


def initial_flips(source: FeatureSource, mirrored: FeatureSource, spec: LayerSpec, norm: torch.Tensor,
                  beta: float, device: torch.device, rounds: int = 50) -> torch.Tensor:
    """The start of flip alignment, (n,) bool: each image's top-layer entities summed over rows (a (C, W) profile
    per image), matched against a template in both orientations; the template starts as the strongest image's
    profile and becomes the mean aligned profile, until no image changes side (deterministic)."""
    profiles: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for _, batch, mirror in iterate_pairs(source, mirrored, [spec]):
        for maps, out in zip((batch, mirror), profiles, strict=True):
            out.append(model.entities(maps[spec.name].to(device, torch.float64), norm, beta).sum(2).flatten(1))
    plain, flipped = (torch.cat(p) for p in profiles)
    template = plain[plain.norm(dim=1).argmax()]
    flips = torch.zeros(len(plain), dtype=torch.bool, device=device)
    for _ in range(rounds):
        chosen = flipped @ template > plain @ template
        template = torch.where(chosen[:, None], flipped, plain).mean(0)
        if torch.equal(chosen, flips):
            break
        flips = chosen
    return flips


def aligned_mean_maps(source: FeatureSource, mirrored: FeatureSource, specs: Sequence[LayerSpec],
                      flips: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Per layer, the mean map (C, H, W) of the images in the orientation ``flips`` chooses (to seed mu)."""
    total = {s.name: torch.zeros(s.channels, s.height, s.width, dtype=torch.float64, device=device) for s in specs}
    for offset, batch, mirror in iterate_pairs(source, mirrored, specs):
        chosen = flips[offset : offset + len(batch[specs[0].name]), None, None, None]
        for spec in specs:
            maps = torch.where(chosen, mirror[spec.name].to(device), batch[spec.name].to(device))
            total[spec.name] += maps.sum(0, dtype=torch.float64)
    return {name: value / len(flips) for name, value in total.items()}


def init_means(mean_maps: Mapping[str, torch.Tensor], norm: Mapping[str, torch.Tensor], specs: Sequence[LayerSpec],
               params: MinerParams, input_size: int) -> dict[str, torch.Tensor]:
    """Random mu^(0) (Algorithm 1, seeded): per filter, N units drawn k-means++-style from where the mean map exceeds
    the channel's mean (each draw proportional to that excess x squared distance to the units already drawn).
    (C, N, 2) float64."""
    generator = torch.Generator().manual_seed(params.seed)
    out = {}
    for spec in specs:
        rows, cols = spec.axes(input_size, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        excess = mean_maps[spec.name].reshape(spec.channels, -1) - norm[spec.name][0][:, None]
        weights = excess.clamp_min(0).cpu()
        out[spec.name] = _seed(weights, grid, params.nodes_for(spec.name, spec.height, spec.width), generator)
    return out


def _seed(weights: torch.Tensor, grid: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding of n points per row of ``weights`` (C, P) over ``grid`` (P, 2). A row whose active units
    are all taken continues by distance alone, then uniformly (more nodes than units)."""
    prob, distance, chosen = weights, None, []
    for _ in range(n):
        if distance is not None:
            prob = weights * distance
            prob = torch.where(prob.sum(1, keepdim=True) > 0, prob, distance)
        prob = torch.where(prob.sum(1, keepdim=True) > 0, prob, torch.ones_like(prob))
        pick = grid[torch.multinomial(prob, 1, generator=generator).squeeze(1)]  # (C, 2)
        chosen.append(pick)
        gap = (grid[None] - pick[:, None]).pow(2).sum(-1)
        distance = gap if distance is None else torch.minimum(distance, gap)
    return torch.stack(chosen, 1)


def _layer_pass(ctx: _Context, mu: torch.Tensor, sigma: torch.Tensor, parents: torch.Tensor,
                upper: LayerFit | None, with_inference: bool, choose_flips: bool = False,
                ) -> tuple[model.EStats, torch.Tensor, torch.Tensor]:
    """One streamed pass: E-step statistics under (mu, sigma, parents) and, ``with_inference``, the inferred p_V,
    S_V of every image (else the returned positions and scores are empty). With mirror images, each image is
    taken in the orientation ``ctx.flips`` holds, chosen anew first when ``choose_flips`` (:func:`_aligned`)."""
    spec, dtype, device = ctx.spec, ctx.dtype, ctx.device
    rows, cols = spec.axes(ctx.input_size, device, dtype)
    k = mu.shape[0] * mu.shape[1]
    positions = torch.zeros(ctx.n_images if with_inference else 0, k, 2, dtype=dtype, device=device)
    scores = torch.zeros(ctx.n_images if with_inference else 0, k, dtype=dtype, device=device)
    stats = model.EStats(torch.zeros_like(sigma), torch.zeros_like(mu), torch.zeros_like(sigma),
                         torch.zeros((), dtype=torch.float64, device=device))
    seen = 0
    for offset, batch, mirror in iterate_pairs(ctx.source, ctx.mirrored, [spec]):
        size = len(batch[spec.name])
        seen = offset + size
        if seen > ctx.n_images:
            raise ValueError(f"the feature source yielded more than the {ctx.n_images} images of its first pass; "
                             "it must yield the same images in the same order on every pass")
        f = model.entities(batch[spec.name].to(device, dtype), ctx.norm, ctx.params.beta)
        above = None if upper is None else (upper.positions[offset : offset + size],
                                            upper.mu.reshape(-1, 2).to(dtype), upper.sigma.flatten().to(dtype))
        centres = model.node_centres(mu.to(dtype), size, above, parents)
        log_rows, log_cols = model.log_factors(rows, cols, centres, sigma.to(dtype))
        if mirror is not None:
            f = _aligned(ctx, f, mirror[spec.name], log_rows, log_cols, slice(offset, seen), choose_flips)
        stats += model.e_step(f, log_rows, log_cols, rows, cols, centres, ctx.params.tau)
        if with_inference:
            p, s, _ = model.infer_units(f, log_rows, log_cols, rows, cols)
            positions[offset : offset + size] = p.reshape(size, k, 2)
            scores[offset : offset + size] = s.reshape(size, k)
    if seen != ctx.n_images:
        raise ValueError(f"the feature source yielded {seen} images in this pass but {ctx.n_images} in the first; "
                         "it must yield the same images in the same order on every pass")
    return stats, positions, scores


def _aligned(ctx: _Context, f: torch.Tensor, mirror: torch.Tensor, log_rows: torch.Tensor, log_cols: torch.Tensor,
             index: slice, choose: bool) -> torch.Tensor:
    """Flip alignment (the authors' code's flip configuration; the papers are silent): each image's entities as is
    or those of its mirror image. While the top layer is fitted (from its second pass on, ``choose``), the
    orientation whose term of Eq. (1) is higher is chosen anew on every pass (a hard E-step over the orientation)
    and recorded; lower layers follow it."""
    mirrored = model.entities(mirror.to(f.device, f.dtype), ctx.norm, ctx.params.beta)
    if choose:
        ctx.flips[index] = (model.image_objective(mirrored, log_rows, log_cols, ctx.params.tau)
                            > model.image_objective(f, log_rows, log_cols, ctx.params.tau))
    return torch.where(ctx.flips[index, None, None, None], mirrored, f)


def _select_parents(ctx: _Context, fit_positions: torch.Tensor, fit_scores: torch.Tensor, mu: torch.Tensor,
                    upper: LayerFit, chunk: int) -> torch.Tensor:
    """E_V: the M best non-degenerate parents by co-activation and spatial stability (:func:`model.edge_scores`)."""
    up_rows, up_cols = upper.spec.axes(ctx.input_size, ctx.device, ctx.dtype)
    spacing = upper.spec.spacing(ctx.input_size)
    up_mu = upper.mu.reshape(-1, 2)
    allowed = model.movable(upper.positions, up_mu.to(ctx.dtype), up_rows, up_cols, spacing,
                            ctx.params.min_motion_units * spacing)
    score = model.edge_scores(fit_positions, fit_scores, mu.reshape(-1, 2), upper.positions, upper.scores, up_mu,
                              ctx.params.edge_scale_units * spacing, chunk)
    chosen = model.choose_parents(score, allowed, ctx.params.n_parents)
    return chosen.reshape(*mu.shape[:2], chosen.shape[-1])


def _fit_layer(ctx: _Context, mu: torch.Tensor, upper: LayerFit | None, fixed_parents: torch.Tensor | None,
               chunk: int) -> LayerFit:
    """Algorithm 1 for one layer: T iterations of (E-step, M-step, edge selection), then a final inference pass.

    Edges are re-selected after every iteration but the last, so the returned mu, sigma are the EM fit for the
    returned edges; with ``fixed_parents`` the edges never change and no EM step lowers Eq. (1)."""
    spec, params = ctx.spec, ctx.params
    low, start, high = params.sigma_bounds(spec.spacing(ctx.input_size))
    sigma = torch.full(mu.shape[:2], start, dtype=torch.float64, device=ctx.device)
    parents = (fixed_parents.to(ctx.device) if fixed_parents is not None
               else torch.full((*mu.shape[:2], 0), -1, dtype=torch.long, device=ctx.device))
    history, seconds = [], {"em": 0.0, "edges": 0.0}
    top = upper is None and ctx.mirrored is not None  # the top layer chooses the orientations
    for iteration in progress(range(params.iterations), desc=f"EM {spec.name}"):
        select = upper is not None and fixed_parents is None and iteration < params.iterations - 1
        tic = time.perf_counter()
        stats, positions, scores = _layer_pass(ctx, mu, sigma, parents, upper, select, top and iteration > 0)
        history.append(float(stats.objective))  # float() waits for the device, so the clock is honest
        new_mu, sigma = model.m_step(mu, sigma, stats, (low, high))
        toc = time.perf_counter()
        seconds["em"] += toc - tic
        if select:
            parents = _select_parents(ctx, positions, scores, mu, upper, chunk)
            _synchronise(ctx.device)
            seconds["edges"] += time.perf_counter() - toc
        mu = new_mu
    tic = time.perf_counter()
    stats, positions, scores = _layer_pass(ctx, mu, sigma, parents, upper, True, top)
    history.append(float(stats.objective))
    seconds["em"] += time.perf_counter() - tic
    return LayerFit(spec, mu, sigma, parents, positions, scores, history, seconds)


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run torch's CPU work on at most ``threads`` intra-op threads inside the block (unchanged for None or a
    GPU). The miner's per-batch tensors are small: on a 2-core machine shared with other jobs, two threads made
    teach-sized mining 5.6x slower in wall time than one (74 s vs 13 s, 4 iterations), spinning in barriers."""
    before = torch.get_num_threads()
    if threads is None or device.type != "cpu" or threads >= before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def score_statistics(scores: torch.Tensor, shape: tuple[int, int], top_k: int) -> dict[str, torch.Tensor]:
    """Per node: mean score over images, mean of its top-k image scores, total score ("inference energy")."""
    top = scores.topk(min(top_k, scores.shape[0]), dim=0).values
    values = (scores.mean(0, dtype=torch.float64), top.mean(0, dtype=torch.float64), scores.sum(0, dtype=torch.float64))
    return {name: value.reshape(shape).cpu() for name, value in zip(STAT_NAMES, values, strict=True)}


def mine_graph(features: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch], specs: Sequence[LayerSpec],
               params: MinerParams | None = None, *, input_size: int, batch_size: int = 64,
               device: str | torch.device = "auto", dtype: torch.dtype = torch.float32,
               init: Mapping[str, torch.Tensor] | None = None, edges: Mapping[str, torch.Tensor] | None = None,
               meta: Mapping[str, Any] | None = None,
               mirrored: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch] | None = None,
               init_flips: torch.Tensor | None = None, threads: int | None = 1) -> ExplanatoryGraph:
    """Mine an explanatory graph layer by layer from the top (Algorithm 1; Eq. 1-4).

    ``features``: whole tensors ``{layer: (n, C, H, W)}`` (sliced into ``batch_size`` batches), or a source yielding
    such batches afresh on every call (:func:`~.source.as_source`); ``specs`` bottom to top; positions are
    normalised by ``input_size``. ``init`` overrides the seeded mu^(0) per layer (C, N, 2); ``edges`` fixes the
    parents (C, N, M) of lower layers (no edge selection). ``meta`` (net, category, ...) is stored in the graph.
    ``mirrored``: the same, for the horizontal mirror images; needed with ``params.flip`` (flip alignment), when
    each image is explained as is or mirrored, as its top layer fits better (``meta["flips"]`` records which);
    the first E-step takes the orientations of :func:`initial_flips` or ``init_flips`` (n,) bool, and mu^(0) is
    seeded from the mean maps in those orientations. On the CPU, torch uses at most ``threads`` threads
    (:func:`cpu_threads`; None: torch's setting)."""
    with cpu_threads(get_device(device), threads):
        return _mine(features, specs, params or MinerParams(), input_size, batch_size, get_device(device), dtype,
                     init, edges, meta, mirrored, init_flips)


def _mine(features: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch], specs: Sequence[LayerSpec],
          params: MinerParams, input_size: int, batch_size: int, device: torch.device, dtype: torch.dtype,
          init: Mapping[str, torch.Tensor] | None, edges: Mapping[str, torch.Tensor] | None,
          meta: Mapping[str, Any] | None,
          mirrored: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch] | None,
          init_flips: torch.Tensor | None) -> ExplanatoryGraph:
    """:func:`mine_graph` after its arguments are resolved."""
    tic = time.perf_counter()
    specs = list(specs)
    if params.flip != (mirrored is not None):
        raise ValueError("flip alignment (MinerParams.flip=True) needs mirrored= features of the mirror images, "
                         "and mirrored= is only used with flip=True")
    source = as_source(features, batch_size)
    mirror_source = None if mirrored is None else as_source(mirrored, batch_size)
    norm, mean_maps, n_images = channel_statistics(source, specs, device)
    flips = None
    if mirror_source is not None:
        top = specs[-1]
        flips = (initial_flips(source, mirror_source, top, norm[top.name], params.beta, device) if init_flips is None
                 else _checked(init_flips, (n_images,), "init_flips").to(device, torch.bool).clone())
        mean_maps = aligned_mean_maps(source, mirror_source, specs, flips, device)
    start = {**init_means(mean_maps, norm, specs, params, input_size), **(init or {})}
    upper: LayerFit | None = None
    fits: dict[str, LayerFit] = {}
    for spec in reversed(specs):
        mu0 = _checked(start[spec.name], (spec.channels, None, 2), f"init[{spec.name!r}]").to(device, torch.float64)
        ctx = _Context(source, spec, norm[spec.name], n_images, input_size, params, device, dtype, mirror_source,
                       flips)
        fixed = (edges or {}).get(spec.name) if upper is not None else None
        if fixed is not None:
            fixed = _checked(fixed, (*mu0.shape[:2], None), f"edges[{spec.name!r}]")
            if fixed.numel() and int(fixed.max()) >= upper.positions.shape[1]:
                raise ValueError(f"edges[{spec.name!r}] points past the {upper.positions.shape[1]} nodes above it")
        upper = fits[spec.name] = _fit_layer(ctx, mu0, upper, fixed, batch_size)
    _synchronise(device)
    info = {**(meta or {}), **({"flips": flips.tolist()} if flips is not None else {}),
            "mining_s": time.perf_counter() - tic}
    return _to_graph(fits, specs, norm, params, input_size, n_images, info)


def _checked(value: torch.Tensor, shape: tuple[int | None, ...], what: str) -> torch.Tensor:
    """``value`` as a tensor if its shape matches ``shape`` (None: any size), else a ValueError naming it."""
    value = torch.as_tensor(value)
    if value.dim() != len(shape) or any(want not in (None, got) for want, got in zip(shape, value.shape, strict=True)):
        expected = ", ".join("any" if want is None else str(want) for want in shape)
        raise ValueError(f"{what} has shape {tuple(value.shape)}, expected ({expected})")
    return value


def _to_graph(fits: Mapping[str, LayerFit], specs: Sequence[LayerSpec], norm: Mapping[str, torch.Tensor],
              params: MinerParams, input_size: int, n_images: int, meta: Mapping[str, Any]) -> ExplanatoryGraph:
    names = [spec.name for spec in specs]
    info = {**meta, "layers": names, "n_images": n_images, "params": params.to_dict(),
            "nodes_per_filter": {name: int(fits[name].mu.shape[1]) for name in names},
            "history": {name: fits[name].history for name in names},
            "timings_s": {name: fits[name].seconds for name in names}}
    return ExplanatoryGraph(
        tuple(specs), input_size,
        mu={name: fits[name].mu.cpu() for name in names},
        sigma={name: fits[name].sigma.cpu() for name in names},
        parents={name: fits[name].parents.cpu() for name in names},
        norm={name: norm[name].cpu() for name in names},
        stats={name: score_statistics(fits[name].scores, fits[name].sigma.shape, params.top_k) for name in names},
        meta=info)
