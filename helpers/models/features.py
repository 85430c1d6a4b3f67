"""Forward-hook feature recorder: read any named layers' outputs while a net runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..config import get_device, progress


class FeatureRecorder:
    """Context manager that records the outputs of named modules on every forward pass.

    >>> with FeatureRecorder(net, ["relu4_2"]) as rec:
    ...     net(images)
    ...     rec.outputs["relu4_2"]
    """

    def __init__(self, net: nn.Module, names: Sequence[str], detach: bool = True):
        self.net, self.names, self.detach = net, list(names), detach
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _module(self, name: str) -> nn.Module:
        if hasattr(self.net, "layer"):
            return self.net.layer(name)
        modules = dict(self.net.named_modules())
        if name not in modules:
            raise KeyError(f"no module named {name!r}")
        return modules[name]

    def __enter__(self) -> FeatureRecorder:
        for name in self.names:
            def hook(_module, _inputs, output, name=name):
                self.outputs[name] = output.detach() if self.detach else output
            self._handles.append(self._module(name).register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def iter_features(
    net: nn.Module,
    images: torch.Tensor,
    names: Sequence[str],
    batch_size: int = 128,
    device: str | torch.device = "auto",
    with_logits: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield, batch by batch, the outputs of ``names`` (on the device) for ``images`` (uint8 or float, on the CPU).

    With ``with_logits`` the net's output is included under ``"logits"``. The net is put in eval mode.
    """
    device = get_device(device)
    net.eval().to(device)
    with FeatureRecorder(net, names) as recorder:
        for start in progress(range(0, len(images), batch_size), desc="features"):
            batch = images[start : start + batch_size].to(device)
            if batch.dtype == torch.uint8:
                batch = batch.float().div_(255.0)
            logits = net(batch)
            out = dict(recorder.outputs)
            if with_logits:
                out["logits"] = logits
            yield out


def collect_features(net: nn.Module, images: torch.Tensor, names: Sequence[str], batch_size: int = 128,
                     device: str | torch.device = "auto") -> dict[str, torch.Tensor]:
    """All outputs of ``names`` for ``images``, concatenated on the CPU (use :func:`iter_features` to stream)."""
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for out in iter_features(net, images, names, batch_size, device):
        for name in names:
            chunks[name].append(out[name].cpu())
    return {name: torch.cat(parts) for name, parts in chunks.items()}
