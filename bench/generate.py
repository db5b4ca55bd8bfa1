"""Generation speed (new tokens per second) of `scratchlm.generate` for a `cpu`-preset-sized GPT.

Weights are random (speed does not depend on them). `generate` uses the KV cache by default; once the
context fills block_size it recomputes the cropped window every step (see `scratchlm.generation`), so
this measures the speed a user of `python -m scratchlm sample` gets. `bench/kv_cache.py` compares the
cached and uncached paths side by side.

    python bench/generate.py                       # batch 1 and 8, 500 new tokens
    python bench/generate.py --tokens 200 --batch 1 4 16
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from scratchlm.generation import generate
from scratchlm.model import GPT
from scratchlm.runtime import configure_threads
from scratchlm.training import PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=500, help="new tokens per sequence (default 500)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--preset", default="cpu", help="model sizes from this training preset (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size; the best is kept")
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: one less than the CPUs, at least 1, at most 8)"
    )
    args = parser.parse_args()

    threads = configure_threads(args.threads)
    config = PRESETS[args.preset].model_config(vocab_size=65)
    torch.manual_seed(0)
    model = GPT(config).eval()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{threads} threads, load average {load:.2f}; model: {config.n_layer} layers, {config.n_embd} dims, "
        f"block {config.block_size}, {model.num_parameters() / 1e6:.2f}M parameters; {args.tokens} new tokens"
    )
    print(f"{'batch':>6} {'tokens/s':>10} {'ms/token step':>14}")
    for batch in args.batch:
        prompt = torch.zeros(batch, 1, dtype=torch.long)
        generate(model, prompt, 5, seed=0)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            generate(model, prompt, args.tokens, seed=0)
            best = min(best, time.perf_counter() - start)
        print(f"{batch:>6} {batch * args.tokens / best:10.0f} {1000 * best / args.tokens:14.2f}")


if __name__ == "__main__":
    main()
