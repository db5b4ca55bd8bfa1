"""Generation speed with and without the KV cache, for a `cpu`-preset-sized GPT.

Without a cache every new token re-runs the model on the whole context, so a step costs more and more as the
text grows; with one, a step runs the model on one token and attends over the cached keys and values.
Weights are random (speed does not depend on them); both paths are checked to produce the same tokens.

The question is the speed of generating 500 tokens, but the `cpu` preset's context is only 64 tokens, and
past block_size `generate` recomputes the sliding window on every step either way (see its docstring). To
measure the cache itself, the model here gets block_size = max(preset block_size, prompt + most tokens), so
the whole generation fits in the context; the other sizes are the preset's.

    python bench/kv_cache.py                        # 50, 100, 200, 500 new tokens
    python bench/kv_cache.py --threads 1 --tokens 100 500
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from scratchlm.generation import generate
from scratchlm.model import GPT
from scratchlm.runtime import configure_threads
from scratchlm.training import PRESETS


def best_time(
    model: GPT, prompt: torch.Tensor, tokens: int, use_cache: bool, repeats: int
) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate(model, prompt, tokens, seed=0, use_cache=use_cache)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[50, 100, 200, 500], help="new tokens per run")
    parser.add_argument("--threads", type=int, help="CPU threads (default: configure_threads' choice)")
    parser.add_argument("--prompt", type=int, default=16, help="prompt length in tokens (default 16)")
    parser.add_argument("--batch", type=int, default=1, help="sequences generated together (default 1)")
    parser.add_argument("--preset", default="cpu", help="model sizes from this training preset (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest is kept")
    args = parser.parse_args()

    threads = configure_threads(args.threads)
    preset = PRESETS[args.preset]
    block_size = max(preset.model.block_size, args.prompt + max(args.tokens))
    config = dataclasses.replace(preset.model_config(vocab_size=65), block_size=block_size)
    torch.manual_seed(0)
    model = GPT(config).eval()
    prompt = torch.randint(0, config.vocab_size, (args.batch, args.prompt))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"torch {torch.__version__}, {threads} threads on {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\nmodel: preset {args.preset!r} sizes ({config.n_layer} layers, "
        f"{config.n_head} heads, {config.n_embd} dims, {model.num_parameters() / 1e6:.2f}M parameters) with "
        f"block_size {block_size} (preset: {preset.model.block_size}) so that every run fits in the context; "
        f"prompt {args.prompt} tokens, batch {args.batch}, best of {args.repeats}"
    )
    generate(model, prompt, 5, seed=0)  # warm-up
    generate(model, prompt, 5, seed=0, use_cache=False)
    print(f"{'new tokens':>10} {'no cache tok/s':>15} {'cache tok/s':>12} {'speed-up':>9}")
    for tokens in args.tokens:
        t_plain, plain = best_time(model, prompt, tokens, use_cache=False, repeats=args.repeats)
        t_cached, cached = best_time(model, prompt, tokens, use_cache=True, repeats=args.repeats)
        assert torch.equal(plain, cached), "the cache changed the generated tokens"
        n = args.batch * tokens
        print(f"{tokens:>10} {n / t_plain:>15.0f} {n / t_cached:>12.0f} {t_plain / t_cached:>8.1f}x")


if __name__ == "__main__":
    main()
