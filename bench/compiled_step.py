"""Where the compiled CPU step's gain over nanoGPT's comes from: each change alone, in one process, one thread.

    python bench/compiled_step.py --nanogpt ../nanoGPT
    python bench/compiled_step.py --nanogpt ../nanoGPT --steps 600

Three copies of scratchlm's `cpu` preset model, from the same weights, each compiled: as `TrainConfig.compile`
compiled it before (`torch.compile`, the MLP's GELU torch's own `nn.GELU`, which Inductor builds from `tanh`);
with `scratchlm.layers`' GELU, which under `torch.compile` on the CPU is x * sigmoid(2z) in plain operations; and
through `compile_model`, which adds Inductor's C++ wrapper. Beside them nanoGPT's own `model.py`, eager, with the
tanh GELU (`train_throughput.make_models`). All four take `train_throughput.py`'s step on the same batches in
rotation (who goes first rotates), and the median step after the first tenth is compared with nanoGPT's. The
three copies differ in their modules or compile options, so each is its own compiled graph.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import DEFAULT_NANOGPT, load_nanogpt, machine_lines, make_models, nano_step

from scratchlm.data import get_batch, load_splits
from scratchlm.training import TrainConfig, compile_model, lr_at, train_step

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, default=DEFAULT_NANOGPT, help="a nanoGPT checkout or its model.py")
    parser.add_argument("--steps", type=int, default=300, help="steps per variant, in rotation (default 300)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    nanogpt = load_nanogpt(args.nanogpt)
    splits = load_splits("tinyshakespeare")
    config = TrainConfig.preset("cpu", progress=False, device="cpu")
    model_config = config.model_config(splits.tokenizer.vocab_size)
    print(machine_lines())

    steppers, nano = {}, None
    for name in ("compiled as before", "+ GELU as x*sigmoid(2z)", "+ C++ wrapper (compile_model)"):
        ours, optimizer, *nanogpt_side = make_models(nanogpt, config, model_config)
        if nano is None:  # one nanoGPT: each call builds it from the same weights
            nano, nano_optimizer = nanogpt_side
        if name == "compiled as before":
            for block in ours.transformer.h:
                block.mlp.gelu = torch.nn.GELU(approximate="tanh")
        compiled = compile_model(ours, CPU) if "wrapper" in name else torch.compile(ours)

        def step(i, x, y, compiled=compiled, optimizer=optimizer):
            return train_step(compiled, optimizer, [(x, y)], lr=lr_at(i, config), grad_clip=config.grad_clip)

        steppers[name] = step
    steppers["nanoGPT eager"] = lambda i, x, y: nano_step(nano, nano_optimizer, x, y, lr_at(i, config), 1.0)

    generator = torch.Generator().manual_seed(config.seed)
    names = list(steppers)
    wall = {name: [] for name in names}
    for i in range(args.steps):
        x, y = get_batch(splits.train, model_config.block_size, config.batch_size, generator)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            steppers[name](i, x, y)
            wall[name].append(time.perf_counter() - start)
    skip = max(1, args.steps // 10)  # the first step compiles; the next ones warm the caches
    median = {name: 1000 * statistics.median(times[skip:]) for name, times in wall.items()}
    print(f"\n{args.steps} steps each in rotation, 1 thread, load average {os.getloadavg()[0]:.2f}")
    print(f"{'scratchlm step':>32} {'ms':>7} {'first s':>8} {'speed vs nanoGPT eager':>23}")
    for name, ms in median.items():
        print(f"{name:>32} {ms:7.2f} {wall[name][0]:8.2f} {median['nanoGPT eager'] / ms:22.3f}x")


if __name__ == "__main__":
    main()
