"""Train and evaluate performers: single-category (logistic, object vs. negatives) and multi-category
(softmax or one-vs-all logistic) losses, deterministic, with a checkpoint cache keyed by a config hash.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import cache_dir, check_choice, check_positive, get_device, progress, seed_everything
from ..data.arrays import PartArrays
from ..io import atomic_torch_save, config_hash, load_torch_cache

LOSSES = ("logistic", "softmax")
TRAINING_VERSION = 1  # bump when the loop changes in a way that makes cached checkpoints stale


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    loss: str = "logistic"
    seed: int = 0
    flip: bool = True  # random horizontal flips

    def __post_init__(self):
        check_choice("loss", self.loss, LOSSES)
        check_positive("epochs", self.epochs)
        check_positive("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)


@dataclass
class TrainingRun:
    net: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    from_cache: bool = False
    seconds: float = 0.0


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, is_negative: torch.Tensor,
                        loss: str) -> torch.Tensor:
    """One output: logistic loss of object vs. negatives. Several: softmax cross-entropy or one-vs-all logistic."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], (~is_negative).float())
    if loss == "softmax":
        return F.cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, logits.shape[1]).float())


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor, is_negative: torch.Tensor) -> torch.Tensor:
    """Bool per sample: was the prediction right (one output: sign; several: argmax)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0) == ~is_negative
    return logits.argmax(dim=1) == labels


@torch.no_grad()
def predict(net: nn.Module, arrays: PartArrays, batch_size: int = 256, device: str | torch.device = "auto"
            ) -> torch.Tensor:
    """Logits for every sample (eval mode), on the CPU."""
    device = get_device(device)
    net.eval().to(device)
    out = [net(arrays.float_images(slice(i, i + batch_size)).to(device)).cpu()
           for i in range(0, len(arrays), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 1)


def accuracy(net: nn.Module, arrays: PartArrays, device: str | torch.device = "auto") -> float:
    """Fraction of correctly classified samples."""
    logits = predict(net, arrays, device=device)
    return float(correct_predictions(logits, arrays.labels, arrays.is_negative).float().mean())


def _check_targets(net: nn.Module, arrays: PartArrays) -> None:
    outputs = net.num_outputs if hasattr(net, "num_outputs") else None
    if outputs == 1 and not arrays.is_negative.any():
        raise ValueError("a single-output (object vs. negatives) net needs negatives in its training data")
    if outputs and outputs > 1 and int(arrays.labels.max()) >= outputs:
        raise ValueError(f"labels go up to {int(arrays.labels.max())} but the net has only {outputs} outputs")


ExtraLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def train(net: nn.Module, data: PartArrays, settings: TrainSettings, val: PartArrays | None = None,
          device: str | torch.device = "auto", desc: str = "train",
          extra_loss: ExtraLoss | None = None) -> dict[str, list[float]]:
    """Train ``net`` in place with AdamW and a one-cycle learning-rate schedule; returns the per-epoch history
    (``loss``, ``train_accuracy``, with ``val`` also ``val_accuracy``, with ``extra_loss`` also ``extra_loss``).

    ``extra_loss(net, labels, is_negative, epoch)``, called after each forward pass, returns a term added to the
    classification loss (e.g. the interpretable CNN's filter losses, whose layers read the forward pass)."""
    _check_targets(net, data)
    device = get_device(device)
    net.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout draws from the global generator
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(data) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": []}
    if val is not None:
        history["val_accuracy"] = []
    if extra_loss is not None:
        history["extra_loss"] = []
    bar = progress(range(settings.epochs), desc=desc)
    for epoch in bar:
        net.train()
        order = torch.randperm(len(data), generator=generator)
        total_loss, total_correct, total_extra = 0.0, 0, 0.0
        for start in range(0, len(data), settings.batch_size):
            index = order[start : start + settings.batch_size]
            images = data.float_images(index)
            if settings.flip:
                flip = torch.rand(len(index), generator=generator) < 0.5
                images[flip] = images[flip].flip(-1)
            labels, negative = data.labels[index].to(device), data.is_negative[index].to(device)
            logits = net(images.to(device))
            loss = classification_loss(logits, labels, negative, settings.loss)
            if extra_loss is not None:
                extra = extra_loss(net, labels, negative, epoch)
                total_extra += extra.item() * len(index)
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(index)
            total_correct += int(correct_predictions(logits.detach(), labels, negative).sum())
        history["loss"].append(total_loss / len(data))
        history["train_accuracy"].append(total_correct / len(data))
        if extra_loss is not None:
            history["extra_loss"].append(total_extra / len(data))
        if val is not None:
            history["val_accuracy"].append(accuracy(net, val, device))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=history["loss"][-1], acc=history["train_accuracy"][-1])
    net.eval()
    return history


def train_cached(
    build: Callable[[], nn.Module],
    net_config: dict,
    data: PartArrays,
    data_key: dict,
    settings: TrainSettings,
    val: PartArrays | None = None,
    device: str | torch.device = "auto",
    name: str = "performer",
    use_cache: bool = True,
    extra_loss: ExtraLoss | None = None,
) -> TrainingRun:
    """Build (seeded) and train a net, or load it from ``data/cache/performers/`` when the same
    (net config, data, settings) was trained before. Checkpoints are written atomically and read with
    ``weights_only=True``; a corrupt checkpoint is reported and retrained. With ``extra_loss`` (see :func:`train`),
    ``net_config`` must describe it, since it is part of what the cache key stands for."""
    key = {"net": net_config, "data": data_key, "settings": asdict(settings), "version": TRAINING_VERSION}
    path = cache_dir("performers") / f"{name}-{config_hash(key)}.pt"
    seed_everything(settings.seed)
    net = build()
    cached = load_torch_cache(path) if use_cache else None
    if cached is not None:
        try:
            net.load_state_dict(cached["state_dict"])
            return TrainingRun(net.eval(), cached["history"], from_cache=True, seconds=cached["seconds"])
        except (KeyError, RuntimeError) as error:
            warnings.warn(f"checkpoint {path} does not fit the net ({error}); retraining", stacklevel=2)
    start = time.perf_counter()
    history = train(net, data, settings, val, device, desc=name, extra_loss=extra_loss)
    seconds = time.perf_counter() - start
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if use_cache:
        atomic_torch_save(path, {"state_dict": state, "history": history, "seconds": seconds, "key": repr(key)})
    return TrainingRun(net, history, from_cache=False, seconds=seconds)
