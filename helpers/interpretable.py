"""Interpretable CNN (Zhang, Wu & Zhu, CVPR 2018): part templates, the mask layer, the filter loss and the
interpretable conv layers of Sec. 5.

Notation: x is the (N, C, h, w) feature map of a layer after its ReLU; filter f is channel c. The paper's maps are
n x n. For non-square maps the L1 distance is normalised per axis, ``||[i,j]-mu||_1 / n -> |i-mu_i|/h + |j-mu_j|/w``,
and ``n^2`` (the number of units, i.e. of positive templates) becomes ``h*w`` in tau, alpha and the priors; for h = w
both are the paper's formulas. Templates are indexed row-major (``mu = i*w + j``); the negative template comes last.

Training (see :func:`make_interpretable` and :func:`filter_loss`)::

    logits = net(images)                                     # masks applied, maps recorded, filter maps tapped
    loss = task_loss(logits, y) + filter_loss(net, positive=~is_negative)   # or labels=... (multi-category)
    loss.backward()                                          # Eq. (3): task gradient + weighted Eq. (4) gradient

The filter loss's *value* is always -MI(X;T) over the batch (Eq. 1-2), summed over filters; its *gradient* is the
normalised Eq. (4) gradient (``method="approx"``, default) or autograd of that value (``method="exact"``), weighted
by ``FilterLossConfig.weighting``:

* ``"grad_ratio"`` (default): at each interpretable layer the filter-loss gradient is scaled to ``grad_ratio`` times
  the mean magnitude of the task gradient arriving there. The paper's lambda is in MatConvNet's gradient units and was
  negligible in this project's prototype; the ratio is what made the loss act without swamping the classification
  (prototype: 0.03-0.3; notebook 02 fine-tunes at 3.0, decayed as 1/epoch, see ``helpers.interpretable_training``).
  With ``decay`` the ratio itself falls as 1/epoch.
* ``"lambda"``: the paper's Eq. (3) weight, lambda_f = 5e-6 * mean_x max_ij x, kept online per filter.
* ``"none"``: weight 1 (for optimising the loss alone).

Notes. The running Z_T (footnote 3) is kept as the mean, not the sum, of exp(tr(x.T)) over maps: the factor cancels
in log p(x|T) - log p(x) and in the per-filter normalisation. The batch-exact gradient centres each template's log
ratio by its batch average (autograd sees Z_T depend on x); Eq. (4) does not. The two agree (cosine ~0.98) on strong
single-peaked positives in a batch that also holds near-zero negatives, not on batches of positives only, nor on
negatives. tau = 0.5 / n^2 fixes the scale: with batch-normalised O(1) activations tr(x.T) is ~0.01, the
likelihoods are nearly flat and the MI is tiny, so the normalised Eq. (4) direction, not the loss value, is what acts.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import check_choice, check_positive
from .models.geometry import feature_size
from .models.nets import Performer

BETA = 4.0  # Sec. 5: beta = 4
METHODS = ("approx", "exact")
WEIGHTINGS = ("grad_ratio", "lambda", "none")
MU_MODES = ("argmax", "centroid")


# ----------------------------------------------------------------------------------------------------------------
# Templates (Sec. 3, Fig. 3)

def template_tau(h: int, w: int) -> float:
    """tau = 0.5 / n^2 (Sec. 5), with n^2 = h*w units."""
    return 0.5 / (h * w)


def log_template_priors(units: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(units + 1,) log p(T): p(T_mu) = alpha / n^2 for every mu, then p(T-) = 1 - alpha; alpha = n^2 / (1 + n^2),
    n^2 = ``units`` = h*w."""
    alpha = units / (1 + units)
    priors = torch.full((units + 1,), alpha / units, device=device)
    priors[-1] = 1 - alpha
    return priors.log()


