"""Training-step time of an interpretable CNN vs the ordinary CNN with the identical architecture (same batch).

    .venv/bin/python benchmarks/bench_interpretable.py [--batch 64] [--size 64] [--steps 10] [--threads 1]

Both nets come from the same small_vgg via ``make_interpretable`` (the ordinary one with ``masks=False,
loss=False``); the plain performer without the inserted conv layer is timed for reference. A step is forward,
logistic loss (+ the filter loss), backward and an SGD update. Target: interpretable / ordinary <= 1.25.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from helpers.config import get_device
from helpers.interpretable import filter_loss, make_interpretable
from helpers.models.nets import small_vgg


def _step_seconds(net: nn.Module, images: torch.Tensor, positive: torch.Tensor, with_loss: bool) -> float:
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    if images.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    logits = net(images)
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], positive.float())
    if with_loss:
        loss = loss + filter_loss(net, positive=positive)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    torch.manual_seed(0)
    base = small_vgg(1, input_size=args.size).to(device).train()
    nets = {
        "plain performer": (base, False),
        "ordinary (+ new conv)": (make_interpretable(copy.deepcopy(base), masks=False, loss=False), False),
        "interpretable": (make_interpretable(copy.deepcopy(base)), True),
    }
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    positive = torch.arange(args.batch, device=device) % 2 == 0
    times: dict[str, list[float]] = {name: [] for name in nets}
    for step in range(args.warmup + args.steps):
        for name, (net, with_loss) in nets.items():  # interleaved, so load changes hit every net alike
            seconds = _step_seconds(net, images, positive, with_loss)
            if step >= args.warmup:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"small_vgg, {args.size} px, batch {args.batch}, {device}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} training steps")
    for name, seconds in medians.items():
        print(f"{name:>24s}: {seconds * 1000:8.1f} ms/step")
    ratio = medians["interpretable"] / medians["ordinary (+ new conv)"]
    print(f"interpretable / ordinary: {ratio:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
