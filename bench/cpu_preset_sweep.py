"""The sweep that chose the `cpu` preset: recipes for the wall-clock time of the usual small CPU recipe.

The reference recipe is `TrainConfig()`'s defaults (4 layers, 4 heads, 128 dims, block 64, batch 12, 2000 steps,
lr 1e-3 cosine to 1e-4): validation loss 1.89 in about 100 s on 2 cores. Each variant below changes a few
fields; narrower models get more steps, sized from their measured cost per step so that they fit the same time.

    python bench/cpu_preset_sweep.py                       # every variant, two at a time, one thread each
    python bench/cpu_preset_sweep.py reference "cpu preset"  # some of them
    python bench/cpu_preset_sweep.py --time reference "cpu preset"   # wall-clock, one after the other, all cores

Validation losses depend only on the steps taken (and, through floating-point summation order, a little on
the thread count), not on the machine's load, so the sweep runs two variants at a time on one thread each.
"val (run)" is `train`'s own estimate (20 batches); "val (200)" re-scores the final model on 200 batches of
12 x block_size from the validation split, the same batches for every variant with the same seed. Wall-clock
times need a quiet machine and the thread count a user gets: `--time`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import time

import torch

from scratchlm.runtime import configure_threads
from scratchlm.training import TrainConfig, evaluate, preset, train

# name -> TrainConfig fields changed from the reference recipe
VARIANTS: dict[str, dict] = {
    "reference": {},
    "lr 5e-3": dict(learning_rate=5e-3, min_lr=5e-4),
    "lr 8e-3": dict(learning_rate=8e-3, min_lr=8e-4),
    "lr 5e-3, betas (0.9, 0.95)": dict(learning_rate=5e-3, min_lr=5e-4, betas=(0.9, 0.95)),
    "lr 5e-3, no biases": dict(learning_rate=5e-3, min_lr=5e-4, bias=False),
    "lr 5e-3, no biases, more steps": dict(learning_rate=5e-3, min_lr=5e-4, bias=False, max_iters=2260),
    "lr 5e-3, RoPE": dict(learning_rate=5e-3, min_lr=5e-4, pos_embedding="rope", max_iters=1790),
    "96 dims, lr 5e-3": dict(n_embd=96, learning_rate=5e-3, min_lr=5e-4, max_iters=2800),
    "96 dims, lr 5e-3, no biases": dict(n_embd=96, learning_rate=5e-3, min_lr=5e-4, bias=False, max_iters=2800),
    "96 dims, lr 1e-2": dict(n_embd=96, learning_rate=1e-2, min_lr=1e-3, max_iters=2700, eval_interval=300),
    "64 dims, lr 5e-3": dict(n_embd=64, learning_rate=5e-3, min_lr=5e-4, max_iters=4800, eval_interval=400),
    "64 dims, lr 1e-2": dict(n_embd=64, learning_rate=1e-2, min_lr=1e-3, max_iters=4800, eval_interval=400),
    "64 dims, 6 layers, lr 5e-3": dict(
        n_embd=64, n_layer=6, learning_rate=5e-3, min_lr=5e-4, max_iters=3400, eval_interval=400
    ),
    "80 dims, lr 5e-3": dict(n_embd=80, learning_rate=5e-3, min_lr=5e-4, max_iters=4000, eval_interval=400),
    "80 dims, lr 7e-3": dict(n_embd=80, learning_rate=7e-3, min_lr=7e-4, max_iters=3300, eval_interval=330),
    "80 dims, lr 1e-2": dict(n_embd=80, learning_rate=1e-2, min_lr=1e-3, max_iters=3300, eval_interval=330),
    "80 dims, lr 1.5e-2": dict(n_embd=80, learning_rate=1.5e-2, min_lr=1.5e-3, max_iters=3300, eval_interval=330),
    "80 dims, 2 heads, lr 7e-3": dict(
        n_embd=80, n_head=2, learning_rate=7e-3, min_lr=7e-4, max_iters=3300, eval_interval=330
    ),
    "80 dims, lr 7e-3, no weight decay": dict(
        n_embd=80, learning_rate=7e-3, min_lr=7e-4, weight_decay=0.0, max_iters=3300, eval_interval=330
    ),
    "80 dims, lr 7e-3 to 0": dict(n_embd=80, learning_rate=7e-3, min_lr=0.0, max_iters=3300, eval_interval=330),
    "80 dims, lr 1e-2 to 0": dict(n_embd=80, learning_rate=1e-2, min_lr=0.0, max_iters=3300, eval_interval=330),
    "80 dims, lr 7e-3 to 0, 3500 steps": ("cpu", dict(warmup_iters=100)),
    "80 dims, lr 7e-3 to 0, 3500 steps, seed 1338": ("cpu", dict(warmup_iters=100, seed=1338)),
    "80 dims, lr 7e-3 to 0, 3500 steps, seed 1339": ("cpu", dict(warmup_iters=100, seed=1339)),
    "80 dims, lr 5e-3 to 0, 3500 steps": ("cpu", dict(learning_rate=5e-3, warmup_iters=100)),
    "80 dims, lr 5e-3 to 0, 3500 steps, seed 1338": ("cpu", dict(learning_rate=5e-3, warmup_iters=100, seed=1338)),
    "80 dims, lr 5e-3 to 0, 3500 steps, seed 1339": ("cpu", dict(learning_rate=5e-3, warmup_iters=100, seed=1339)),
    "cpu preset": "cpu",  # 80 dims, lr 7e-3 to 0, 3500 steps, warmup 300
    "cpu preset, seed 1338": ("cpu", dict(seed=1338)),
    "cpu preset, seed 1339": ("cpu", dict(seed=1339)),
    "reference, seed 1338": dict(seed=1338),
    "reference, seed 1339": dict(seed=1339),
}
VAL_BATCHES = 200


def config_of(name: str) -> TrainConfig:
    spec = VARIANTS[name]
    if spec == "cpu":
        return preset("cpu", progress=False)
    if isinstance(spec, tuple):
        return preset(spec[0], progress=False, **spec[1])
    return TrainConfig(progress=False).replace(**spec)


def run_variant(name: str, threads: int | None = 1) -> dict:
    configure_threads(threads)
    config = config_of(name)
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    scoring = dataclasses.replace(config, eval_iters=VAL_BATCHES, batch_size=12)
    val = evaluate(result.model, {"val": result.splits.val}, scoring, torch.device("cpu"))
    curve = " ".join(f"{m['step']}:{m['val_loss']:.3f}" for m in result.metrics[1:])
    return dict(
        name=name,
        steps=config.max_iters,
        val_run=result.final_val_loss,
        val_200=val["val"],
        seconds=seconds,
        threads=torch.get_num_threads(),
        curve=curve,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"variants to run (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="variants run at once, one thread each (default 2)")
    parser.add_argument("--time", action="store_true", help="one after the other, all cores: the wall-clock")
    parser.add_argument("--json", help="append each result to this JSON-lines file")
    args = parser.parse_args()
    names = args.names or list(VARIANTS)
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")

    with contextlib.ExitStack() as stack:
        if args.time:
            results = (run_variant(name, threads=None) for name in names)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(args.jobs))
            results = pool.imap(run_variant, names)
        print(f"| variant | steps | val (run) | val ({VAL_BATCHES}) | train() wall s | threads |")
        print("|---|---|---|---|---|---|")
        for r in results:
            report(r, args.json)


def report(r: dict, json_path: str | None) -> None:
    print(
        f"| {r['name']} | {r['steps']} | {r['val_run']:.3f} | {r['val_200']:.3f} | {r['seconds']:.1f} "
        f"| {r['threads']} |",
        flush=True,
    )
    if json_path:
        with open(json_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
