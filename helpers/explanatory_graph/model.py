"""Vectorised model of one graph layer given the layer above (Eq. 2-4 of the explanatory graph paper).

Shapes: b images, C channels (filters), N nodes per filter, H x W units; K = C * N nodes of a layer (flat).
The 2-D isotropic Gaussian of a node factorises over rows and columns, so the mixture over nodes at every unit,
and the responsibility-weighted sums of the EM, are batched matrix products of (H x N) and (W x N) factors:
no (b, C, N, H, W) tensor is built in the E-step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
ELEMENT_BUDGET = 1 << 22  # largest chunk (in elements) of the per-unit inference and edge-score tensors


def entities(maps: torch.Tensor, norm: torch.Tensor, beta: float) -> torch.Tensor:
    """Activation entities F(x) = beta * max(f_x, 0) (Eq. 2) with f_x = (response - offset_d) / scale_d, the
    response standardised per channel. ``maps`` (b, C, H, W); ``norm`` (2, C) = (offset, scale); a channel with
    scale 0 (constant over the mining images) gives F = 0."""
    offset, scale = norm.to(maps.dtype)
    inverse = torch.where(scale > 0, 1.0 / scale.clamp_min(torch.finfo(scale.dtype).tiny), 0.0)
    return beta * ((maps - offset[:, None, None]) * inverse[:, None, None]).clamp_min(0)


def deltas(upper_positions: torch.Tensor, upper_mu: torch.Tensor, upper_sigma: torch.Tensor,
           parents: torch.Tensor) -> torch.Tensor:
    """Delta_{I,V} (footnote to Eq. 4): the 1/sigma'^2-weighted mean of p_V' - mu_V' over the parents V' of V.

    ``upper_positions`` (b, K', 2) inferred p_V'; ``upper_mu`` (K', 2); ``upper_sigma`` (K',); ``parents`` (C, N, M)
    flat indices into the upper layer, -1 for none. Returns (b, C, N, 2); nodes without parents get Delta = 0."""
    valid = parents >= 0
    index = parents.clamp_min(0)
    weight = torch.where(valid, upper_sigma[index].pow(-2), 0.0)  # (C, N, M)
    shift = upper_positions[:, index] - upper_mu[index]  # (b, C, N, M, 2)
    total = weight.sum(-1).clamp_min(torch.finfo(weight.dtype).tiny)
    return (shift * weight[..., None]).sum(-2) / total[..., None]


def node_centres(mu: torch.Tensor, size: int, upper: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
                 parents: torch.Tensor) -> torch.Tensor:
    """mu_V + Delta_{I,V} (b, C, N, 2) for a batch of ``size`` images; ``upper`` = (p_V' (b, K', 2), mu_V' (K', 2),
    sigma_V' (K',)) of the layer above, None for the top layer (E_V = {V_dummy}, Delta = 0)."""
    centres = mu.expand(size, *mu.shape)
    if upper is None or not parents.shape[-1]:
        return centres
    return centres + deltas(*upper, parents)


def log_factors(rows: torch.Tensor, cols: torch.Tensor, centres: torch.Tensor,
                sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column factors of log N(p_x | mu_V + Delta_{I,V}, sigma_V^2 I) (Eq. 4 with the footnote).

    ``centres`` (b, C, N, 2) = mu_V + Delta_{I,V}; ``sigma`` (C, N). Returns (b, C, N, H) and (b, C, N, W) whose
    outer sum is the log density of every unit."""
    inv = 0.5 / sigma.pow(2)
    norm = LOG_SQRT_2PI + sigma.log()
    log_rows = -(rows - centres[..., 0:1]).pow(2) * inv[..., None] - norm[..., None]
    log_cols = -(cols - centres[..., 1:2]).pow(2) * inv[..., None] - norm[..., None]
    return log_rows, log_cols


@dataclass
class EStats:
    """Sufficient statistics of one E-step pass (float64), centred on each image's mu_V + Delta_{I,V}:
    ``weight`` = sum F r, ``first`` = sum F r (p_x - mu_V - Delta), ``second`` = sum F r |p_x - mu_V - Delta|^2,
    ``objective`` = the log-likelihood of Eq. (1)-(2), sum_I sum_x F(x) log P(p_x | R_{L+1}, theta_L)."""

    weight: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    objective: torch.Tensor

    def __iadd__(self, other: EStats) -> EStats:
        self.weight += other.weight
        self.first += other.first
        self.second += other.second
        self.objective += other.objective
        return self


