"""Learning the explainer by distillation without labels (Sec. 3.2, Eq. 1), and the Explainer+cls baseline.

Eq. (1): Loss = sum_l lambda_l ||x_l - x*_l||^2 - eta log p + sum_f lambda_f Loss_f(x_f), l in {fc-dec-1 <-> fc6,
fc-dec-2 <-> fc7}, lambda_l = c / E[||max(x*_l, 0)||] over the training images. The performer is frozen: its
input-layer features, fc6/fc7 outputs and predictions are computed once (with and without a horizontal flip).
Whether an image is positive for a filter comes from the performer's prediction (single-category: logit > 0;
multi-category: the predicted class and :class:`helpers.interpretable.FilterCategories`), never from a label:
:func:`distill` reads nothing but the images.

Explainer+cls (Table 3/7) replaces the reconstruction loss by the classification loss on the labels, training the
explainer and a copy of the performer's classifier (:func:`fine_tune_with_labels`); it is a baseline, not an
explanation of the performer.
"""

from __future__ import annotations

import copy
import hashlib
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import cache_dir, check_choice, check_positive, get_device, progress, seed_everything
from ..data.arrays import PartArrays
from ..interpretable import METHODS, MU_MODES
from ..io import atomic_torch_save, config_hash, load_torch_cache
from ..models.features import FeatureRecorder
from ..models.nets import Performer
from ..models.training import LOSSES, classification_loss
from .model import ExplainedPerformer, Explainer, attachment

EXPLAINER_VERSION = 3  # bump when the model or the loop changes in a way that makes cached explainers stale


@dataclass(frozen=True)
class DistillSettings:
    """Knobs of Eq. (1) and of the optimiser (AdamW, one-cycle schedule; w_p has its own learning rate ``lr_p``,
    since Adam moves every parameter by about ``lr`` per step whatever the size of eta)."""

    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    lr_p: float = 0.05
    weight_decay: float = 0.0
    eta: float = 1.0  # weight of -log p
    recon_scale: float = 1.0  # c in lambda_l = c / E||max(x*_l, 0)||
    filter_ratio: float = 1 / 300  # lambda_f = filter_ratio / N * E||dLoss_rec/dx_f|| / E||dLoss_f/dx_f||
    masks: bool = True
    mu: str = "argmax"
    loss_method: str = "approx"
    flip: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr", "lr_p", "recon_scale"):
            check_positive(name, getattr(self, name))
        for name in ("weight_decay", "eta", "filter_ratio"):
            check_positive(name, getattr(self, name), allow_zero=True)
        check_choice("mu", self.mu, MU_MODES)
        check_choice("loss_method", self.loss_method, METHODS)

    def explainer_options(self) -> dict:
        return {"mu": self.mu, "masks": self.masks, "filter_ratio": self.filter_ratio,
                "loss_method": self.loss_method, "seed": self.seed}


@dataclass
class ExplainerRun:
    """A learned explainer attached to its performer (``model``), with its per-epoch history."""

    model: ExplainedPerformer
    history: dict[str, list[float]] = field(default_factory=dict)
    from_cache: bool = False
    seconds: float = 0.0

    @property
    def explainer(self) -> Explainer:
        return self.model.explainer

    @property
    def p(self) -> float:
        return self.explainer.p.item()


# ----------------------------------------------------------------------------------------------------------------
# The frozen performer's side of the distillation

@dataclass
class PerformerFeatures:
    """What the distillation reads from the frozen performer, for every image and flip (index 0: as is, 1: flipped):
    the input-layer maps (F, N, C, h, w), fc6 and fc7 outputs before ReLU (F, N, D), logits (F, N, K) and the energy
    sum_ij of each channel of the pooled top conv map that fc6 reads (F, N, C)."""

    inputs: torch.Tensor
    fc6: torch.Tensor
    fc7: torch.Tensor
    logits: torch.Tensor
    energy: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[1]

    def norm_images(self) -> torch.Tensor:
        """(N,) bool: the unflipped images that the norm-layers' statistics come from (single-category: the
        predicted positives, Sec. 3.2 appendix, or all if the performer predicts none; multi-category: all)."""
        positive = predicted_flags(self.logits[0]).get("positive")
        return positive if positive is not None and positive.any() else torch.ones(len(self), dtype=torch.bool)


