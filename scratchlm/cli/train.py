"""`python -m scratchlm train`: train a GPT from a preset, with a few sizes overridable from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from scratchlm import checkpoint
from scratchlm.cli.args import non_negative_float, positive_int
from scratchlm.errors import CheckpointError, ScratchLMError
from scratchlm.generation import generate
from scratchlm.runtime import configure_threads, get_device
from scratchlm.training import PRESETS, TrainConfig, preset, train

SAMPLE_CHARS = 300

# command-line flag -> TrainConfig field
OVERRIDES = {
    "max_iters": "max_iters",
    "batch_size": "batch_size",
    "block_size": "block_size",
    "n_layer": "n_layer",
    "n_head": "n_head",
    "n_embd": "n_embd",
    "pos_embedding": "pos_embedding",
    "n_kv_head": "n_kv_head",
    "lr": "learning_rate",
    "min_lr": "min_lr",
    "dropout": "dropout",
    "eval_interval": "eval_interval",
    "eval_iters": "eval_iters",
    "grad_accum_steps": "grad_accum_steps",
    "data": "data",
    "tokenizer": "tokenizer",
    "device": "device",
    "seed": "seed",
    "dtype": "dtype",
}


def _positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPT on a text corpus (Tiny Shakespeare by default)",
        description=(
            "Train a GPT from a preset: 'smoke' (seconds, for tests), 'cpu' (the best recipe found for about "
            "100 s on 2 CPU cores) or 'gpu' (the classic 6-layer character-level Shakespeare model). Flags "
            "override single fields. A checkpoint and metrics.jsonl are written to --out at every evaluation; "
            "a short sample is printed at the end."
        ),
    )
    p.add_argument(
        "--preset",
        metavar="{" + ",".join(PRESETS) + "}",
        help="starting configuration (default: gpu when CUDA is available, else cpu)",
    )
    p.add_argument("--max-iters", type=positive_int, help="optimizer steps to train for")
    p.add_argument("--batch-size", type=positive_int, help="sequences per micro-batch")
    p.add_argument("--grad-accum-steps", type=positive_int, help="micro-batches per optimizer step")
    p.add_argument("--block-size", type=positive_int, help="context length in tokens")
    p.add_argument("--n-layer", type=positive_int, help="number of transformer blocks")
    p.add_argument("--n-head", type=positive_int, help="attention heads per block (must divide --n-embd)")
    p.add_argument("--n-embd", type=positive_int, help="width of the residual stream")
    p.add_argument(
        "--pos-embedding",
        choices=("learned", "rope"),
        help="position encoding: learned absolute embeddings (GPT-2, the default) or rotary (RoPE)",
    )
    p.add_argument(
        "--n-kv-head",
        type=positive_int,
        metavar="N",
        help="key/value heads for grouped-query attention (must divide --n-head; default: --n-head, 1 = MQA)",
    )
    p.add_argument("--lr", type=_positive_float, help="peak learning rate")
    p.add_argument("--min-lr", type=non_negative_float, help="learning rate at the end of the cosine decay")
    p.add_argument("--dropout", type=non_negative_float, help="dropout probability in [0, 1)")
    p.add_argument("--eval-interval", type=positive_int, help="steps between evaluations and checkpoints")
    p.add_argument("--eval-iters", type=positive_int, help="batches per loss estimate")
    p.add_argument("--data", help="registered data name or path to a UTF-8 text file (default: tinyshakespeare)")
    p.add_argument(
        "--tokenizer", metavar="PATH", help="saved tokenizer file (default: a character tokenizer built from the data)"
    )
    p.add_argument("--out", metavar="DIR", default="out", help="where checkpoints and metrics go (default: out/)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint is in --out (its saved settings, unless --preset is given)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.add_argument("--dtype", help="auto (default: bfloat16 autocast on capable GPUs), float32 or bfloat16")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores, at most 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by --preset with the flags given applied. `--resume` without `--preset` starts from
    the run's own saved config instead, so resuming needs only `--out` (and `--max-iters` to train longer)."""
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None}
    run_flags = dict(out_dir=args.out, resume=args.resume, compile=args.compile, progress=not args.no_progress)
    if args.resume and args.preset is None:
        return dataclasses.replace(_saved_config(args.out), **overrides, **run_flags)
    name = args.preset
    if name is None:
        name = "gpu" if get_device(args.device).type == "cuda" else "cpu"
    return preset(name, **overrides, **run_flags)


def _saved_config(out_dir: str) -> TrainConfig:
    saved = checkpoint.load(Path(out_dir) / checkpoint.FILENAME).config
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(saved, dict) or not set(saved) <= fields:
        raise CheckpointError(f"{out_dir}: its checkpoint holds no training config this scratchlm can resume from")
    return TrainConfig(**saved)


def _start_ids(tokenizer) -> list[int]:
    try:
        ids = tokenizer.encode("\n")
    except ScratchLMError:
        ids = []
    return ids or [0]


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    threads = configure_threads(args.threads)
    device = get_device(config.device)
    print(
        f"training on {device} ({threads} threads): {config.n_layer} layers, {config.n_head} heads, "
        f"{config.n_embd} dims, block {config.block_size}, batch {config.batch_size}, {config.max_iters} steps; "
        f"checkpoints in {config.out_dir}/"
    )
    t0 = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - t0
    if result.metrics:
        last = result.metrics[-1]
        print(
            f"step {last['step']}: train loss {last['train_loss']:.4f}, val loss {last['val_loss']:.4f} "
            f"({elapsed:.1f} s, {result.model.num_parameters() / 1e6:.2f}M parameters)"
        )
    if result.checkpoint_path is not None:
        print(f"checkpoint: {result.checkpoint_path}")
    start = torch.tensor([_start_ids(result.tokenizer)], dtype=torch.long)
    out = generate(result.model, start, max_new_tokens=SAMPLE_CHARS, seed=config.seed)
    text = result.tokenizer.decode(out[0].tolist())
    print("sample:\n" + text[:SAMPLE_CHARS])
    return 0
