"""The CPU speedrun: Tiny Shakespeare character validation loss reached in the wall time of the `cpu` preset.

    python bench/speedrun.py                                  # every row once, seed 1337, one thread
    python bench/speedrun.py --rows record +muon --seeds 1337 1338
    python bench/speedrun.py --json bench/results/speedrun.json

Each row is the row above it plus one change (lesson 13's modern block and Muon), in the style of public speedrun
record histories. Every row gets the record's wall time, not its step count: a change that makes a step slower
gets fewer steps. The step times of all rows are measured first, one step of each row in turn (so a change in
machine load hits them alike), and a row's steps are the record's 3500 times the record's step time over its
own; its warmup and evaluations scale with them. Then each row trains with the library's `train` and is scored on
the **whole** validation split (every character after the first, by `scratchlm.evaluate.token_nats`), beside the
preset's own 20-batch estimate. The day's fp32 matrix-product rate is printed with the figures, since machines of
one kind differ from day to day.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from scratchlm.data import get_batch, load_splits
from scratchlm.evaluate import token_nats
from scratchlm.model import GPT
from scratchlm.pretraining.loop import peak_flops_per_device
from scratchlm.runtime import configure_threads
from scratchlm.training import TrainConfig, make_optimizer, preset, train, train_step

# Each row adds one change (by TrainConfig/GPTConfig field name) to the row above it.
ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("record", {}),
    ("+rope", {"pos_embedding": "rope"}),
    ("+rmsnorm", {"norm": "rmsnorm"}),
    ("+swiglu", {"mlp": "swiglu"}),
    ("+untied", {"tie_embeddings": False}),
    ("+qk-norm", {"qk_norm": True}),
    ("+muon", {"optimizer": "muon", "muon_lr": 0.01}),
)


def row_configs(names: list[str]) -> dict[str, TrainConfig]:
    """The TrainConfig of each named row: the cpu preset with the changes of every row up to it."""
    configs, changes = {}, {}
    for name, change in ROWS:
        changes = {**changes, **change}
        configs[name] = preset("cpu", progress=False, **changes)
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; rows: {', '.join(configs)}")
    return {n: configs[n] for n in names}


def step_seconds(configs: dict[str, TrainConfig], splits, steps: int) -> dict[str, float]:
    """Median seconds per training step of each config, one step of each in turn (after 5 warm-up steps)."""
    states = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        model = GPT(config.model.replace(vocab_size=splits.tokenizer.vocab_size))
        states[name] = (model, make_optimizer(model, config, torch.device("cpu")), config)
    times: dict[str, list[float]] = {name: [] for name in configs}
    generator = torch.Generator().manual_seed(0)
    for i in range(steps + 5):
        batch = get_batch(splits.train, 64, 12, generator=generator)
        for name, (model, optimizer, config) in states.items():
            start = time.perf_counter()
            train_step(model, optimizer, batch, lr=config.learning_rate, grad_clip=config.grad_clip)
            if i >= 5:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def run_row(config: TrainConfig, splits, seed: int) -> dict[str, Any]:
    """Train one row with `seed`; its train time, the preset's val estimate and the whole-split val loss."""
    start = time.perf_counter()
    result = train(config.replace(seed=seed), splits=splits)
    seconds = time.perf_counter() - start
    nats, _ = token_nats(result.model, splits.val)
    return {
        "steps": config.max_iters,
        "seconds": seconds,
        "val_estimate": result.metrics[-1]["val_loss"],
        "val_whole": nats.mean().item(),
        "params": sum(p.numel() for p in result.model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=[name for name, _ in ROWS], help="rows to run, in order")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337])
    parser.add_argument("--timing-steps", type=int, default=40, help="steps per row when timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here as well")
    args = parser.parse_args()

    configure_threads(args.threads)
    peak, source = peak_flops_per_device(torch.device("cpu"), None)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}"
    )
    print(f"today's fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s ({source})")
    splits = load_splits("tinyshakespeare", val_fraction=0.1)
    configs = row_configs(["record", *[r for r in args.rows if r != "record"]])
    per_step = step_seconds(configs, splits, args.timing_steps)
    record_steps = configs["record"].max_iters
    results = []
    for name, config in configs.items():
        if name not in args.rows:
            continue
        ratio = per_step[name] / per_step["record"]
        steps = round(record_steps / ratio)
        scaled = config.replace(
            max_iters=steps,
            warmup_iters=round(config.warmup_iters / ratio),
            eval_interval=steps,
        )
        for seed in args.seeds:
            row = {"row": name, "seed": seed, "step_ms": 1e3 * per_step[name], "step_ratio": ratio}
            row |= run_row(scaled, splits, seed)
            results.append(row)
            print(
                f"{name:10s} seed {seed}: {row['step_ms']:.1f} ms/step ({ratio:.2f}x record) -> {steps} steps, "
                f"{row['seconds']:.0f} s; val (whole split) {row['val_whole']:.4f}, "
                f"estimate {row['val_estimate']:.4f}, {row['params']:,} params",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "peak_gflops": peak / 1e9}
        args.json.write_text(json.dumps({"meta": meta, "rows": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
