"""The shard loader's share of a training step at the cpu configuration: how much of `pretrain`'s time goes to
reading windows from memory-mapped shards (goal: under 2 %).

Each step reads a batch with `ShardLoader.next_batch` and trains on it with `train_step` (the calls `pretrain`
makes, one process, no DDP), on the `cpu` preset's model (4 layers, 80 dims, block 64, batch 12). Two corpora:
Tiny Shakespeare in characters (vocabulary 65: the cheapest step, so the loader's largest share) and the standard
library in GPT-2's r50k_base (vocabulary 50,257). The shards are prepared in a temporary folder first (or taken
from --shards). For comparison, the in-memory `get_batch` of `train` on the same tokens.

    python bench/pretrain_loader.py                 # 300 steps per corpus
    python bench/pretrain_loader.py --steps 100 --corpora tinyshakespeare
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scratchlm.data import get_batch
from scratchlm.model import GPT
from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.shards import prepare
from scratchlm.runtime import configure_threads
from scratchlm.training import PRESETS, autocast_for, make_optimizer, train_step

TOKENIZERS = {"tinyshakespeare": "char", "python-stdlib": "r50k_base"}


def measure(index, steps: int) -> dict[str, float]:
    config = PRESETS["cpu"]
    model_config = config.model_config(index.vocab_size)
    torch.manual_seed(0)
    model = GPT(model_config)
    optimizer = make_optimizer(model, config, torch.device("cpu"))
    loader = ShardLoader(index, "train", model_config.block_size, config.batch_size, seed=0)
    memory = torch.from_numpy(index.read("train").astype("int64"))
    generator = torch.Generator().manual_seed(0)
    autocast = autocast_for(torch.device("cpu"), "float32")
    load_times, step_times, memory_times = [], [], []
    warm = steps // 10
    for i in range(steps):
        t0 = time.perf_counter()
        x, y = loader.next_batch()
        t1 = time.perf_counter()
        train_step(model, optimizer, (x, y), lr=1e-3, grad_clip=1.0, autocast=autocast)
        t2 = time.perf_counter()
        get_batch(memory, model_config.block_size, config.batch_size, generator)
        t3 = time.perf_counter()
        if i >= warm:
            load_times.append(t1 - t0)
            step_times.append(t2 - t0)
            memory_times.append(t3 - t2)
    return {
        "load_ms": 1000 * statistics.mean(load_times),
        "step_ms": 1000 * statistics.mean(step_times),
        "share": sum(load_times) / sum(step_times),
        "memory_ms": 1000 * statistics.mean(memory_times),
        "params": model.num_parameters() / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps per corpus (default 300)")
    parser.add_argument("--corpora", nargs="+", default=list(TOKENIZERS), choices=list(TOKENIZERS))
    parser.add_argument("--threads", type=int, help="CPU threads (default: SCRATCHLM_THREADS, else CPUs - 1)")
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"{threads} thread(s), load average {load:.2f}; cpu preset model, batch 12 x block 64; {args.steps} steps")
    print(f"{'corpus':>16} {'tokenizer':>10} {'params':>8} {'loader ms':>10} {'step ms':>9} {'loader share':>13} "
          f"{'get_batch ms':>13}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in args.corpora:
            index, _ = prepare(corpus, TOKENIZERS[corpus], Path(tmp) / corpus, progress=False, workers=1)
            r = measure(index, args.steps)
            print(f"{corpus:>16} {TOKENIZERS[corpus]:>10} {r['params']:7.2f}M {r['load_ms']:10.3f} {r['step_ms']:9.2f} "
                  f"{r['share']:12.2%} {r['memory_ms']:13.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
