"""What lesson 13's block costs per training step against GPT-2's, at (nearly) equal parameters, one thread.

    python bench/block_step.py                  # 20 rounds, fastest of 5 calls per round
    python bench/block_step.py --rounds 40 --threads 2

The model is the `cpu` preset's (4 layers, 80 dims, block 64, batch 12) as GPT-2 builds it (LayerNorm, GELU MLP,
learned positions, biases, tied head). Each other row changes one thing (`GPTConfig` fields, as the ladder's rungs
do), and the last row is all of them at once, lesson 13's `modern` block with AdamW. SwiGLU's hidden width is
chosen by `GPTConfig` so that its three matrices hold what GELU's two do, so every row's parameter count is
printed next to its time: the rows differ by at most the untied head (vocabulary x width) and the biases. The
rows alternate round by round (who goes first rotates), each round timing a few whole `train_step` calls
(forward, backward, clip, fused AdamW) on one fixed batch with `scratchlm.timing.seconds_per_call`; the fastest
call over all rounds is the figure (noise only adds time), and the ratio to GPT-2's is the result. The day's
fp32 GEMM peak is printed beside it, since machines of one kind differ from day to day.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_preset_batch, machine_lines, round_arguments

from scratchlm.model import GPT
from scratchlm.timing import seconds_per_call
from scratchlm.training import make_optimizer, train_step

CPU = torch.device("cpu")
MODERN: dict[str, Any] = {"norm": "rmsnorm", "mlp": "swiglu", "pos_embedding": "rope", "bias": False,
                          "tie_embeddings": False, "qk_norm": True}  # fmt: skip
ROWS: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "rmsnorm": {"norm": "rmsnorm"},
    "swiglu": {"mlp": "swiglu"},
    "relu2": {"mlp": "relu2"},
    "rope": {"pos_embedding": "rope"},
    "no-bias": {"bias": False},
    "untied": {"tie_embeddings": False},
    "qk-norm": {"qk_norm": True},
    "modern": MODERN,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser, "row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, splits, batch = cpu_preset_batch()
    sides = {}
    for name, change in ROWS.items():
        run = config.replace(**change)
        torch.manual_seed(0)
        model = GPT(run.model_config(splits.tokenizer.vocab_size))
        sides[name] = (model, make_optimizer(model, run, CPU), run)
    print(
        machine_lines() + "\n"
        f"model: the cpu preset ({config.model.n_layer} layers, {config.model.n_embd} dims, block "
        f"{config.model.block_size}, batch {config.batch_size})"
    )

    def whole_step(model, optimizer, run):
        return lambda: train_step(model, optimizer, batch, lr=run.learning_rate, grad_clip=run.grad_clip)

    best = dict.fromkeys(sides, float("inf"))
    names = list(sides)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times = seconds_per_call(whole_step(*sides[name]), repeats=args.calls, warmup=1)
            best[name] = min(best[name], min(times))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\nfastest of {args.rounds} x {args.calls} train_step calls per row, rows rotating\n")
    print(f"{'row':>10}{'parameters':>12}{'ms/step':>10}{'vs gpt2':>9}")
    for name, (model, _, _) in sides.items():
        ratio = best[name] / best["gpt2"]
        print(f"{name:>10}{model.num_parameters():>12,}{1000 * best[name]:10.2f}{ratio:8.2f}x")


if __name__ == "__main__":
    main()
