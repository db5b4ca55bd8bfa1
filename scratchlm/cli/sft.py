"""`python -m scratchlm sft`: fine-tune a base checkpoint on conversations (the task suite or a JSONL file).

The run follows `train`'s rules: a checkpoint and metrics.jsonl in --out at every evaluation, an --out that holds a
run refused unless --resume (continue it, with its saved settings and the flags given) or --overwrite, Ctrl-C saves
first. Every `SFTConfig` field and `TrainConfig`'s optimisation, output and system fields are flags.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scratchlm import checkpoint
from scratchlm.cli.wrapped import add_wrapped_arguments, wrapped_config_from_args
from scratchlm.posttraining.scoring import answer
from scratchlm.posttraining.sft import SFT_TRAIN, SFTConfig, count_trainable, prepare_sft
from scratchlm.posttraining.tasks import SKILLS, held_out_items
from scratchlm.runtime import configure_threads, get_device
from scratchlm.training import run_training

DEFAULT_OUT = "out/sft"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sft",
        help="fine-tune a base checkpoint into an assistant (chat format, full or LoRA)",
        description=(
            "Supervised fine-tuning: the base checkpoint's tokenizer gains the chat tokens (its embedding grows by "
            "as many rows) and the model learns to answer conversations, the generated task suite (--data tasks) or "
            'a JSONL file of {"messages": [{"role": ..., "content": ...}]}, the loss on assistant tokens only. '
            "--lora-rank R trains low-rank adapters (merged into the saved weights) instead of every weight."
        ),
    )
    add_wrapped_arguments(p, SFTConfig, title="fine-tuning")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, saved: checkpoint.Checkpoint | None = None) -> SFTConfig:
    """SFT's defaults (or, with --resume, the run's saved config) with the flags given applied."""
    return wrapped_config_from_args(args, SFTConfig, "base", SFT_TRAIN, DEFAULT_OUT, saved, "a fine-tuning run")


def run(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    saved = None
    if args.resume:
        saved = checkpoint.load(Path(args.out_dir or DEFAULT_OUT) / checkpoint.FILENAME)
    config = config_from_args(args, saved)
    threads = configure_threads(args.threads)
    run_, added = prepare_sft(config, checkpoint=saved, device=device)
    m, tokenizer = run_.model.config, run_.tokenizer
    total = sum(p.numel() for p in run_.model.parameters())
    if added:
        print(f"added the chat tokens: vocabulary {m.vocab_size - added} -> {m.vocab_size} ids, embedding and tied "
              f"head grown by {added} rows of {m.n_embd} ({added * m.n_embd:,} parameters)")  # fmt: skip
    kind = f"LoRA rank {config.lora_rank}" if config.lora else "full fine-tuning"
    trainable = count_trainable(run_)
    print(
        f"fine-tuning {config.base if saved is None else saved.path} on {config.data} ({kind}: {trainable:,} of "
        f"{total:,} parameters train, {trainable / total:.1%}); {len(run_.data.train):,} conversations, "
        f"{'packed' if config.packing else 'padded'}, batch {config.train.batch_size}, {config.train.max_iters} "
        f"steps on {device} ({threads} threads); checkpoints in {config.train.out_dir}/"
    )
    t0 = time.perf_counter()
    result = run_training(run_)
    if result.metrics:
        last = result.metrics[-1]
        print(
            f"step {last['step']}: loss on assistant tokens {last['train_loss']:.4f} (train), "
            f"{last['val_loss']:.4f} (held out) ({time.perf_counter() - t0:.1f} s)"
        )
    print(f"checkpoint: {result.checkpoint_path}")
    items = held_out_items(1, skills=tuple(SKILLS))
    for item, reply in zip(items, answer(run_.model, tokenizer, items), strict=True):
        print(f"  {item.question} -> {reply!r} ({'right' if item.verify(reply) else f'expected {item.answer!r}'})")
    return 0