def e_step(entities_: torch.Tensor, log_rows: torch.Tensor, log_cols: torch.Tensor, rows: torch.Tensor,
           cols: torch.Tensor, centres: torch.Tensor, tau: float) -> EStats:
    """E-step of Algorithm 1 on a batch: responsibilities P(V | p_x) over the filter's nodes and V_none (P(V) =
    1/(N+1), P(p_x | V_none) = tau), weighted by F(x), reduced to the statistics the M-step needs."""
    b, c, h, w = entities_.shape
    n = log_rows.shape[2]
    rows_f = log_rows.exp().reshape(b * c, n, h).mT  # (bC, H, N)
    cols_f = log_cols.exp().reshape(b * c, n, w).mT  # (bC, W, N)
    mixture = torch.bmm(rows_f, cols_f.mT).add_(tau)  # sum_V P(p_x | V) + tau, (bC, H, W)
    f = entities_.reshape(b * c, h, w)
    objective = _log_likelihood(f, mixture, n).sum(dtype=torch.float64)
    ratio = f / mixture
    per_row = rows_f * torch.bmm(ratio, cols_f)  # sum over columns of F r, (bC, H, N)
    per_col = cols_f * torch.bmm(ratio.mT, rows_f)  # sum over rows of F r, (bC, W, N)
    dy = rows[None, :, None] - centres[..., 0].reshape(b * c, 1, n)
    dx = cols[None, :, None] - centres[..., 1].reshape(b * c, 1, n)
    weight = per_row.sum(1)
    first = torch.stack([(per_row * dy).sum(1), (per_col * dx).sum(1)], dim=-1)
    second = (per_row * dy.pow(2)).sum(1) + (per_col * dx.pow(2)).sum(1)
    fold = lambda t: t.reshape(b, c, n, *t.shape[2:]).sum(0, dtype=torch.float64)
    return EStats(fold(weight), fold(first), fold(second), objective)


def _log_likelihood(f: torch.Tensor, mixture: torch.Tensor, n: int) -> torch.Tensor:
    """sum_x F(x) log P(p_x) per map: ``f`` and ``mixture`` (bC, H, W) -> (bC,) float64 (Eq. 2)."""
    return (f * (mixture.log() - math.log(n + 1))).sum((1, 2), dtype=torch.float64)


def image_objective(entities_: torch.Tensor, log_rows: torch.Tensor, log_cols: torch.Tensor,
                    tau: float) -> torch.Tensor:
    """Each image's term of Eq. (1), sum_x F(x) log P(p_x | R_{L+1}, theta_L) over all channels: (b,) float64.
    The miner and inference compare it between an image and its mirror image to choose the orientation."""
    b, c, h, w = entities_.shape
    n = log_rows.shape[2]
    mixture = torch.bmm(log_rows.exp().reshape(b * c, n, h).mT, log_cols.exp().reshape(b * c, n, w)).add_(tau)
    return _log_likelihood(entities_.reshape(b * c, h, w), mixture, n).reshape(b, c).sum(1)


