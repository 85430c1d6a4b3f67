"""Pattern-based image synthesis (Fig. 7, explanatory graph paper): an up-convolutional decoder ("[6]",
Dosovitskiy and Brox 2016) trained to invert one conv layer of the performer, then fed maps that keep only the
units assigned to the top-10% nodes (:func:`~.analysis.pattern_mask`). Decoders are cached like the performers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..config import cache_dir, get_device, progress
from ..evaluation import named_layer
from ..io import atomic_torch_save, config_hash, load_torch_cache
from ..models.performers import performer_settings
from .analysis import pattern_mask, random_mask_like
from .miner import cpu_threads
from .pipeline import MinedGraph

SPARSEST = 1e-3  # the decoder is trained on maps keeping from 0.1% to all of their units (Fig. 7 keeps ~0.2-0.5%)


class Inverter(nn.Module):
    """Up-convolutional decoder from a layer's rectified maps (C, h, w) to the image (3, h 2^u, w 2^u): a 3x3 conv,
    ``upsamplings`` 4x4 transposed convs of stride 2 (halving the width, at least 16), a 3x3 conv to RGB, sigmoid."""

    def __init__(self, channels: int, upsamplings: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(upsamplings):
            narrower = max(16, width // 2)
            layers += [nn.ConvTranspose2d(width, narrower, 4, stride=2, padding=1), nn.BatchNorm2d(narrower),
                       nn.ReLU()]
            width = narrower
        layers += [nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, maps: Tensor) -> Tensor:
        return self.body(maps)


def train_inverter(inverter: Inverter, net: nn.Module, layer: str, images: Tensor, epochs: int,
                   batch_size: int = 64, lr: float = 2e-3, seed: int = 0, device: str | torch.device = "auto",
                   threads: int | None = 1, sparsest: float | None = SPARSEST) -> list[float]:
    """Fit ``inverter`` to map the performer's ``layer`` maps of ``images`` (uint8 (n, 3, H, W)) back to the
    images (mean squared error, Adam, seeded shuffling); the maps are computed batch by batch. With ``sparsest``,
    half of the images keep their units at a random rate, log-uniform in [``sparsest``, 1], the rest set to zero
    (:func:`sparsify`), so that the decoder also inverts maps as sparse as Fig. 7's (None: full maps only). On the
    CPU, torch uses at most ``threads`` threads (:func:`~.miner.cpu_threads`). Returns the mean training loss of
    every epoch."""
    device = get_device(device)
    with cpu_threads(device, threads):
        return _train(inverter, net, layer, images, epochs, batch_size, lr, seed, device, sparsest)


def sparsify(maps: Tensor, sparsest: float, generator: torch.Generator) -> Tensor:
    """``maps`` (b, C, h, w) with half of the images (at random) whole, the other half keeping their units at a
    rate drawn log-uniformly from [``sparsest``, 1]."""
    rate = torch.rand(len(maps), generator=generator).mul(-math.log(sparsest)).neg().exp()
    rate = torch.where(torch.rand(len(maps), generator=generator) < 0.5, 1.0, rate)
    keep = torch.rand(maps.shape, generator=generator) < rate[:, None, None, None]
    return maps * keep.to(maps.device)


def _train(inverter: Inverter, net: nn.Module, layer: str, images: Tensor, epochs: int, batch_size: int,
           lr: float, seed: int, device: torch.device, sparsest: float | None) -> list[float]:
    """The training loop of :func:`train_inverter`."""
    layer_maps = named_layer(net, layer, device).maps  # the rectified maps of conv ``layer``
    inverter.train().to(device)
    optimiser = torch.optim.Adam(inverter.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in progress(range(epochs), desc=f"inverter {layer}"):
        total = 0.0
        for index in torch.randperm(len(images), generator=generator).split(batch_size):
            batch = images[index].to(device).float() / 255
            with torch.no_grad():
                maps = layer_maps(batch)
            loss = nnf.mse_loss(inverter(maps if sparsest is None else sparsify(maps, sparsest, generator)), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(index)
        losses.append(total / len(images))
    return losses


def cached_inverter(mined: MinedGraph, settings: dict[str, Any], layer: str, epochs: int, seed: int = 0,
                    device: str | torch.device = "auto") -> tuple[Inverter, list[float]]:
    """The decoder inverting ``layer`` of the graph's performer, trained on the object images of the performer's
    training split, cached under ``data/cache/inverters/`` by a hash of what decides it."""
    spec = mined.graph.spec(layer)
    config = {"channels": spec.channels, "upsamplings": round(math.log2(mined.graph.input_size / spec.height)),
              "width": 32}
    images = mined.data.train.positives().images
    key = {"performer": performer_settings(settings), "category": mined.graph.meta.get("category"), "layer": layer,
           "epochs": epochs, "images": len(images), "inverter": config, "seed": seed, "sparsest": SPARSEST,
           "whole": 0.5}
    path = cache_dir("inverters") / f"{layer}-{config_hash(key)}.pt"
    state = load_torch_cache(path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        inverter = Inverter(**config)
    if state is None:
        losses = train_inverter(inverter, mined.performer.net, layer, images, epochs, seed=seed, device=device)
        state = {"weights": inverter.cpu().state_dict(), "losses": torch.tensor(losses)}
        atomic_torch_save(path, state)
    inverter.load_state_dict(state["weights"])
    return inverter.eval(), state["losses"].tolist()


@torch.no_grad()
def synthesize(inverter: Inverter, maps: Tensor, keep: Tensor | None = None) -> Tensor:
    """Images (n, 3, H, W) in [0, 1] decoded from ``maps`` (n, C, h, w), with every unit outside ``keep``
    (bool, same shape) set to zero first (Fig. 7)."""
    device = next(inverter.parameters()).device
    maps = maps if keep is None else maps * keep.to(maps.device)
    return inverter.eval()(maps.to(device)).cpu()


def pattern_synthesis(inverter: Inverter, maps: Tensor, units: Tensor, scores: Tensor, fraction: float = 0.1,
                      seed: int = 0) -> dict[str, Tensor]:
    """Fig. 7 on a batch: the images decoded from all units of ``maps`` (n, C, H, W) (``all``), from only the units
    of the top-``fraction`` nodes (``patterns``; ``units``, ``scores`` (n, C, N) of the layer's inference) and, a
    control, from as many units drawn at random (``random``); ``keep`` is the patterns' mask."""
    keep = pattern_mask(units.to(maps.device), scores.to(maps.device), tuple(maps.shape[1:]), fraction)
    return {"all": synthesize(inverter, maps), "patterns": synthesize(inverter, maps, keep),
            "random": synthesize(inverter, maps, random_mask_like(keep, seed)), "keep": keep}
