"""Performer CNNs with named layers: small VGG-style nets and torchvision VGG-16 / AlexNet adapters.

Every net is a :class:`Performer`: ``features`` (conv blocks, layers named ``conv{b}_{i}``, ``relu{b}_{i}``,
``pool{b}``), an optional ``avgpool``, and a ``classifier`` with ``fc6``, ``fc7`` and ``fc8`` (the explainer
reconstructs fc6/fc7). Pretrained weights come only from a local file (:func:`load_pretrained`), never from a hub.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..config import check_choice, check_positive

ARCHITECTURES = ("small_vgg", "vgg16", "alexnet")


class Performer(nn.Module):
    """A classification CNN whose layers are addressable by name (``net.layer("conv4_2")``)."""

    def __init__(
        self,
        features: nn.Sequential,
        classifier: nn.Sequential,
        arch: str,
        input_size: int,
        top_conv: str,
        avgpool: nn.Module | None = None,
    ):
        super().__init__()
        self.features = features
        self.avgpool = avgpool if avgpool is not None else nn.Identity()
        self.classifier = classifier
        self.arch, self.input_size, self.top_conv = arch, input_size, top_conv

    @property
    def num_outputs(self) -> int:
        return self.classifier.fc8.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def layer(self, name: str) -> nn.Module:
        for part in (self.features, self.classifier):
            if name in part._modules:
                return part._modules[name]
        raise KeyError(f"{self.arch} has no layer {name!r}; layers: {', '.join(self.layer_names())}")

    def layer_names(self) -> list[str]:
        return list(self.features._modules) + list(self.classifier._modules)

    def conv_names(self) -> list[str]:
        return [name for name, m in self.features.named_children() if isinstance(m, nn.Conv2d)]

    def relu_of(self, conv: str) -> str:
        """Name of the ReLU that closes the block of conv layer ``conv`` (its rectified output)."""
        names = list(self.features._modules)
        if conv not in names or not isinstance(self.features._modules[conv], nn.Conv2d):
            raise KeyError(f"{conv!r} is not a conv layer of {self.arch}; conv layers: {', '.join(self.conv_names())}")
        for name in names[names.index(conv) + 1 :]:
            module = self.features._modules[name]
            if isinstance(module, nn.ReLU):
                return name
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
                break
        raise KeyError(f"conv layer {conv!r} has no ReLU after it")

    def conv_below(self, conv: str) -> str:
        """The conv layer just below ``conv`` (the explainer reads its output)."""
        convs = self.conv_names()
        index = convs.index(conv)
        if index == 0:
            raise KeyError(f"{conv!r} is the first conv layer; nothing is below it")
        return convs[index - 1]


def _head(in_features: int, hidden: int, num_outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("fc6", nn.Linear(in_features, hidden)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(hidden, hidden)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Linear(hidden, num_outputs)),
    ]))


def small_vgg(
    num_outputs: int,
    input_size: int = 64,
    widths: Sequence[int] = (16, 32, 64, 128),
    convs_per_block: Sequence[int] = (1, 1, 2, 2),
    fc_dim: int = 256,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> Performer:
    """A VGG-style net small enough to train in minutes on 2 CPU cores (3x3 convs, 2x2 max-pools).

    With the defaults at 64 px, the top conv layer ``conv4_2`` has 128 channels on an 8 x 8 map (stride 8).
    """
    check_positive("num_outputs", num_outputs)
    check_positive("input_size", input_size)
    if len(widths) != len(convs_per_block):
        raise ValueError(f"widths ({len(widths)}) and convs_per_block ({len(convs_per_block)}) must have equal length")
    if input_size % 2 ** len(widths):
        raise ValueError(f"input_size {input_size} must be divisible by {2 ** len(widths)} for {len(widths)} pools")
    layers: list[tuple[str, nn.Module]] = []
    channels = 3
    for block, (width, n_convs) in enumerate(zip(widths, convs_per_block, strict=True), start=1):
        for i in range(1, n_convs + 1):
            layers.append((f"conv{block}_{i}", nn.Conv2d(channels, width, 3, padding=1)))
            if batch_norm:
                layers.append((f"bn{block}_{i}", nn.BatchNorm2d(width)))
            layers.append((f"relu{block}_{i}", nn.ReLU()))
            channels = width
        layers.append((f"pool{block}", nn.MaxPool2d(2)))
    side = input_size // 2 ** len(widths)
    top = f"conv{len(widths)}_{convs_per_block[-1]}"
    return Performer(nn.Sequential(OrderedDict(layers)), _head(channels * side * side, fc_dim, num_outputs, dropout),
                     "small_vgg", input_size, top)


def _rename(modules: Sequence[nn.Module], names: Sequence[str]) -> nn.Sequential:
    for module in modules:
        if isinstance(module, nn.ReLU):
            module.inplace = False  # hooks must see conv outputs before the ReLU overwrites them
    return nn.Sequential(OrderedDict(zip(names, modules, strict=True)))


def vgg16(num_outputs: int, weights_path: str | Path | None = None) -> Performer:
    """torchvision's VGG-16 (224 px) with VGG names (conv1_1 ... conv5_3, fc6, fc7, fc8)."""
    from torchvision.models import vgg16 as tv_vgg16

    model = tv_vgg16(weights=None)
    if weights_path is not None:
        load_pretrained(model, weights_path)
    names = []
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    features = _rename(list(model.features), names)
    fc = list(model.classifier)
    fc[6] = nn.Linear(fc[6].in_features, num_outputs) if num_outputs != fc[6].out_features else fc[6]
    classifier = _rename(fc, ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"])
    return Performer(features, classifier, "vgg16", 224, "conv5_3", model.avgpool)


def alexnet(num_outputs: int, weights_path: str | Path | None = None) -> Performer:
    """torchvision's AlexNet (224 px) with names conv1 ... conv5, fc6, fc7, fc8."""
    from torchvision.models import alexnet as tv_alexnet

    model = tv_alexnet(weights=None)
    if weights_path is not None:
        load_pretrained(model, weights_path)
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4",
             "conv5", "relu5", "pool5"]
    features = _rename(list(model.features), names)
    fc = list(model.classifier)  # dropout, fc6, relu, dropout, fc7, relu, fc8
    fc[6] = nn.Linear(fc[6].in_features, num_outputs) if num_outputs != fc[6].out_features else fc[6]
    classifier = _rename(fc, ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"])
    return Performer(features, classifier, "alexnet", 224, "conv5", model.avgpool)


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision-format state dict from a local file (``weights_only=True``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} not found; download the torchvision checkpoint on a machine with internet "
            "access and pass its local path (nothing is fetched at run time)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("classifier.6") for key in missing):
        raise ValueError(f"{path} does not match {type(model).__name__}: missing {missing}, unexpected {unexpected}")


def build_performer(arch: str, num_outputs: int, input_size: int = 64, weights_path: str | Path | None = None,
                    **kwargs) -> Performer:
    """Build a performer by architecture name (``small_vgg`` | ``vgg16`` | ``alexnet``)."""
    check_choice("net", arch, ARCHITECTURES)
    if arch == "small_vgg":
        if weights_path is not None:
            raise ValueError("small_vgg has no pretrained weights; train it with helpers.models.training")
        return small_vgg(num_outputs, input_size, **kwargs)
    if input_size != 224:
        raise ValueError(f"{arch} expects 224 px inputs, got image_size={input_size}")
    return (vgg16 if arch == "vgg16" else alexnet)(num_outputs, weights_path)
