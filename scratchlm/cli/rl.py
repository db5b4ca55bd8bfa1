"""`python -m scratchlm rl`: GRPO or DPO from an SFT checkpoint, with `train`'s run rules.

A checkpoint and metrics.jsonl (batch_reward: the last batch's mean reward, val_accuracy: held-out greedy accuracy)
in --out at every evaluation, rl_steps.jsonl with each step's reward, accuracy, KL, answer length and tokens/s; an
--out that holds a run refused unless --resume or --overwrite; Ctrl-C saves first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchlm import checkpoint
from scratchlm.cli.wrapped import add_wrapped_arguments, wrapped_config_from_args
from scratchlm.posttraining.rl import RL_TRAIN, RLConfig, prepare_rl
from scratchlm.runtime import configure_threads, get_device
from scratchlm.training import run_training

DEFAULT_OUT = "out/rl"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rl",
        help="GRPO or DPO on the task suite's verifiable rewards, from an SFT checkpoint",
        description=(
            "Reinforcement learning from verifiable rewards: the SFT model samples k answers per training item, "
            "the task verifiers score them, and the policy is updated by GRPO (group-relative advantages, clipped "
            "ratio, k3 KL to the SFT model) or DPO (a correct answer preferred over a wrong one)."
        ),
    )
    add_wrapped_arguments(p, RLConfig, title="reinforcement learning")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, saved: checkpoint.Checkpoint | None = None) -> RLConfig:
    """RL's defaults (or, with --resume, the run's saved config) with the flags given applied."""
    return wrapped_config_from_args(args, RLConfig, "sft", RL_TRAIN, DEFAULT_OUT, saved, "an RL run")


def run(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    saved = checkpoint.load(Path(args.out_dir or DEFAULT_OUT) / checkpoint.FILENAME) if args.resume else None
    config = config_from_args(args, saved)
    threads = configure_threads(args.threads)
    run_ = prepare_rl(config, checkpoint=saved, device=device)
    print(
        f"{config.method} from {config.sft}: {config.items} items x {config.k} answers per batch, {config.updates} "
        f"updates each, {config.train.max_iters} steps on {device} ({threads} threads); out {config.train.out_dir}/"
    )
    result = run_training(run_)
    for s in run_.step_stats[-3:]:
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()))
    if result.metrics:
        last = result.metrics[-1]
        print(f"held-out greedy accuracy at step {last['step']}: {last['val_accuracy']:.1%}")
    print(f"checkpoint: {result.checkpoint_path}")
    return 0