@torch.no_grad()
def performer_features(net: Performer, images: torch.Tensor, flip: bool = True, batch_size: int = 64,
                       device: str | torch.device = "auto") -> PerformerFeatures:
    """Run the frozen performer (eval mode) once over ``images`` (N, 3, H, W) uint8 or float, as is and flipped.

    Everything is kept on the CPU: 2 x N input-layer maps (teach: 3840 x 128 x 8 x 8 floats, 250 MB for the
    multi-category performer; VGG-16's relu5_2 at 224 px needs 400 kB per image and flip)."""
    device = get_device(device)
    net.eval().to(device)
    where = attachment(net)
    names = {"inputs": where.input_layer, "fc6": "fc6", "fc7": "fc7",
             "energy": where.pooled}
    keys = (*names, "logits")
    chunks: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    for mirrored in (False, True)[: 1 + flip]:
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
        with FeatureRecorder(net, list(names.values())) as recorder:
            for start in range(0, len(images), batch_size):
                batch = _float(images[start : start + batch_size]).to(device)
                parts["logits"].append(net(batch.flip(-1) if mirrored else batch).cpu())
                for key, name in names.items():
                    value = recorder.outputs[name]
                    parts[key].append((value.sum(dim=(2, 3)) if key == "energy" else value).cpu())
        for key in keys:
            chunks[key].append(torch.cat(parts[key]))
    return PerformerFeatures(**{key: torch.stack(chunks[key]) for key in keys})


def _images(data: PartArrays | torch.Tensor) -> torch.Tensor:
    """The image tensor of ``data`` (nothing else of a :class:`PartArrays` is touched)."""
    return data.images if isinstance(data, PartArrays) else data


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255.0) if images.dtype == torch.uint8 else images


