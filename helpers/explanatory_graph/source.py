"""Feature sources for the miner: the same images, in the same order, batch by batch, on every pass.

A source is a callable returning a fresh iterable of ``{layer: (b, C, H, W) tensor}`` dicts. :func:`as_source`
also accepts whole tensors (sliced into batches) or a re-iterable such as a list of batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..config import get_device
from ..models.features import iter_features
from ..models.geometry import feature_size, layer_geometry
from .graph import LayerSpec

Batch = Mapping[str, torch.Tensor]
FeatureSource = Callable[[], Iterable[Batch]]


def as_source(features: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch],
              batch_size: int = 64) -> FeatureSource:
    """Turn whole feature tensors (sliced into ``batch_size`` batches), a callable or a re-iterable into a source."""
    if isinstance(features, Mapping):
        sizes = {len(t) for t in features.values()}
        if len(sizes) != 1:
            raise ValueError(f"feature tensors hold different numbers of images: {sorted(sizes)}")
        total = sizes.pop()
        return lambda: ({k: t[i : i + batch_size] for k, t in features.items()} for i in range(0, total, batch_size))
    if callable(features):
        return features
    if iter(features) is features:
        raise TypeError("the miner reads the features several times; pass a list of batches, the whole tensors, or "
                        "a callable returning a fresh iterator, not a one-shot iterator/generator")
    return lambda: features


def iterate(source: FeatureSource, specs: Sequence[LayerSpec]) -> Iterator[tuple[int, Batch]]:
    """(offset of the batch's first image, batch) pairs; fails clearly if a batch lacks a layer or has the wrong
    shape for it."""
    offset = 0
    for batch in source():
        for spec in specs:
            if spec.name not in batch:
                raise KeyError(f"feature batch has no layer {spec.name!r}; it holds {sorted(batch)}")
            maps = batch[spec.name]
            if maps.dim() != 4 or tuple(maps.shape[1:]) != (spec.channels, spec.height, spec.width):
                raise ValueError(f"layer {spec.name!r}: expected feature maps (b, {spec.channels}, {spec.height}, "
                                 f"{spec.width}), got {tuple(maps.shape)}")
        yield offset, batch
        offset += len(batch[specs[0].name])


def iterate_pairs(source: FeatureSource, mirrored: FeatureSource | None, specs: Sequence[LayerSpec]
                  ) -> Iterator[tuple[int, Batch, Batch | None]]:
    """:func:`iterate` over ``source`` with, in lockstep, the batch of the mirror images from ``mirrored`` (None
    when there is no ``mirrored`` source); fails if the two sources disagree in batch sizes."""
    if mirrored is None:
        for offset, batch in iterate(source, specs):
            yield offset, batch, None
        return
    pairs = zip(iterate(source, specs), iterate(mirrored, specs), strict=True)
    for (offset, batch), (other, mirror) in pairs:
        if other != offset or len(mirror[specs[0].name]) != len(batch[specs[0].name]):
            raise ValueError("the mirrored source must yield the same images, in batches of the same sizes")
        yield offset, batch, mirror


def layer_specs(net: nn.Module, layers: Sequence[str], input_size: int | None = None) -> list[LayerSpec]:
    """Specs of conv layers ``layers`` of a :class:`~helpers.models.nets.Performer`, sorted bottom to top."""
    input_size = input_size or net.input_size
    order = {name: i for i, name in enumerate(net.features._modules)}
    unknown = [name for name in layers if name not in net.conv_names()]
    if unknown:
        raise KeyError(f"{unknown} are not conv layers of {net.arch}; conv layers: {', '.join(net.conv_names())}")
    specs = []
    for name in sorted(layers, key=order.__getitem__):
        geometry = layer_geometry(net.features, name)
        height, width = feature_size(net.features, name, input_size)
        specs.append(LayerSpec(name, net.layer(name).out_channels, height, width, geometry.stride, geometry.centre))
    return specs


def net_source(net: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int = 64,
               device: str | torch.device = "auto", mirror: bool = False) -> FeatureSource:
    """A source running ``net`` on ``images`` (their horizontal mirror images with ``mirror``) at every pass,
    yielding the rectified outputs (relu_of) of the conv ``layers`` under their conv names (for the whole set in
    memory, see :func:`net_features`)."""
    relus = {net.relu_of(name): name for name in layers}
    images = images.flip(-1) if mirror else images

    def batches() -> Iterator[Batch]:
        for out in iter_features(net, images, list(relus), batch_size, device):
            yield {relus[name]: value for name, value in out.items()}

    return batches


def net_features(net: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int = 64,
                 device: str | torch.device = "auto", mirror: bool = False) -> dict[str, torch.Tensor]:
    """The whole rectified maps ``{conv layer: (n, C, H, W)}`` of :func:`net_source`, on the device (for feature
    sets that fit in memory: mining from them costs no forward pass per EM pass)."""
    batches = list(net_source(net, images, layers, batch_size, device, mirror)())
    if not batches:  # no image: empty maps of the layers' shapes
        return {spec.name: torch.zeros(0, spec.channels, spec.height, spec.width, device=get_device(device))
                for spec in layer_specs(net, layers)}
    return {name: torch.cat([batch[name] for batch in batches]) for name in layers}
