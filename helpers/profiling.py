"""Memory probes for benchmarks and tests: the largest tensor any torch operation produces (CPU or CUDA)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LargestTensor(TorchDispatchMode):
    """While active, records the largest tensor produced by any torch operation, in ``elements`` and in ``bytes``
    (a bound on working memory that does not depend on the allocator or the process's other memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.elements = max(self.elements, tensor.numel())
                self.bytes = max(self.bytes, tensor.numel() * tensor.element_size())
        return out
