"""DDP on CPU processes (gloo): the step time, the share of it spent communicating, and repeated launches.

1. Step time. `torchrun --nproc_per_node=N` runs this file's worker: the `cpu` preset's model on Tiny Shakespeare
   character shards, micro-batch 12 per rank, DDP as `pretrain` uses it (`train_step(..., no_sync=ddp.no_sync)`).
   Steps alternate between the real step (gradients all-reduced by the last backward) and the same step with every
   backward inside `no_sync()` (the same computation, no communication); communication share = 1 - local / real.
   The all-reduce of one gradient-sized buffer is also timed alone. For reference, one process takes steps of the
   same global batch (12 x N sequences) in this launcher, on one thread.
2. Launches. `python -m torch.distributed.run --standalone --nproc_per_node=N -m scratchlm pretrain` (smoke preset,
   20 steps) is started --launches times, each with a timeout: every launch must finish, none may hang.

    python bench/ddp.py                         # 2 processes, 200 timed steps, 20 launches
    python bench/ddp.py --launches 0 --steps 100

Give each process one thread (SCRATCHLM_THREADS=1, set here for the workers) and as many free cores as processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scratchlm.model import GPT
from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.shards import ShardIndex, prepare
from scratchlm.training import PRESETS, autocast_for, make_optimizer, train_step

ROOT = Path(__file__).resolve().parents[1]


def _model_and_optimizer(index: ShardIndex):
    config = PRESETS["cpu"]
    torch.manual_seed(0)
    model = GPT(config.model_config(index.vocab_size))
    return config, model, make_optimizer(model, config, torch.device("cpu"))


def worker(data: str, steps: int) -> None:
    """One rank: time real and communication-free steps, alternating; rank 0 prints a JSON line."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    index = ShardIndex.open(data, verify=False)
    config, model, optimizer = _model_and_optimizer(index)
    ddp = DistributedDataParallel(model)
    loader = ShardLoader(index, "train", config.model.block_size, config.batch_size, rank=rank, world_size=world)
    autocast = autocast_for(torch.device("cpu"), "float32")

    def never_sync():
        return ddp.no_sync()

    times = {"real": [], "local": []}
    warm = max(5, steps // 10)
    for i in range(warm + steps):
        for mode in ("real", "local") if i % 2 else ("local", "real"):
            batches = [loader.next_batch()]
            dist.barrier()  # both ranks start the step together
            start = time.perf_counter()
            if mode == "real":
                train_step(ddp, optimizer, batches, lr=1e-3, grad_clip=1.0, autocast=autocast, no_sync=ddp.no_sync)
            else:
                with never_sync():
                    train_step(ddp, optimizer, batches, lr=1e-3, grad_clip=1.0, autocast=autocast, no_sync=ddp.no_sync)
            if i >= warm:
                times[mode].append(time.perf_counter() - start)
    flat = torch.zeros(sum(p.numel() for p in model.parameters()))
    reduce_times = []
    for _ in range(50):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(flat)
        reduce_times.append(time.perf_counter() - start)
    if rank == 0:
        real, local = statistics.median(times["real"]), statistics.median(times["local"])
        print(json.dumps({"world": world, "real_ms": 1000 * real, "local_ms": 1000 * local,
                          "comm_share": 1 - local / real, "allreduce_ms": 1000 * statistics.median(reduce_times[5:]),
                          "params": flat.numel(), "batch": config.batch_size}))  # fmt: skip
    dist.destroy_process_group()


def single_process(data: str, batch: int, steps: int) -> float:
    """Median ms per step of one process on one thread with a batch of `batch` sequences."""
    torch.set_num_threads(1)
    index = ShardIndex.open(data, verify=False)
    config, model, optimizer = _model_and_optimizer(index)
    loader = ShardLoader(index, "train", config.model.block_size, batch)
    times = []
    for i in range(steps + 10):
        batches = loader.next_batch()
        start = time.perf_counter()
        train_step(model, optimizer, batches, lr=1e-3, grad_clip=1.0)
        if i >= 10:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _env() -> dict[str, str]:
    env = dict(os.environ, SCRATCHLM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps of each kind (default 200)")
    parser.add_argument("--launches", type=int, default=20, help="repeated pretrain launches (default 20)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a launch counts as hung")
    parser.add_argument("--worker", metavar="DATA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.nproc} processes, 1 thread each")
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "shards")
        prepare("tinyshakespeare", "char", data, workers=1, progress=False)
        if args.steps:
            out = subprocess.run([*torchrun, __file__, "--worker", data, "--steps", str(args.steps)], env=_env(),
                                 capture_output=True, text=True, timeout=1800, check=True)  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            one = single_process(data, r["batch"] * args.nproc, args.steps)
            print(
                f"step time, cpu preset ({r['params'] / 1e6:.2f}M parameters), {r['batch']} sequences per rank: "
                f"{r['real_ms']:.2f} ms with DDP, {r['local_ms']:.2f} ms with the all-reduce skipped -> "
                f"communication share {r['comm_share']:.1%}; all-reduce of the gradients alone {r['allreduce_ms']:.2f}"
                f" ms; one process, batch {r['batch'] * args.nproc}: {one:.2f} ms/step ({one / r['real_ms']:.2f}x)"
            )
        durations, failures = [], []
        for i in range(args.launches):
            out_dir = Path(tmp) / f"run{i}"
            command = [*torchrun, "-m", "scratchlm", "pretrain", "--data", data, "--preset", "smoke",
                       "--max-iters", "20", "--eval-interval", "10", "--batch-size", "4", "--out", str(out_dir),
                       "--no-progress"]  # fmt: skip
            start = time.perf_counter()
            try:
                result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=args.timeout)
                ok = result.returncode == 0 and "step 20:" in result.stdout
                if not ok:
                    failures.append(f"launch {i}: exit {result.returncode}: {result.stderr[-500:]}")
            except subprocess.TimeoutExpired:
                failures.append(f"launch {i}: HUNG (no exit in {args.timeout:.0f} s)")
            durations.append(time.perf_counter() - start)
        if args.launches:
            print(
                f"{args.launches} launches of torchrun x {args.nproc} (pretrain, smoke preset, 20 steps): "
                f"{args.launches - len(failures)} finished, {len(failures)} failed or hung; wall time per launch "
                f"median {statistics.median(durations):.1f} s, max {max(durations):.1f} s"
            )
            for failure in failures:
                print("  " + failure)


if __name__ == "__main__":
    main()