def _template_values(distance: torch.Tensor, tau: float, beta: float = BETA) -> torch.Tensor:
    """t = tau * max(1 - beta * distance, -1) (Sec. 3) for normalised L1 distances to mu."""
    return tau * (1 - beta * distance).clamp(min=-1)


def unit_grid(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(h*w, 2) long positions [i, j] of all units, row-major (the order of the templates)."""
    i, j = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([i.flatten(), j.flatten()], dim=-1)


def _distances(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(h*w, h, w) normalised L1 distance |i - mu_i| / h + |j - mu_j| / w of every unit [i, j] to every mu."""
    mu = unit_grid(h, w, device).float()
    di = (torch.arange(h, device=device) - mu[:, :1]).abs() / h
    dj = (torch.arange(w, device=device) - mu[:, 1:]).abs() / w
    return di[:, :, None] + dj[:, None, :]


def positive_templates(h: int, w: int, device: torch.device | str | None = None, tau: float | None = None,
                       beta: float = BETA) -> torch.Tensor:
    """(h*w, h, w) positive templates T_mu for every mu, row-major (Sec. 3, Fig. 3); default tau = 0.5 / n^2 and
    beta = 4 (Sec. 5), other values to explore them."""
    check_positive("beta", beta)
    return _template_values(_distances(h, w, device), template_tau(h, w) if tau is None else check_positive("tau", tau),
                            beta)


def negative_template(h: int, w: int, device: torch.device | str | None = None, tau: float | None = None
                      ) -> torch.Tensor:
    """(h, w) negative template T- = -tau everywhere (Sec. 3)."""
    return torch.full((h, w), -(template_tau(h, w) if tau is None else check_positive("tau", tau)), device=device)


def mask_of_template(template: torch.Tensor, tau: float) -> torch.Tensor:
    """The mask layer's max(T_mu / tau, 0) for a positive template built with ``tau`` (Sec. 3)."""
    return (template / check_positive("tau", tau)).clamp(min=0)


def template_kernel(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(2h-1, 2w-1) kernel K with K[a, b] = t_ij of T_mu at offset [i, j] - mu = [a - h + 1, b - w + 1].

    Every T_mu is a window of K, so correlating x with K (padding h-1, w-1) gives tr(x . T_mu) for all mu at once.
    """
    di = torch.arange(1 - h, h, device=device, dtype=torch.float32).abs() / h
    dj = torch.arange(1 - w, w, device=device, dtype=torch.float32).abs() / w
    return _template_values(di[:, None] + dj[None, :], template_tau(h, w))


class _Tables(NamedTuple):
    masks: torch.Tensor  # (h*w, h, w) max(T_mu / tau, 0) for every mu
    templates: torch.Tensor  # (h*w + 1, h, w) every T_mu, then T-
    kernel: torch.Tensor  # (2h-1, 2w-1) template_kernel
    log_prior: torch.Tensor  # (h*w + 1,) log_template_priors


@lru_cache(maxsize=64)
def _tables(h: int, w: int, device: torch.device) -> _Tables:
    """Constant tables for h x w maps, built once per device (outside inference mode, so autograd may use them)."""
    with torch.inference_mode(False), torch.no_grad():
        distances = _distances(h, w, device)
        negative = torch.full((1, h, w), -template_tau(h, w), device=device)
        return _Tables(masks=(1 - BETA * distances).clamp(min=0),
                       templates=torch.cat([_template_values(distances, template_tau(h, w)), negative]),
                       kernel=template_kernel(h, w, device), log_prior=log_template_priors(h * w, device))


def template_scores(x: torch.Tensor) -> torch.Tensor:
    """(N, C, h*w + 1) scores tr(x . T) of every map against every T_mu (one correlation with
    :func:`template_kernel`) and, last, against T- (= -tau * sum_ij x_ij)."""
    n, c, h, w = x.shape
    kernel = _tables(h, w, x.device).kernel.to(x.dtype).expand(c, 1, 2 * h - 1, 2 * w - 1).contiguous()
    # the same kernel for every channel (groups=c); channels-last makes this depthwise correlation fast on CPU
    positive = F.conv2d(x.contiguous(memory_format=torch.channels_last), kernel, padding=(h - 1, w - 1), groups=c)
    negative = -template_tau(h, w) * x.sum(dim=(2, 3))
    return torch.cat([positive.reshape(n, c, h * w), negative[..., None]], dim=-1)


# ----------------------------------------------------------------------------------------------------------------
# Mask layer (Sec. 3)

def select_mu(x: torch.Tensor, mode: str = "argmax") -> torch.Tensor:
    """(N, C, 2) long mu_hat per map: the argmax unit, or the activation-weighted centroid rounded to a unit
    (the official code's variant; all-zero maps fall back to the argmax)."""
    check_choice("mu", mode, MU_MODES)
    n, c, h, w = x.shape
    flat = x.detach().reshape(n, c, h * w)
    index = flat.argmax(dim=-1)
    argmax = torch.stack([index // w, index % w], dim=-1)
    if mode == "argmax":
        return argmax
    weights = flat.float()
    total = weights.sum(dim=-1, keepdim=True)
    centroid = (weights @ unit_grid(h, w, x.device).float() / total.clamp_min(1e-30)).round().long()
    return torch.where(total > 0, centroid, argmax)


def part_mask(mu: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., h, w) mask max(T_mu / tau, 0) = max(1 - beta * ||[i,j] - mu||_1 / n, 0) for mu (..., 2)."""
    return _tables(h, w, mu.device).masks[mu[..., 0] * w + mu[..., 1]]


def apply_mask(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """x_masked = max(x . max(T_mu / tau, 0), 0) (Sec. 3); the mask is a constant (gradient = mask).

    The outer max is the identity for post-ReLU x (x >= 0 and mask >= 0), so it is left out.
    """
    return x * part_mask(mu, *x.shape[-2:]).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Filter loss (Eq. 1-4)

def _negative_mutual_information(scores: torch.Tensor, log_z: torch.Tensor, log_prior: torch.Tensor
                                 ) -> torch.Tensor:
    """(C,) -MI(X;T) (Eq. 1) with X = the batch, given log Z_T = log sum_x exp(tr(x.T)) (C, K) and log p(T) (K,);
    in log-space."""
    log_lik = scores - log_z  # log p(x|T), Eq. (2)
    log_px = (log_lik + log_prior).logsumexp(dim=-1)  # log p(x) = log sum_T p(T) p(x|T)
    terms = log_prior.exp() * log_lik.exp() * (log_lik - log_px[..., None])
    return -terms.sum(dim=(0, 2))


def exact_filter_loss(x: torch.Tensor) -> torch.Tensor:
    """(C,) Loss_f = -MI(X;T) of Eq. (1)-(2) for every filter, X = the batch's maps; differentiable by autograd."""
    scores = template_scores(x.float())
    log_prior = _tables(*x.shape[-2:], x.device).log_prior
    return _negative_mutual_information(scores, scores.logsumexp(dim=0), log_prior)


def _side_normalised(log_abs: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """exp(log_abs) divided, per filter, by its mean over the batch's positives, resp. negatives (mean = 1 each);
    0 where a side has only zeros."""
    out = torch.zeros_like(log_abs)
    for side in (positive, ~positive):
        count = side.sum(dim=0).clamp_min(1)
        log_mean = log_abs.masked_fill(~side, -math.inf).logsumexp(dim=0) - count.log()
        out = torch.where(side & log_mean.isfinite(), (log_abs - log_mean).exp(), out)
    return out


def _side_weights(positive: torch.Tensor) -> torch.Tensor:
    """0.5 / density for positives and 0.5 / (1 - density) for negatives, density = fraction of positives."""
    density = positive.float().mean(dim=0)
    return torch.where(positive, 0.5 / density, 0.5 / (1 - density))


def approx_filter_grad(scores: torch.Tensor, mu: torch.Tensor, positive: torch.Tensor, log_z: torch.Tensor,
                       map_size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) dLoss_f/dx of Eq. (4) with the appendix's sign (Loss = -MI):

    -p(T^) t^_ij exp(tr(x.T^)) / Z_T^ * (tr(x.T^) - log Z_T^ - log p(x)), T^ = T_mu^ for positives, T- otherwise.

    ``scores`` (N, C, K) from :func:`template_scores`; ``log_z`` (C, K) and p(x) (from it) are constants.
    Per filter, the coefficient of each map is normalised to mean |coef| = 1 over the batch's positives and,
    separately, its negatives, then weighted 0.5 / density and 0.5 / (1 - density), so each side carries half of a
    filter's gradient whatever the batch's balance. Computed in log-space: finite for any activation size.
    """
    h, w = map_size
    tables = _tables(h, w, scores.device)
    log_prior = tables.log_prior
    index = torch.where(positive, mu[..., 0] * w + mu[..., 1], h * w)  # T^ (Sec. 3.1); T- is the last template
    log_px = (scores - log_z + log_prior).logsumexp(dim=-1)
    log_lik_hat = scores.gather(-1, index[..., None])[..., 0] - log_z.gather(-1, index.T).T
    ratio = log_lik_hat - log_px
    coef = ratio.sign() * _side_normalised(log_prior[index] + log_lik_hat + ratio.abs().log(), positive)
    return -(_side_weights(positive) * coef)[..., None, None] * tables.templates[index]


@dataclass(frozen=True)
class FilterLossConfig:
    """How the filter loss's gradient is computed and weighted (see the module docstring).

    ``method``: ``approx`` (Eq. 4, running Z_T and p(x); for training) or ``exact`` (autograd of -MI over the batch).
    ``weighting``: ``grad_ratio`` (default), ``lambda`` (Eq. 3, lambda_f = ``lambda_scale`` * mean_x max_ij x) or
    ``none``. ``momentum``: of the running estimates (Z_T, mean max activation). ``decay``: multiply the weight by
    1 / epoch (set with :func:`set_loss_epoch`), as the official code does.
    """

    method: str = "approx"
    weighting: str = "grad_ratio"
    grad_ratio: float = 0.1
    lambda_scale: float = 5e-6
    momentum: float = 0.1
    decay: bool = False

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_positive("grad_ratio", self.grad_ratio)
        check_positive("lambda_scale", self.lambda_scale)
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {self.momentum!r}")


@dataclass
class _TappedBatch:
    """What the backward of a tapped map needs; ``grad`` is filled in by :meth:`FilterLoss.loss`."""

    x: torch.Tensor
    mu: torch.Tensor
    grad: torch.Tensor | None = None
    ratio: float | None = None  # grad_ratio weighting: scale grad to this fraction of the upstream gradient


class _InjectFilterGrad(torch.autograd.Function):
    """Identity on x plus a zero token. Backward (which autograd runs once both the task gradient on x and the loss's
    gradient on the token are in) returns task gradient + d(loss)/d(token) * weighted filter-loss gradient (Eq. 3)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, batch: _TappedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.batch = batch
        return x.view_as(x), x.new_zeros(())

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, grad_token: torch.Tensor) -> tuple[torch.Tensor, None]:
        batch = ctx.batch
        if batch.grad is None:
            return grad_y, None
        scale = grad_token
        if batch.ratio is not None:  # ratio of mean magnitudes = ratio of L1 norms (same number of elements)
            scale = scale * batch.ratio * grad_y.norm(p=1) / batch.grad.norm(p=1).clamp_min(1e-30)
        return torch.addcmul(grad_y, batch.grad.to(grad_y.dtype), scale.to(grad_y.dtype)), None


class FilterLoss(nn.Module):
    """Loss_f = -MI(X;T) (Eq. 1-2) for every filter of one layer, with the running Z_T and lambda statistics.

    Standalone: ``y, loss = FilterLoss(C, (h, w))(x, positive)`` with ``positive`` (N, C) bool (is the image of the
    filter's category); use ``y`` downstream and add ``loss`` to the task loss. In a net the two halves are split:
    :meth:`tap` in the forward pass, :meth:`loss` once the flags are known.
    """

    def __init__(self, channels: int, map_size: tuple[int, int], config: FilterLossConfig | None = None):
        super().__init__()
        self.channels, self.map_size = channels, tuple(map_size)
        self.config = config or FilterLossConfig()
        self.epoch = 1
        units = self.map_size[0] * self.map_size[1]
        self.register_buffer("log_z", torch.zeros(channels, units + 1))  # log running mean_x exp(tr(x.T))
        self.register_buffer("mean_peak", torch.zeros(channels))  # running mean_x max_ij x (Eq. 3)
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))
        self._batch: _TappedBatch | None = None
        self._token: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, positive: torch.Tensor, mu: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x passed on, loss); ``mu`` defaults to the argmax units."""
        y = self.tap(x, select_mu(x) if mu is None else mu)
        return y, self.loss(positive)

    def tap(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Remember the batch's maps and mu_hat; returns x, through which the filter-loss gradient will flow."""
        if x.shape[1:] != (self.channels, *self.map_size):
            raise ValueError(f"expected maps (N, {self.channels}, {self.map_size[0]}, {self.map_size[1]}), "
                             f"got {tuple(x.shape)}; the filter loss keeps per-template statistics for one map size")
        self._batch = _TappedBatch(x.detach(), mu)
        y, self._token = _InjectFilterGrad.apply(x, self._batch)
        return y

    def loss(self, positive: torch.Tensor) -> torch.Tensor:
        """Scalar -MI summed over filters for the tapped batch; its gradient is the configured one (see module doc).

        Updates the running statistics (footnote 3) with this batch.
        """
        if self._batch is None:
            raise RuntimeError("no tapped batch: run a training-mode forward pass (or tap(x, mu)) first")
        batch = self._batch
        if positive.shape != batch.x.shape[:2] or positive.dtype != torch.bool:
            raise ValueError(f"positive must be a bool tensor of shape {tuple(batch.x.shape[:2])} (images, filters)")
        with torch.autocast(batch.x.device.type, enabled=False):  # scores and log-space sums in float32
            value, grad = self._value_and_grad(batch, positive.to(batch.x.device))
        batch.grad, batch.ratio = self._weighted(grad)
        return value + self._token

    def forget(self) -> None:
        """Drop the tapped batch and its token (which keeps the forward pass's autograd graph alive)."""
        self._batch = self._token = None

    def _value_and_grad(self, batch: _TappedBatch, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.x.float()
        scores = template_scores(x)
        batch_log_z = scores.logsumexp(dim=0)
        self._update_statistics(x, batch_log_z)
        if self.config.method == "exact":
            return _exact_value_and_grad(x)
        value = _negative_mutual_information(scores, batch_log_z, _tables(*self.map_size, x.device).log_prior).sum()
        return value, approx_filter_grad(scores, batch.mu, positive, self.log_z, self.map_size)

    @torch.no_grad()
    def _update_statistics(self, x: torch.Tensor, batch_log_z: torch.Tensor) -> None:
        """Running log Z_T (as log of the mean of exp(tr(x.T)) over maps, from the batch's log sum) and
        mean_x max_ij x; the first batch sets them."""
        rate = self.config.momentum if self.num_batches > 0 else 1.0
        keep = math.log1p(-rate) if rate < 1 else -math.inf
        self.log_z.copy_(torch.logaddexp(self.log_z + keep, batch_log_z + math.log(rate / x.shape[0])))
        self.mean_peak.lerp_(x.amax(dim=(2, 3)).mean(dim=0), rate)
        self.num_batches += 1

    def _weighted(self, grad: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """(gradient, ratio): the 1/epoch decay goes into the ratio under ``grad_ratio`` weighting (the backward
        rescales the gradient to ratio x the task gradient, which would undo a decay applied to it)."""
        config = self.config
        decay = self.epoch if config.decay else 1
        if config.weighting == "grad_ratio":
            return grad, config.grad_ratio / decay
        if config.weighting == "lambda":
            grad = grad * (config.lambda_scale * self.mean_peak)[:, None, None]
        return grad / decay, None

    def extra_repr(self) -> str:
        return f"channels={self.channels}, map_size={self.map_size}, config={self.config}"


def _exact_value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        leaf = x.detach().requires_grad_()
        value = exact_filter_loss(leaf).sum()
        (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


# ----------------------------------------------------------------------------------------------------------------
# Filter categories (Sec. 3.1) and interpretable layers (Sec. 5)

class FilterCategories(nn.Module):
    """Each filter's category (Sec. 3.1): argmax_c of the running mean, over images of class c, of sum_ij x_ij."""

    def __init__(self, channels: int, num_categories: int, momentum: float = 0.1):
        super().__init__()
        self.num_categories, self.momentum = num_categories, momentum
        self.register_buffer("mean_response", torch.zeros(num_categories, channels))
        self.register_buffer("seen", torch.zeros(num_categories, dtype=torch.bool))

    @torch.no_grad()
    def update(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold in a batch of maps (N, C, h, w) with class labels (N,); a class's first batch sets its mean."""
        one_hot = F.one_hot(labels.to(x.device), self.num_categories).float()
        counts = one_hot.sum(dim=0)
        batch_mean = one_hot.T @ x.float().sum(dim=(2, 3)) / counts.clamp_min(1)[:, None]
        rate = torch.where(self.seen, self.momentum, 1.0)[:, None]
        updated = self.mean_response.lerp(batch_mean, rate)
        present = counts > 0
        self.mean_response.copy_(torch.where(present[:, None], updated, self.mean_response))
        self.seen |= present

    @property
    def assignment(self) -> torch.Tensor:
        """(C,) long category of every filter (classes not seen yet are never chosen)."""
        return self.mean_response.masked_fill(~self.seen[:, None], -math.inf).argmax(dim=0)

    def positive(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) bool: is image n of filter c's category."""
        return labels.to(self.seen.device)[:, None] == self.assignment[None, :]


class InterpretableMask(nn.Module):
    """Sits after the ReLU of an interpretable conv layer (Fig. 2): records the map and mu_hat, applies the part
    mask (Sec. 3) and, in training mode, taps the map for the filter loss.

    After a forward pass: ``feature_map`` (N, C, h, w) post-ReLU, pre-mask; ``mu`` (N, C, 2); ``mask``.
    """

    def __init__(self, conv: str, channels: int, map_size: tuple[int, int], masks: bool = True, loss: bool = True,
                 mu: str = "argmax", num_categories: int | None = None, config: FilterLossConfig | None = None):
        super().__init__()
        self.conv, self.use_masks, self.use_loss = conv, masks, loss
        self.mu_mode = check_choice("mu", mu, MU_MODES)
        self.filter_loss = FilterLoss(channels, map_size, config)
        momentum = self.filter_loss.config.momentum
        self.categories = FilterCategories(channels, num_categories, momentum) if num_categories else None
        self.feature_map: torch.Tensor | None = None
        self._mu: torch.Tensor | None = None
        self._tapped = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.feature_map = x.detach()
        self._tapped = self.use_loss and self.training and torch.is_grad_enabled()
        # mu only where the mask or the loss uses it (the ordinary net's layer passes x on untouched)
        self._mu = select_mu(x, self.mu_mode) if self.use_masks or self._tapped else None
        if self._tapped:
            x = self.filter_loss.tap(x, self._mu)
        else:
            self.filter_loss.forget()
        return apply_mask(x, self._mu) if self.use_masks else x

    @property
    def mu(self) -> torch.Tensor:
        """(N, C, 2) part position mu_hat of every map of the last forward pass."""
        if self.feature_map is None:
            raise RuntimeError(f"layer {self.conv!r} has not run a forward pass yet")
        if self._mu is None:
            self._mu = select_mu(self.feature_map, self.mu_mode)
        return self._mu

    @property
    def mask(self) -> torch.Tensor:
        """(N, C, h, w) mask max(T_mu_hat / tau, 0) of the last forward pass (Fig. 4)."""
        return part_mask(self.mu, *self.feature_map.shape[-2:])

    def positive_flags(self, positive: torch.Tensor | None = None, labels: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """(N, C) flags from ``positive`` (N,) or (N, C) bool (single-category: every filter's category is the
        positive class) or from class ``labels`` (N,) (multi-category: updates and uses :class:`FilterCategories`)."""
        if (positive is None) == (labels is None):
            raise ValueError("give exactly one of positive= (single-category) or labels= (multi-category)")
        n, c = self.feature_map.shape[:2]
        if labels is not None:
            if self.categories is None:
                raise ValueError(f"layer {self.conv!r} has no filter categories; build it with num_categories > 1")
            if self.training:
                self.categories.update(self.feature_map, labels)
            return self.categories.positive(labels)
        positive = positive.to(self.feature_map.device)
        return positive[:, None].expand(n, c) if positive.dim() == 1 else positive

    def compute_loss(self, positive: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-MI summed over filters for the last batch; carries the filter-loss gradient if the batch was tapped
        (training mode, loss enabled), else it is a plain value."""
        if self.feature_map is None:
            raise RuntimeError(f"layer {self.conv!r} has not run a forward pass yet")
        flags = self.positive_flags(positive, labels)
        if self._tapped:
            return self.filter_loss.loss(flags)
        with torch.no_grad():
            return exact_filter_loss(self.feature_map).sum()

    def extra_repr(self) -> str:
        return f"conv={self.conv!r}, masks={self.use_masks}, loss={self.use_loss}, mu={self.mu_mode!r}"


def _next_conv_name(layer: str) -> str:
    """conv4_2 -> conv4_3; a name without a trailing _<number> gets _2 (AlexNet conv5 -> conv5_2)."""
    match = re.fullmatch(r"(.*_)(\d+)", layer)
    return f"{match[1]}{int(match[2]) + 1}" if match else f"{layer}_2"


def sibling_name(conv: str, kind: str) -> str:
    """Name of a layer of ``conv``'s block: conv4_3 -> relu4_3 / bn4_3 / mask4_3; other names get a suffix."""
    return kind + conv[4:] if conv.startswith("conv") else f"{conv}_{kind}"


def _new_block(name: str, channels: int, batch_norm: bool, seed: int, like: nn.Conv2d
               ) -> list[tuple[str, nn.Module]]:
    """The inserted conv layer (Sec. 5): 3x3, ``channels`` filters, zero padding 1, bias; He init from ``seed``."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, device="meta").to_empty(device=like.weight.device)
    generator = torch.Generator(device=like.weight.device).manual_seed(seed)
    with torch.no_grad():
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=generator)
        conv.bias.zero_()
    block = [(name, conv.to(like.weight.dtype))]
    if batch_norm:
        block.append((sibling_name(name, "bn"), nn.BatchNorm2d(channels).to(like.weight.device, like.weight.dtype)))
    return block + [(sibling_name(name, "relu"), nn.ReLU())]


def make_interpretable(net: Performer, layer: str | None = None, masks: bool = True, loss: bool = True,
                       mu: str = "argmax", config: FilterLossConfig | None = None,
                       num_categories: int | None = None, new_layer: str | None = None, seed: int = 0) -> Performer:
    """Make conv ``layer`` (default: the top conv) interpretable and insert one new interpretable conv layer above it
    (Sec. 5), in place; returns ``net``.

    A mask layer (:class:`InterpretableMask`) follows both ReLUs; the new block (3x3 conv, as many filters as
    ``layer``, padding 1, random He init from ``seed``; BN if the net has BN after ``layer``; ReLU) goes before
    what followed ``layer``'s ReLU (pooling, head). ``masks=False, loss=False`` gives the ordinary baseline with the
    identical architecture and state-dict keys (same ``seed`` -> same new conv). ``num_categories`` (default: the
    net's outputs when > 1) enables :class:`FilterCategories` for multi-category training. If ``layer`` was the top
    conv, ``net.top_conv`` becomes the new layer.
    """
    layer = layer or net.top_conv
    if any(isinstance(module, InterpretableMask) for module in net.features):
        raise ValueError("this net already has interpretable layers; call make_interpretable on the original net")
    relu = net.relu_of(layer)
    conv: nn.Conv2d = net.features._modules[layer]
    new = new_layer or _next_conv_name(layer)
    names = list(net.features._modules)
    between = names[names.index(layer) + 1 : names.index(relu)]
    batch_norm = any(isinstance(net.features._modules[name], nn.BatchNorm2d) for name in between)
    block = _new_block(new, conv.out_channels, batch_norm, seed, conv)
    masks_at = {relu: sibling_name(layer, "mask"), block[-1][0]: sibling_name(new, "mask")}
    clashes = {name for name, _ in block} | set(masks_at.values())
    if clashes & set(net.layer_names()):
        raise ValueError(f"layer names {sorted(clashes & set(net.layer_names()))} already exist; pass new_layer=")
    map_size = feature_size(net.features, relu, net.input_size)
    num_categories = num_categories if num_categories is not None else net.num_outputs
    options = dict(map_size=map_size, masks=masks, loss=loss, mu=mu, config=config,
                   num_categories=num_categories if num_categories > 1 else None)
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in net.features.named_children():
        modules[name] = module
        if name == relu:
            modules[masks_at[relu]] = InterpretableMask(layer, conv.out_channels, **options)
            modules.update(block)
            modules[masks_at[block[-1][0]]] = InterpretableMask(new, conv.out_channels, **options)
    net.features = nn.Sequential(modules).to(conv.weight.device)
    if layer == net.top_conv:
        net.top_conv = new
    return net


def interpretable_layers(net: nn.Module) -> dict[str, InterpretableMask]:
    """The net's :class:`InterpretableMask` layers, keyed by the conv layer each belongs to (bottom to top)."""
    return {module.conv: module for module in net.modules() if isinstance(module, InterpretableMask)}


def filter_loss(net: nn.Module, positive: torch.Tensor | None = None, labels: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Total filter loss of the last forward pass over all interpretable layers: add it to the task loss.

    ``positive`` (N,) bool for single-category nets (images of the category), or ``labels`` (N,) for
    multi-category nets (filters' categories from :class:`FilterCategories`). Value: sum of -MI(X;T) over filters
    and layers (Eq. 1); gradient: see the module docstring. Layers built with ``loss=False`` contribute their value
    only.
    """
    layers = interpretable_layers(net)
    if not layers:
        raise ValueError("the net has no interpretable layers; build it with make_interpretable")
    return sum(layer.compute_loss(positive, labels) for layer in layers.values())


def set_loss_epoch(net: nn.Module, epoch: int) -> None:
    """Tell every filter loss the current epoch (1-based), for ``FilterLossConfig(decay=True)``'s 1/epoch weight."""
    check_positive("epoch", epoch)
    for layer in interpretable_layers(net).values():
        layer.filter_loss.epoch = epoch