def m_step(mu: torch.Tensor, sigma: torch.Tensor, stats: EStats,
           bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form M-step (the optimum of Algorithm 1's gradient step): mu_V = weighted mean of p_x - Delta_{I,V};
    sigma_V^2 = weighted variance per axis, clamped to ``bounds``. Nodes with zero weight keep their values."""
    alive = stats.weight > 0
    weight = stats.weight.clamp_min(torch.finfo(stats.weight.dtype).tiny)
    shift = stats.first / weight[..., None]
    variance = (stats.second / weight - shift.pow(2).sum(-1)).clamp_min(0) / 2
    new_mu = torch.where(alive[..., None], mu + shift.to(mu.dtype), mu)
    new_sigma = torch.where(alive, variance.sqrt().clamp(*bounds).to(sigma.dtype), sigma)
    return new_mu, new_sigma


def infer_units(entities_: torch.Tensor, log_rows: torch.Tensor, log_cols: torch.Tensor, rows: torch.Tensor,
                cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inference: x_hat = argmax over units of channel d of S_{V->x} = F(x) P(p_x | V, R_{L+1}) (first maximum
    on ties). Returns p_V = p_x_hat (b, C, N, 2), S_V = S_{V->x_hat} (b, C, N) and x_hat as h * W + w (b, C, N)."""
    b, c, h, w = entities_.shape
    n = log_rows.shape[2]
    log_f = entities_.log()
    step = max(1, ELEMENT_BUDGET // max(1, b * n * h * w))
    best, where = [], []
    for start in range(0, c, step):
        part = slice(start, start + step)
        log_score = log_f[:, part, None] + log_rows[:, part, :, :, None] + log_cols[:, part, :, None, :]
        value, index = log_score.flatten(-2).max(-1)
        best.append(value)
        where.append(index)
    index = torch.cat(where, 1)
    positions = torch.stack([rows[index // w], cols[index % w]], dim=-1)
    return positions, torch.cat(best, 1).exp(), index


def movable(positions: torch.Tensor, mu: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, spacing: float,
            min_motion: float) -> torch.Tensor:
    """(K,) True for nodes that may serve as parents: their inferred positions (n, K, 2) move across images (RMS
    spread >= ``min_motion``) and their prior ``mu`` (K, 2) lies on the map (within half a unit of its border)."""
    spread = (positions - positions.mean(0)).pow(2).sum(-1).mean(0)
    half = spacing / 2
    inside = ((mu[:, 0] >= rows[0] - half) & (mu[:, 0] <= rows[-1] + half)
              & (mu[:, 1] >= cols[0] - half) & (mu[:, 1] <= cols[-1] + half))
    return (spread >= min_motion**2) & inside


def edge_scores(positions: torch.Tensor, scores: torch.Tensor, mu: torch.Tensor, upper_positions: torch.Tensor,
                upper_scores: torch.Tensor, upper_mu: torch.Tensor, scale: float, chunk: int) -> torch.Tensor:
    """(K, K') co-activation x spatial-stability score of every candidate edge V' -> V (Algorithm 1, step 2):
    sum_I w_V^I c_V'^I exp(-|(p_V^I - mu_V) - (p_V'^I - mu_V')|^2 / 2 s^2), with w_V^I = S_V^I / sum_J S_V^J the
    share of V's score in image I and c_V'^I = min(1, S_V'^I / mean_J S_V'^J) how active V' is in I.

    The log of each term is a dot product of 4-vectors, [a / s^2, log w - |a|^2 / 2s^2, 1] . [b, 1, log c -
    |b|^2 / 2s^2] with a = p_V - mu_V, b = p_V' - mu_V', so a chunk of images costs one batched matmul and one exp."""
    total = scores.sum(0)
    share = torch.where(total > 0, scores / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)
    mean = upper_scores.mean(0)
    active = torch.where(mean > 0, upper_scores / mean.clamp_min(torch.finfo(mean.dtype).tiny), 0.0).clamp_max(1)
    inv = 1.0 / scale**2
    own, other = positions - mu.to(positions.dtype), upper_positions - upper_mu.to(positions.dtype)
    left = torch.cat([own * inv, (_log0(share) - 0.5 * inv * own.pow(2).sum(-1))[..., None],
                      torch.ones_like(share)[..., None]], -1)
    right = torch.cat([other, torch.ones_like(active)[..., None],
                       (_log0(active) - 0.5 * inv * other.pow(2).sum(-1))[..., None]], -1)
    k, k_up = own.shape[1], other.shape[1]
    step = max(1, min(chunk, ELEMENT_BUDGET // max(1, k * k_up)))
    out = torch.zeros(k, k_up, dtype=torch.float64, device=positions.device)
    for start in range(0, own.shape[0], step):
        part = slice(start, start + step)
        out += torch.bmm(left[part], right[part].mT).exp_().sum(0)
    return out


def _log0(values: torch.Tensor) -> torch.Tensor:
    """log of non-negative weights, with a large negative finite value for 0 (its exp underflows to 0)."""
    return torch.where(values > 0, values.clamp_min(torch.finfo(values.dtype).tiny).log(), -1e4)


def choose_parents(score: torch.Tensor, allowed: torch.Tensor, n_parents: int) -> torch.Tensor:
    """The top-``n_parents`` allowed candidates with a positive score per node (ties: lower index first);
    -1 fills the slots left empty. ``score`` (K, K'), ``allowed`` (K',). Returns (K, min(M, K'))."""
    score = torch.where(allowed, score, 0.0)
    order = torch.argsort(score, dim=1, descending=True, stable=True)[:, :n_parents]
    return torch.where(score.gather(1, order) > 0, order, -1)
