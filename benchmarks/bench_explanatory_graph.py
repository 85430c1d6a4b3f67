"""Benchmark of the explanatory-graph miner (helpers.explanatory_graph).

Prints: the speed-up of the vectorised miner over the loop reference on one small input; mining time per layer
and iteration against the number of images and of nodes per filter (with ratios); the largest tensor mining
creates and the process's peak memory (CUDA: max_memory_allocated); and a teach-sized run (small_vgg shapes at
64 px, four layers, a few hundred images, flip alignment as in the teach profile). Random rectified feature
maps: the cost does not depend on content.

    python benchmarks/bench_explanatory_graph.py [--threads N] [--device cpu|cuda|auto] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from helpers.config import get_device
from helpers.explanatory_graph import LayerSpec, MinerParams, mine_graph, mine_reference
from helpers.profiling import LargestTensor

SMALL_VGG = [LayerSpec("conv3_1", 64, 16, 16, 4.0, 1.5), LayerSpec("conv3_2", 64, 16, 16, 4.0, 1.5),
             LayerSpec("conv4_1", 128, 8, 8, 8.0, 3.5), LayerSpec("conv4_2", 128, 8, 8, 8.0, 3.5)]  # at 64 px
TWO_LAYERS = [SMALL_VGG[1], SMALL_VGG[3]]


def features(specs: list[LayerSpec], n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {s.name: torch.randn(n, s.channels, s.height, s.width, generator=generator).relu_() for s in specs}


def per_iteration(graph, params: MinerParams) -> dict[str, tuple[float, float]]:
    """Per layer: seconds per EM pass (T + 1 passes) and per edge selection (T - 1 of them; 0 for the top)."""
    out = {}
    for name, seconds in graph.meta["timings_s"].items():
        selections = params.iterations - 1 if name != graph.layers[-1] else 0
        out[name] = (seconds["em"] / (params.iterations + 1), seconds["edges"] / max(1, selections))
    return out


def speedup(device: torch.device) -> None:
    specs = [LayerSpec("low", 16, 8, 8, 2.0, 0.5), LayerSpec("up", 12, 4, 4, 4.0, 1.5)]
    maps = features(specs, 24, seed=1)
    generator = torch.Generator().manual_seed(2)
    init = {s.name: torch.rand(s.channels, 4, 2, generator=generator, dtype=torch.float64) for s in specs}
    params = MinerParams(nodes_per_filter=4, n_parents=4, iterations=5)
    mine_graph(maps, specs, params, input_size=16, device=device, init=init)  # warm-up
    tic = time.perf_counter()
    fast = mine_graph(maps, specs, params, input_size=16, device=device, init=init)
    fast_s = time.perf_counter() - tic
    tic = time.perf_counter()
    slow = mine_reference({k: v.numpy() for k, v in maps.items()}, specs, params, input_size=16,
                          init={k: v.numpy() for k, v in init.items()})
    slow_s = time.perf_counter() - tic
    gap = max(float((fast.mu[s.name] - slow.mu[s.name]).abs().max()) for s in specs)
    print(f"speed-up: 24 images, 16x8x8 + 12x4x4 maps, 4 nodes/filter, T=5: reference {slow_s:.2f} s, "
          f"vectorised {fast_s * 1e3:.1f} ms -> {slow_s / fast_s:.0f}x (max |mu diff| {gap:.1e})")


def scaling(device: torch.device, counts: list[int], nodes: list[int], iterations: int, repeats: int) -> None:
    print(f"scaling: conv3_2 (64x16x16) under conv4_2 (128x8x8), T={iterations}, M=15, best of {repeats}; "
          "seconds per EM pass (E-step + inference) and per edge selection of conv3_2, per EM pass of conv4_2")
    for label, runs in (("images", [(n, nodes[1]) for n in counts]), ("nodes/filter", [(counts[1], k) for k in nodes])):
        base = None
        for n, k in runs:
            params = MinerParams(nodes_per_filter=k, iterations=iterations)
            rows = []
            for _ in range(repeats):  # the best of a few runs: other jobs share the cores
                graph = mine_graph(features(TWO_LAYERS, n), TWO_LAYERS, params, input_size=64, device=device)
                times = per_iteration(graph, params)
                rows.append((times["conv3_2"][0], times["conv3_2"][1], times["conv4_2"][0]))
            row = tuple(min(column) for column in zip(*rows, strict=True))
            base = base or row
            ratios = "/".join(f"{a / b:.2f}" for a, b in zip(row, base, strict=True))
            value = n if label == "images" else k
            print(f"  {label}={value:4d} (n={n}, N={k}): conv3_2 EM {row[0]:.3f} s, edges {row[1]:.3f} s; "
                  f"conv4_2 EM {row[2]:.3f} s; ratios to first {ratios}")


def memory(device: torch.device, counts: list[int], batch_size: int) -> None:
    params = MinerParams(nodes_per_filter=5, iterations=2)
    for n in counts:
        maps = features(TWO_LAYERS, n)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            mine_graph(maps, TWO_LAYERS, params, input_size=64, batch_size=batch_size, device=device)
            peak = f"cuda max_memory_allocated {torch.cuda.max_memory_allocated(device) / 2**20:.1f} MiB"
        else:
            with LargestTensor() as largest:
                mine_graph(maps, TWO_LAYERS, params, input_size=64, batch_size=batch_size, device=device)
            peak = f"largest tensor {largest.bytes / 2**20:.1f} MiB"
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
        whole = sum(m.numel() * m.element_size() for m in maps.values()) / 2**20
        print(f"memory: n={n:4d}, batch {batch_size}: {peak}; peak RSS grew {grown:.1f} MiB "
              f"(the features of all images: {whole:.1f} MiB)")


def teach(device: torch.device, n: int, nodes: int, iterations: int) -> None:
    """The teach profile's graph: four small_vgg layers, flip alignment (mirror images' maps too)."""
    params = MinerParams(nodes_per_filter=nodes, iterations=iterations, flip=True)
    maps, mirrored = features(SMALL_VGG, n), features(SMALL_VGG, n, seed=1)
    tic = time.perf_counter()
    graph = mine_graph(maps, SMALL_VGG, params, input_size=64, device=device, mirrored=mirrored)
    total = time.perf_counter() - tic
    layers = ", ".join(f"{name} {s['em'] + s['edges']:.1f} s" for name, s in graph.meta["timings_s"].items())
    print(f"teach-sized graph: 4 layers (64-128 channels), n={n}, N={nodes}, T={iterations}, M=15, flip alignment: "
          f"{total:.1f} s in all ({layers}); target <= 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run of this script)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    torch.manual_seed(0)
    speedup(device)
    counts = [40, 80, 160] if args.quick else [75, 150, 300]
    scaling(device, counts, [3, 6, 12], 2 if args.quick else 4, 1 if args.quick else 3)
    memory(device, counts[1:], 16 if args.quick else 64)
    teach(device, 60 if args.quick else 300, 5, 3 if args.quick else 15)


if __name__ == "__main__":
    main()