def predicted_flags(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Which images count as positive, from the performer's prediction only: ``positive`` (logit > 0) for a
    single-output performer, else ``predicted`` (the arg-max class)."""
    if logits.shape[1] == 1:
        return {"positive": logits[:, 0] > 0}
    return {"predicted": logits.argmax(dim=1)}


def reconstruction_weights(features: PerformerFeatures, scale: float) -> tuple[float, float]:
    """lambda_l = c / E[||max(x*_l, 0)||] for l = fc6, fc7 (Sec. 4), over all training images."""
    return tuple(scale / float(target[0].clamp_min(0).norm(dim=1).mean().clamp_min(1e-12))
                 for target in (features.fc6, features.fc7))


def reconstruction_loss(fc6: torch.Tensor, fc7: torch.Tensor, target6: torch.Tensor, target7: torch.Tensor,
                        weights: tuple[float, float]) -> torch.Tensor:
    """sum_l lambda_l ||x_l - x*_l||^2 (Eq. 1), averaged over the batch."""
    return (weights[0] * (fc6 - target6).pow(2).sum(dim=1) + weights[1] * (fc7 - target7).pow(2).sum(dim=1)).mean()


def relative_error(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||x - x*|| / ||x*|| per image."""
    return (estimate - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-12)


# ----------------------------------------------------------------------------------------------------------------
# The training loop shared by the distillation and Explainer+cls

# (fc6, fc7, sample index, flip) -> (task loss, logs)
TaskLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


def _optimizer(explainer: Explainer, extra: Iterable[nn.Parameter], settings: DistillSettings, steps: int
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    others = [param for name, param in explainer.named_parameters() if name != "w_p"] + list(extra)
    optimizer = torch.optim.AdamW([{"params": others, "lr": settings.lr},
                                   {"params": [explainer.w_p], "lr": settings.lr_p, "weight_decay": 0.0}],
                                  lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[settings.lr, settings.lr_p],
                                                   total_steps=steps, pct_start=0.15)
    return optimizer, schedule


def _run_epochs(model: ExplainedPerformer, features: PerformerFeatures, settings: DistillSettings, task: TaskLoss,
                device: torch.device, desc: str) -> dict[str, list[float]]:
    """Minimise task - eta log p + sum_f lambda_f Loss_f over ``features``; returns per-epoch means."""
    explainer = model.explainer
    single = features.logits.shape[-1] == 1
    generator = torch.Generator().manual_seed(settings.seed)
    steps = settings.epochs * -(-len(features) // settings.batch_size)
    head = list(model.head.parameters()) if model.head_trainable else []
    optimizer, schedule = _optimizer(explainer, head, settings, steps)
    history: dict[str, list[float]] = {}
    for epoch in progress(range(settings.epochs), desc=desc):
        model.train()
        explainer.set_epoch(epoch + 1)
        totals: dict[str, float] = {}
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(features), settings.batch_size):
            index = order[start : start + settings.batch_size]
            flip = (torch.rand(len(index), generator=generator) < 0.5).long() if settings.flip else \
                torch.zeros(len(index), dtype=torch.long)
            x = features.inputs[flip, index].to(device)
            flags = {k: v.to(device) for k, v in predicted_flags(features.logits[flip, index]).items()}
            encoding = explainer.encode(x, update=flags["positive"] if single else None)
            fc6, fc7 = explainer.decode(encoding.x_enc)
            task_loss, logs = task(fc6, fc7, index, flip)
            filter_loss = explainer.filter_loss(**flags)
            loss = task_loss - settings.eta * encoding.p.log() + filter_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            logs = {"loss": loss.item(), "task_loss": task_loss.item(), "filter_loss": filter_loss.item(), **logs}
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value * len(index)
        for key, value in totals.items():
            history.setdefault(key, []).append(value / len(features))
        history.setdefault("p", []).append(explainer.p.item())
    explainer.forget()
    model.eval()
    return history


def distill(net: Performer, images: PartArrays | torch.Tensor, settings: DistillSettings,
            device: str | torch.device = "auto", explainer: Explainer | None = None, desc: str = "explainer"
            ) -> ExplainerRun:
    """Learn an explainer for ``net`` from images alone (Eq. 1): of a :class:`PartArrays`, only ``images`` is read.

    ``explainer`` defaults to a fresh one (seeded by ``settings.seed``; decoder calibrated with
    :meth:`Explainer.calibrate_decoder`). History per epoch: ``loss``, ``task_loss`` (reconstruction),
    ``filter_loss`` (-MI values), ``fc7_error`` (relative), ``p``."""
    device = get_device(device)
    seed_everything(settings.seed)
    features = performer_features(net, _images(images), settings.flip, device=device)
    if explainer is None:
        explainer = Explainer.from_performer(net, **settings.explainer_options())
        explainer.calibrate_decoder(features.energy[0][features.norm_images()].mean(dim=0))
    model = ExplainedPerformer(net, explainer).to(device)
    weights = reconstruction_weights(features, settings.recon_scale)

    def task(fc6: torch.Tensor, fc7: torch.Tensor, index: torch.Tensor, flip: torch.Tensor
             ) -> tuple[torch.Tensor, dict]:
        target6, target7 = features.fc6[flip, index].to(device), features.fc7[flip, index].to(device)
        error = relative_error(fc7.detach(), target7).mean().item()
        return reconstruction_loss(fc6, fc7, target6, target7, weights), {"fc7_error": error}

    start = time.perf_counter()
    history = _run_epochs(model, features, settings, task, device, desc)
    return ExplainerRun(model, history, seconds=time.perf_counter() - start)


def fine_tune_with_labels(run: ExplainerRun, net: Performer, arrays: PartArrays, settings: DistillSettings,
                          loss: str = "softmax", device: str | torch.device = "auto",
                          desc: str = "explainer+cls") -> ExplainerRun:
    """Explainer+cls (Table 3/7): starting from a learned explainer, replace the reconstruction loss by the
    classification loss on the *labels* of ``arrays`` and train the explainer with a copy of the performer's
    classifier (``loss``: ``softmax`` or ``logistic`` for several outputs; one output is always logistic)."""
    check_choice("loss", loss, LOSSES)
    device = get_device(device)
    seed_everything(settings.seed)
    head = copy.deepcopy(run.model.head)
    for param in head.parameters():
        param.requires_grad_(True)
    model = ExplainedPerformer(net, copy.deepcopy(run.explainer), head).to(device)
    features = performer_features(net, arrays.images, settings.flip, device=device)
    labels, negative = arrays.labels.to(device), arrays.is_negative.to(device)

    def task(_fc6: torch.Tensor, fc7: torch.Tensor, index: torch.Tensor, _flip: torch.Tensor
             ) -> tuple[torch.Tensor, dict]:
        index = index.to(device)
        return classification_loss(model.head(F.relu(fc7)), labels[index], negative[index], loss), {}

    start = time.perf_counter()
    history = _run_epochs(model, features, settings, task, device, desc)
    return ExplainerRun(model, history, seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint cache (data/cache/explainers/, keyed by the performer's weights, the data and the settings)

def tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    """A short hash of tensors' contents (the identity of a performer's weights or of a set of images)."""
    digest = hashlib.blake2b(digest_size=8)
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cached(path_name: str, key: dict, build: Callable[[], ExplainerRun], blank: Callable[[], ExplainedPerformer],
            use_cache: bool) -> ExplainerRun:
    """Load the run from ``data/cache/explainers/<name>-<hash>.pt`` or build it and save it atomically."""
    path = cache_dir("explainers") / f"{path_name}-{config_hash(key)}.pt"
    cached = load_torch_cache(path) if use_cache else None
    if cached is not None:
        model = blank()
        try:
            model.explainer.load_state_dict(cached["explainer"])
            if model.head_trainable:
                model.head.load_state_dict(cached["head"])
            return ExplainerRun(model.eval(), cached["history"], from_cache=True, seconds=cached["seconds"])
        except (KeyError, RuntimeError) as error:
            warnings.warn(f"checkpoint {path} does not fit the explainer ({error}); retraining", stacklevel=3)
    run = build()
    if use_cache:
        parts = {"explainer": run.explainer, **({"head": run.model.head} if run.model.head_trainable else {})}
        state = {part: {k: v.detach().cpu() for k, v in module.state_dict().items()} for part, module in parts.items()}
        atomic_torch_save(path, {**state, "history": run.history, "seconds": run.seconds, "key": repr(key)})
    return run


def _key(net: Performer, images: PartArrays | torch.Tensor, settings: DistillSettings, **extra) -> dict:
    return {"performer": tensor_digest(net.state_dict().values()), "images": tensor_digest([_images(images)]),
            "settings": asdict(settings), "version": EXPLAINER_VERSION, **extra}


def distill_cached(net: Performer, images: PartArrays | torch.Tensor, settings: DistillSettings,
                   device: str | torch.device = "auto", name: str = "explainer", use_cache: bool = True
                   ) -> ExplainerRun:
    """:func:`distill`, or its checkpoint from the cache when the same performer, images and settings were used."""
    device = get_device(device)

    def blank() -> ExplainedPerformer:
        return ExplainedPerformer(net, Explainer.from_performer(net, **settings.explainer_options())).to(device)

    return _cached(name, _key(net, images, settings), lambda: distill(net, images, settings, device, desc=name),
                   blank, use_cache)


def fine_tune_with_labels_cached(run: ExplainerRun, net: Performer, arrays: PartArrays, settings: DistillSettings,
                                 loss: str = "softmax", device: str | torch.device = "auto",
                                 name: str = "explainer-cls", use_cache: bool = True) -> ExplainerRun:
    """:func:`fine_tune_with_labels` through the checkpoint cache (keyed also by the starting explainer and labels)."""
    device = get_device(device)
    key = _key(net, arrays.images, settings, loss=loss, start=tensor_digest(run.model.state_dict().values()),
               labels=tensor_digest([arrays.labels, arrays.is_negative]))

    def blank() -> ExplainedPerformer:
        return ExplainedPerformer(net, copy.deepcopy(run.explainer), copy.deepcopy(run.model.head)).to(device)

    return _cached(name, key, lambda: fine_tune_with_labels(run, net, arrays, settings, loss, device, name), blank,
                   use_cache)
