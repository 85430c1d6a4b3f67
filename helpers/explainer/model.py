"""The explainer network (Zhang et al., "Unsupervised learning of neural networks to explain neural networks",
Sec. 3.1, Fig. 2) and its attachment to a performer by layer names.

Interpretable track: conv-interp-1 (initialised from the performer's top conv, batch norm folded in) -> ReLU -> mask
-> conv-interp-2 (random) -> ReLU -> mask -> norm-layer -> pooling like the performer's last pool.
Ordinary track: conv-ordin (random) -> ReLU -> pooling -> norm-layer.
x_enc = p x_interp + (1 - p) x_ordin, p = sigmoid(w_p). Decoder: fc-dec-1 (from fc6) -> ReLU -> fc-dec-2 (from fc7)
-> ReLU; its output replaces the performer's fc7 feature and goes on through the performer's classifier.

Masks and filter losses are those of the interpretable CNN (``helpers.interpretable``). The filter loss of each
interpretable layer is tapped on a side branch (:class:`FilterTap`) so that every filter gets its own online weight
lambda_f (explainer appendix) and conv-interp-2's loss can act on x'_f = p x_f + (1 - p) x̂_ordin,f.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice
from ..interpretable import MU_MODES, FilterCategories, FilterLoss, FilterLossConfig, apply_mask, select_mu
from ..models.geometry import LayerGeometry, feature_size, layer_geometry
from ..models.nets import Performer

POOLS = (nn.MaxPool2d, nn.AvgPool2d)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks

class NormLayer(nn.Module):
    """Norm-layer (Sec. 3.1): x̂_ijk = x_ijk / alpha_k, alpha_k = E_x[sum_ij max(x_ijk, 0)], learned "similar to batch
    normalization": in training mode alpha is the batch's estimate over the images flagged by ``update``
    (single-category performers: the positives; None: all), differentiated like batch norm's batch statistics, and
    it updates a running estimate (the batch's first estimate sets it) that eval mode uses.

    alpha_k is floored at ``floor`` times the mean of alpha over channels: a channel that hardly ever fires on the
    flagged images is not amplified without bound (its rare activations would otherwise dominate x_enc)."""

    def __init__(self, channels: int, momentum: float = 0.1, floor: float = 0.01):
        super().__init__()
        self.momentum, self.floor = momentum, floor
        self.register_buffer("alpha", torch.ones(channels))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))

    def scale(self) -> torch.Tensor:
        """(C,) the floored running alpha (a constant)."""
        return self._floored(self.alpha)

    def _floored(self, alpha: torch.Tensor) -> torch.Tensor:
        return alpha.clamp_min((self.floor * alpha.detach().mean()).clamp_min(1e-12))

    def forward(self, x: torch.Tensor, update: torch.Tensor | None = None) -> torch.Tensor:
        alpha = self.alpha.to(x.dtype)
        if self.training and torch.is_grad_enabled():
            energy = x.clamp_min(0).sum(dim=(2, 3))
            energy = energy if update is None else energy[update.to(x.device)]
            if len(energy):
                alpha = energy.mean(dim=0)
                with torch.no_grad():
                    rate = self.momentum if self.num_batches > 0 else 1.0
                    self.alpha.lerp_(alpha.detach().float(), rate)
                    self.num_batches += 1
        return x / self._floored(alpha)[:, None, None]


class PartMask(nn.Module):
    """Mask layer (Sec. 3.1): x_masked = x ∘ max(T_mu_hat / tau, 0), the mask a constant; mu_hat = argmax_ij x_ij or
    (``mu="centroid"``) the official code's activation-weighted centroid. ``enabled=False``: the identity (the
    ablation without masks)."""

    def __init__(self, mu: str = "argmax", enabled: bool = True):
        super().__init__()
        self.mu_mode, self.enabled = check_choice("mu", mu, MU_MODES), enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_mask(x, select_mu(x, self.mu_mode)) if self.enabled else x


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient of channel c by ``scale[c]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype)[:, None, None], None


class FilterTap(nn.Module):
    """The filter loss lambda_f Loss_f(x_f) of Eq. (1) for every filter of one interpretable layer.

    Loss_f is :class:`helpers.interpretable.FilterLoss` (Eq. 2, approximate Eq. 4 gradient, unweighted), computed on a
    side branch of the map it is given, so its gradient reaches that map scaled per filter by the explainer's online
    weight (appendix): lambda_f = ratio / N * E||dLoss_rec/dx_f|| / E||dLoss_f/dx_f||, N = the epoch (1-based), the
    expectations running means over images of the per-map gradient norms. The reconstruction gradient is read on
    the main path (:meth:`watch`); before the first backward pass lambda_f = 0.
    """

    def __init__(self, channels: int, map_size: tuple[int, int], ratio: float, num_categories: int = 1,
                 method: str = "approx", mu: str = "argmax", momentum: float = 0.1):
        super().__init__()
        self.ratio, self.momentum, self.epoch = ratio, momentum, 1
        self.mu_mode = check_choice("mu", mu, MU_MODES)
        self.loss_fn = FilterLoss(channels, map_size, FilterLossConfig(method=method, weighting="none",
                                                                      momentum=momentum))
        self.categories = FilterCategories(channels, num_categories, momentum) if num_categories > 1 else None
        self.register_buffer("rec_grad", torch.zeros(channels))  # running E||dLoss_rec/dx_f||
        self.register_buffer("loss_grad", torch.zeros(channels))  # running E||dLoss_f/dx_f||
        self._tapped: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """(C,) lambda_f for the current epoch."""
        return self.ratio / self.epoch * self.rec_grad / self.loss_grad.clamp_min(1e-30)

    def _record(self, buffer: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            norm = grad.detach().float().flatten(2).norm(dim=-1).mean(dim=0)
            buffer.copy_(torch.where(buffer > 0, buffer.lerp(norm, self.momentum), norm))
        return hook

    def active(self) -> bool:
        return self.training and torch.is_grad_enabled()

    def watch(self, x: torch.Tensor) -> torch.Tensor:
        """x on the main path, recording the reconstruction gradient that reaches it (training only)."""
        if not self.active():
            return x
        x = x.view_as(x)
        x.register_hook(self._record(self.rec_grad))
        return x

    def tap(self, x: torch.Tensor) -> None:
        """Remember ``x`` (N, C, h, w) as the batch's maps X of Loss_f; its gradient is lambda_f dLoss_f/dx."""
        if not self.active():
            self.forget()
            return
        side = _ScaleGrad.apply(x, self.weight.detach())
        side.register_hook(self._record(self.loss_grad))
        self.loss_fn.tap(side, select_mu(side, self.mu_mode))
        self._tapped = side.detach()

    def forget(self) -> None:
        """Drop the tapped batch (and the autograd graph it keeps alive)."""
        self._tapped = None
        self.loss_fn.forget()

    def loss(self, positive: torch.Tensor | None = None, predicted: torch.Tensor | None = None) -> torch.Tensor:
        """sum_f Loss_f of the tapped batch (a value with the weighted Eq. (4) gradient). An image is positive for a
        filter if ``positive`` (N,) says so (single-category), or if ``predicted`` (N,) — the performer's predicted
        class, never a label — is the filter's category (multi-category, :class:`FilterCategories`)."""
        if self._tapped is None:
            raise RuntimeError("no tapped batch: run a training-mode forward pass with gradients first")
        if (positive is None) == (predicted is None):
            raise ValueError("give exactly one of positive= (single-category) or predicted= (multi-category)")
        maps = self._tapped
        if predicted is not None:
            if self.categories is None:
                raise ValueError("this explainer explains a single-output performer: pass positive=")
            self.categories.update(maps, predicted)
            flags = self.categories.positive(predicted)
        else:
            flags = positive.to(maps.device)[:, None].expand(maps.shape[:2])
        return self.loss_fn.loss(flags)


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    """A copy of ``conv`` with the eval-mode ``bn`` that follows it folded in: W' = W g / s, b' = (b - m) g / s + beta
    with s = sqrt(running_var + eps)."""
    folded = copy.deepcopy(conv)
    if bn is None:
        return folded
    with torch.no_grad():
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.mul_(scale[:, None, None, None])
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return folded


