"""`python -m scratchlm pretrain`: pretrain a GPT on prepared shards, in one process or with DDP under torchrun.

    python -m scratchlm pretrain --data runs/stdlib-bpe --out runs/pt                          # one process
    torchrun --standalone --nproc_per_node=2 -m scratchlm pretrain --data runs/stdlib-bpe ...  # DDP, one node

Every `TrainConfig`, `GPTConfig` and `PretrainConfig` field is a flag (`scratchlm.options`). The tokenizer and the
validation split come from the prepared folder, so --tokenizer and --val-fraction are refused here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from scratchlm import checkpoint
from scratchlm.cli.args import add_threads_argument
from scratchlm.errors import CheckpointError, ConfigError, ScratchLMError
from scratchlm.model import GPTConfig
from scratchlm.options import add_arguments, given_options
from scratchlm.pretraining.config import PretrainConfig
from scratchlm.pretraining.loop import launched_by_torchrun, pretrain
from scratchlm.runtime import configure_threads, get_device, run_mode
from scratchlm.training import PRESETS, TrainConfig, preset

DEFAULT_OUT = "runs/pretrain"
_NOT_HERE = ("tokenizer", "val_fraction")  # decided by prepare


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a GPT on shards made by prepare; under torchrun, with DDP",
        description=(
            "Pretrain a GPT on a folder made by `prepare` (--data DIR): gradient accumulation to --batch-tokens per "
            "step, bfloat16 autocast where supported (--dtype), torch.compile (--compile; on by default on CUDA), "
            "warmup + cosine or warmup-stable-decay, evaluation every --eval-interval steps (val loss, bits per "
            "byte, samples), tokens/s and MFU in the progress bar, a checkpoint with the loader's position in --out "
            "(--resume continues exactly). Launched by torchrun, every process trains one DDP rank (NCCL on CUDA, "
            "gloo on CPU) and rank 0 alone logs and saves."
        ),
    )
    p.add_argument(
        "--preset",
        metavar="{" + ",".join(PRESETS) + "}",
        help="starting configuration of model and optimiser (default: gpu on a CUDA or MPS device, else cpu)",
    )
    add_threads_argument(p, per=" per process")
    cpu = preset("cpu")  # the defaults shown: the cpu preset's (--preset gpu, the default on a GPU, changes some)
    add_arguments(p, GPTConfig, title="model (defaults shown: the cpu preset's)", defaults=cpu.model)
    add_arguments(p, TrainConfig, title="training (defaults shown: the cpu preset's)", defaults=cpu)
    add_arguments(p, PretrainConfig, title="pretraining")
    p.set_defaults(func=run)


def config_from_args(
    args: argparse.Namespace, device: torch.device, saved: checkpoint.Checkpoint | None = None
) -> PretrainConfig:
    """The preset with the flags given applied; `--resume` without `--preset` starts from the saved run's config."""
    train_flags = {**given_options(args, GPTConfig), **given_options(args, TrainConfig)}
    if refused := [name for name in _NOT_HERE if name in train_flags]:
        flags = ", ".join("--" + n.replace("_", "-") for n in refused)
        raise ConfigError(f"pretrain takes {flags} from the prepared folder's index: set them when you run prepare")
    own = given_options(args, PretrainConfig)
    train_flags.setdefault("out_dir", DEFAULT_OUT)
    if saved is not None and args.preset is None:
        if not isinstance(saved.config, dict) or "pretrain" not in saved.extra:
            raise CheckpointError(f"{saved.path} was not written by pretrain: it holds no pretraining config")
        try:
            base = PretrainConfig.from_dicts(saved.config, saved.extra["pretrain"])
        except (TypeError, ScratchLMError) as e:
            raise CheckpointError(f"{saved.path}: its config is not usable by this scratchlm ({e})") from None
        return base.replace(**train_flags, **own)
    if "data" not in train_flags:
        raise ConfigError("pretrain needs --data DIR, a folder made by `python -m scratchlm prepare`")
    if "compile" not in train_flags:
        train_flags["compile"] = device.type == "cuda"  # opt-in on CPU, where compiling costs more than it saves
    name = args.preset or ("gpu" if run_mode(device) == "gpu" else "cpu")
    return PretrainConfig(train=preset(name, **train_flags), **own)


def _stop_on_sigterm() -> None:
    """When torchrun stops this rank (SIGTERM: another rank failed, or the launcher was stopped), print one line and
    exit at once. A Python signal handler would run only when the main thread next runs Python code, and a rank
    waiting inside a collective or the rendezvous is in C++ until its timeout: torchrun would wait its 30 s grace
    period and then kill it. So SIGTERM is blocked in every thread and a small thread waits for it instead."""
    rank = os.environ.get("RANK", "?")

    def wait() -> None:
        signal.sigwait({signal.SIGTERM})
        print(
            f"python -m scratchlm pretrain: rank {rank} was stopped by torchrun (SIGTERM): another rank failed or the "
            "launcher was stopped; see that rank's error",
            file=sys.stderr,
            flush=True,
        )
        os._exit(143)

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started from now on inherit the mask
    threading.Thread(target=wait, name="sigterm", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    rank = int(os.environ.get("RANK", 0))
    if launched_by_torchrun() and hasattr(signal, "pthread_sigmask"):
        _stop_on_sigterm()
    saved = None
    if args.resume:
        saved = checkpoint.load(Path(args.out_dir or DEFAULT_OUT) / checkpoint.FILENAME)
    config = config_from_args(args, device, saved)
    world = int(os.environ.get("WORLD_SIZE", 1))
    config.accumulation(world)  # on every rank, before any waits for the others: a bad batch ends them all at once
    threads = configure_threads(args.threads)
    c, m = config.train, config.train.model
    if rank == 0:
        print(
            f"pretraining on {device} x {world} process(es) ({threads} threads each): {m.n_layer} layers, "
            f"{m.n_head} heads, {m.n_embd} dims, block {m.block_size}; micro-batch {c.batch_size}, "
            f"{config.accumulation(world)} micro-batch(es) per step, {config.tokens_per_step(world):,} tokens per "
            f"step, {c.max_iters} steps; data {c.data}; checkpoints in {c.out_dir}/",
            flush=True,
        )
    t0 = time.perf_counter()
    result = pretrain(config, device=device)
    if rank == 0 and result.metrics:
        last = result.metrics[-1]
        mfu = f", MFU {last['mfu']:.1%}" if last.get("mfu") is not None else ""
        print(
            f"step {last['step']}: val loss {last['val_loss']:.4f}, {last['val_bpb']:.3f} bits/byte, "
            f"{last['tokens_per_s']:,.0f} tokens/s{mfu} ({time.perf_counter() - t0:.1f} s, "
            f"{result.model.num_parameters() / 1e6:.2f}M parameters)"
        )
        if result.checkpoint_path is not None:
            print(f"checkpoint: {result.checkpoint_path}")
    return 0
