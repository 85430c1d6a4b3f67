"""The largest-tensor probe used by the memory tests and benchmarks."""

import torch

from helpers.profiling import LargestTensor


def test_largest_tensor_counts_elements_and_bytes_of_the_biggest_result():
    small = torch.ones(3, dtype=torch.float32)
    with LargestTensor() as probe:
        torch.zeros(10, dtype=torch.float64)  # 10 elements, 80 bytes
        small.repeat(4)  # 12 elements, 48 bytes
    assert (probe.elements, probe.bytes) == (12, 80)
