"""Time and peak extra memory of causal attention vs sequence length: naive, tiled (PyTorch), SDPA, Triton.

    python bench/attention.py                        # CPU, T = 256 ... 4096
    python bench/attention.py --device cuda --max-t 16384 --dtype float16

Peak extra memory is what a call allocates above its inputs (`scratchlm.profiling.peak_extra_memory`:
the CUDA allocator's high-water mark, or the CPU profiler's allocation events). The Triton kernel runs only on
CUDA here: under the CPU interpreter its timings would mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from scratchlm.attention import naive_attention, tiled_attention
from scratchlm.profiling import peak_extra_memory
from scratchlm.runtime import configure_threads, get_device


def seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def methods(device: torch.device, block_size: int) -> dict[str, Callable]:
    found = {
        "naive": lambda q, k, v: naive_attention(q, k, v, causal=True),
        "tiled": lambda q, k, v: tiled_attention(q, k, v, causal=True, block_size=block_size),
        "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    if device.type == "cuda":
        from scratchlm.attention.triton_kernel import triton_attention, triton_available

        if triton_available():
            found["triton"] = lambda q, k, v: triton_attention(q, k, v, causal=True)
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: the best available)")
    p.add_argument("--max-t", type=int, default=4096, help="largest sequence length; T doubles from --min-t")
    p.add_argument("--min-t", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--block-size", type=int, default=128, help="block size of the tiled PyTorch version")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: all cores, <= 8)")
    args = p.parse_args(argv)

    device = get_device(args.device)
    threads = configure_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    fns = methods(device, args.block_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, threads={threads}"
    print(
        f"# causal attention, B={args.batch} H={args.heads} D={args.head_dim} {args.dtype}, {name}, "
        f"torch {torch.__version__}; time = median of {args.repeats}, memory = peak extra bytes"
    )
    cols = list(fns)
    header = ["T"] + [f"{c} ms" for c in cols] + [f"{c} MiB" for c in cols]
    header += [f"{c}/naive t" for c in cols[1:]] + [f"{c}/naive mem" for c in cols[1:]]
    print(" ".join(f"{h:>14}" for h in header))
    g = torch.Generator(device=device).manual_seed(0)
    seq_len = args.min_t
    while seq_len <= args.max_t:
        shape = (args.batch, args.heads, seq_len, args.head_dim)
        qkv = [torch.randn(shape, device=device, dtype=dtype, generator=g) for _ in range(3)]
        times, mem = measure(fns, qkv, device, args.repeats)
        row = [f"{seq_len}"] + [f"{times[c] * 1e3:.1f}" for c in cols] + [f"{mem[c] / 2**20:.2f}" for c in cols]
        row += [f"{times[c] / times['naive']:.2f}" for c in cols[1:]]
        row += [f"{mem[c] / mem['naive']:.4f}" for c in cols[1:]]
        print(" ".join(f"{x:>14}" for x in row), flush=True)
        del qkv
        seq_len *= 2


def measure(
    fns: dict[str, Callable], qkv: list[torch.Tensor], device: torch.device, repeats: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds and peak extra bytes of each method on the same q, k, v."""
    times = {name: seconds(lambda f=f: f(*qkv), device, repeats) for name, f in fns.items()}
    mem = {name: peak_extra_memory(lambda f=f: f(*qkv), device)[1] for name, f in fns.items()}
    return times, mem


if __name__ == "__main__":
    main()