# ----------------------------------------------------------------------------------------------------------------
# Attachment to a performer

@dataclass(frozen=True)
class Attachment:
    """Where an explainer sits in a performer: it reads ``input_layer`` (the rectified output of the conv below the
    top conv), stands in for ``top_conv`` and the ``pools`` after it, and replaces the fc7 feature."""

    input_layer: str
    top_conv: str
    top_relu: str
    batch_norm: str | None
    pools: tuple[str, ...]
    head: tuple[str, ...]  # classifier modules after relu7 (dropout, fc8): the performer's classifier

    @property
    def pooled(self) -> str:
        """The layer whose output fc6 reads: the last pooling after the top conv (its ReLU if there is none)."""
        return self.pools[-1] if self.pools else self.top_relu


def attachment(net: Performer, top_conv: str | None = None) -> Attachment:
    """Layer names of the explainer's attachment to ``net`` (Sec. 4, "Experimental details")."""
    top = top_conv or net.top_conv
    top_relu = net.relu_of(top)
    names = list(net.features._modules)
    between = names[names.index(top) + 1 : names.index(top_relu)]
    norms = [name for name in between if isinstance(net.features._modules[name], nn.BatchNorm2d)]
    after = names[names.index(top_relu) + 1 :]
    others = [name for name in after if not isinstance(net.features._modules[name], (*POOLS, nn.Dropout))]
    if others:
        raise ValueError(f"the explainer stands in for the top conv layer and its pooling; {top!r} is followed by "
                         f"{others}: attach it to the top conv ({net.top_conv!r})")
    classifier = list(net.classifier._modules)
    for name in ("fc6", "fc7", "relu7"):
        if name not in classifier:
            raise ValueError(f"the performer's classifier needs fc6, fc7 and relu7; it has {classifier}")
    return Attachment(
        input_layer=net.relu_of(net.conv_below(top)), top_conv=top, top_relu=top_relu,
        batch_norm=norms[0] if norms else None,
        pools=tuple(name for name in after if isinstance(net.features._modules[name], POOLS)),
        head=tuple(classifier[classifier.index("relu7") + 1 :]),
    )


def performer_bottom(net: Performer, where: Attachment) -> nn.Sequential:
    """The performer's layers up to (and including) the explainer's input layer (shared modules, not copies)."""
    names = list(net.features._modules)
    return net.features[: names.index(where.input_layer) + 1]


# ----------------------------------------------------------------------------------------------------------------
# The explainer

@dataclass
class Encoding:
    """One pass of the encoder: x_enc and the tracks' normalised outputs (after pooling)."""

    x_enc: torch.Tensor
    x_interp: torch.Tensor
    x_ordin: torch.Tensor
    p: torch.Tensor


class Explainer(nn.Module):
    """Encoder (interpretable + ordinary track) and decoder of Sec. 3.1 (Fig. 2). Build with :meth:`from_performer`.

    ``encode(x, update)`` maps the performer's input-layer features to x_enc (``update``: images that update the
    norm-layers' running alpha in training mode; None = all); ``decode(x_enc)`` gives the fc-dec-1 and fc-dec-2 outputs
    (before their ReLUs); ``forward(x)`` = ReLU(fc-dec-2), the stand-in for the performer's fc7 feature.
    In training mode each forward pass taps the filter losses; :meth:`filter_loss` returns them.
    """

    def __init__(self, conv_interp_1: nn.Conv2d, map_size: tuple[int, int], pools: nn.Sequential,
                 avgpool: nn.Module, fc_dec_1: nn.Linear, fc_dec_2: nn.Linear, num_categories: int = 1,
                 mu: str = "argmax", masks: bool = True, filter_ratio: float = 1 / 300, loss_method: str = "approx",
                 seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        in_channels, channels = conv_interp_1.in_channels, conv_interp_1.out_channels
        self.num_categories = num_categories
        self.conv_interp_1 = conv_interp_1
        self.mask_1 = PartMask(mu, masks)
        self.conv_interp_2 = _random_conv(channels, channels, generator)
        self.mask_2 = PartMask(mu, masks)
        self.norm_interp = NormLayer(channels)
        self.conv_ordin = _random_conv(in_channels, channels, generator)
        self.norm_ordin = NormLayer(channels)
        self.pool = pools
        self.avgpool = avgpool
        self.w_p = nn.Parameter(torch.zeros(()))
        self.fc_dec_1, self.fc_dec_2 = fc_dec_1, fc_dec_2
        self.tap_1 = FilterTap(channels, map_size, filter_ratio, num_categories, loss_method, mu)
        self.tap_2 = FilterTap(channels, map_size, filter_ratio, num_categories, loss_method, mu)

    @classmethod
    def from_performer(cls, net: Performer, top_conv: str | None = None, **options) -> Explainer:
        """An explainer for ``net`` (Sec. 4): conv-interp-1 = the top conv with its batch norm folded in, fc-dec-1/2 =
        copies of fc6/fc7, pooling copied from the performer; ``options`` go to the constructor."""
        where = attachment(net, top_conv)
        layers = net.features._modules
        top: nn.Conv2d = layers[where.top_conv]
        bn = layers[where.batch_norm] if where.batch_norm else None
        map_size = feature_size(net.features, where.input_layer, net.input_size)
        pools = nn.Sequential(OrderedDict((name, copy.deepcopy(layers[name])) for name in where.pools))
        explainer = cls(fold_batch_norm(top, bn), map_size, pools, copy.deepcopy(net.avgpool),
                        copy.deepcopy(net.classifier.fc6), copy.deepcopy(net.classifier.fc7),
                        num_categories=net.num_outputs, **options)
        return explainer.to(top.weight.device)

    @property
    def p(self) -> torch.Tensor:
        """p = sigmoid(w_p): the share of x_enc that comes from the interpretable track."""
        return torch.sigmoid(self.w_p)

    def interpretable_maps(self, x: torch.Tensor) -> torch.Tensor:
        """conv-interp-2 after ReLU and mask: the layer whose interpretability Sec. 4 evaluates."""
        return self.mask_2(F.relu(self.conv_interp_2(self.mask_1(F.relu(self.conv_interp_1(x))))))

    def encode(self, x: torch.Tensor, update: torch.Tensor | None = None) -> Encoding:
        """x_enc = p x_interp + (1 - p) x_ordin. In training mode, taps Loss_f of conv-interp-1 on x_f and of
        conv-interp-2 on x'_f = p x̂_f + (1 - p) x̂_ordin,f (appendix), with no gradient into the ordinary track;
        x̂ = on the norm-layers' scale, x̂_ordin,f taken before pooling so that it has x_f's size."""
        h1 = F.relu(self.conv_interp_1(x))
        self.tap_1.tap(h1)
        h2 = F.relu(self.conv_interp_2(self.mask_1(self.tap_1.watch(h1))))
        interp = self.norm_interp(self.mask_2(self.tap_2.watch(h2)), update)
        ordin_map = F.relu(self.conv_ordin(x))
        ordin = self.norm_ordin(self.pool(ordin_map), update)
        p = self.p
        if self.tap_2.active():
            alpha_i, alpha_o = self.norm_interp.scale()[:, None, None], self.norm_ordin.scale()[:, None, None]
            self.tap_2.tap(p * h2 / alpha_i + (1 - p) * (ordin_map / alpha_o).detach())
        else:
            self.tap_2.tap(h2)
        x_interp = self.pool(interp)
        return Encoding(p * x_interp + (1 - p) * ordin, x_interp, ordin, p)

    def decode(self, x_enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fc-dec-1, fc-dec-2) outputs before their ReLUs: the reconstructions of the performer's fc6 and fc7."""
        fc6 = self.fc_dec_1(torch.flatten(self.avgpool(x_enc), 1))
        return fc6, self.fc_dec_2(F.relu(fc6))

    def forward(self, x: torch.Tensor, update: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.decode(self.encode(x, update).x_enc)[1])

    @torch.no_grad()
    def calibrate_decoder(self, energy: torch.Tensor) -> None:
        """Scale fc-dec-1's weights for input channel k by ``energy[k]``, the performer's mean sum_ij of channel k of
        the pooled top conv map (the map fc6 reads).

        The norm-layers bring every channel of x_enc to a mean sum of about 1, whereas fc6, which fc-dec-1 is copied
        from, reads maps of mean sum energy[k]; after this, fc-dec-1 applied to the performer's pooled map divided
        by ``energy`` equals fc6 (so the copied weights keep their meaning)."""
        weight = self.fc_dec_1.weight
        weight.copy_((weight.view(weight.shape[0], len(energy), -1) * energy.to(weight)[None, :, None]).view_as(weight))

    def filter_loss(self, positive: torch.Tensor | None = None, predicted: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """sum_f lambda_f Loss_f over both interpretable layers for the last training batch
        (see :meth:`FilterTap.loss`)."""
        return self.tap_1.loss(positive, predicted) + self.tap_2.loss(positive, predicted)

    def forget(self) -> None:
        """Drop the last training batch kept for the filter losses (e.g. before copying the explainer)."""
        self.tap_1.forget()
        self.tap_2.forget()

    def set_epoch(self, epoch: int) -> None:
        """The epoch N (1-based) of lambda_f = ratio / N * ..."""
        self.tap_1.epoch = self.tap_2.epoch = epoch


def _random_conv(in_channels: int, out_channels: int, generator: torch.Generator) -> nn.Conv2d:
    """A 3x3 conv layer with zero padding and bias, He-initialised from ``generator`` (Sec. 4: random init)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    with torch.no_grad():
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=generator)
        conv.bias.zero_()
    return conv


class ExplainedPerformer(nn.Module):
    """images -> the performer's frozen bottom -> explainer -> the performer's classifier (fc8): the explainer's
    reconstruction fed back into the performer (Table 3). ``head`` defaults to the performer's own classifier
    modules after relu7 (shared); Explainer+cls passes a trainable copy. The performer part stays in eval mode."""

    def __init__(self, net: Performer, explainer: Explainer, head: nn.Sequential | None = None,
                 top_conv: str | None = None):
        super().__init__()
        self.where = attachment(net, top_conv)
        self.bottom = performer_bottom(net, self.where)
        self.explainer = explainer
        self.head = head if head is not None else nn.Sequential(
            OrderedDict((name, net.classifier._modules[name]) for name in self.where.head))
        self.geometry = explainer_geometry(net, self.where)
        self.map_size = feature_size(net.features, self.where.top_relu, net.input_size)
        self.head_trainable = head is not None

    def train(self, mode: bool = True) -> ExplainedPerformer:
        super().train(mode)
        self.bottom.eval()
        if not self.head_trainable:
            self.head.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.bottom(images)
        return self.head(self.explainer(x))

    def interpretable_maps(self, images: torch.Tensor) -> torch.Tensor:
        """conv-interp-2 maps (after ReLU and mask) for ``images``."""
        return self.explainer.interpretable_maps(self.bottom(images))


def explainer_geometry(net: Performer, where: Attachment) -> LayerGeometry:
    """Receptive-field geometry of conv-interp-2: the input layer's, then two 3x3 zero-padded convs (same centre and
    stride as the performer's top conv)."""
    names = list(net.features._modules)
    stack = OrderedDict((name, net.features._modules[name]) for name in names[: names.index(where.input_layer) + 1])
    stack["conv_interp_1"] = nn.Conv2d(1, 1, 3, padding=1, device="meta")
    stack["conv_interp_2"] = nn.Conv2d(1, 1, 3, padding=1, device="meta")
    return layer_geometry(nn.Sequential(stack), "conv_interp_2")
