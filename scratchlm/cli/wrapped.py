"""Flags and configuration of the commands that wrap a training run around a starting checkpoint (`sft`, `rl`).

Their configs (`SFTConfig`, `RLConfig`: `scratchlm.posttraining.run_config.WrapsTrainConfig`) hold their own
fields, the checkpoint they start from, and a `TrainConfig` whose data fields the starting checkpoint decides.
"""

from __future__ import annotations

import argparse
from typing import Any

from scratchlm import checkpoint
from scratchlm.cli.args import add_threads_argument
from scratchlm.errors import CheckpointError, ScratchLMError
from scratchlm.options import add_arguments, given_options
from scratchlm.training import TrainConfig

NOT_TRAINING_FLAGS = ("data", "tokenizer", "val_fraction")  # the starting checkpoint and the command decide these


def add_wrapped_arguments(parser: argparse.ArgumentParser, config_class: type, title: str) -> None:
    """--threads, the flags of `config_class` under `title`, and the training flags that apply."""
    add_threads_argument(parser)
    add_arguments(parser, config_class, title=title)
    add_arguments(parser, TrainConfig, title="training", exclude=NOT_TRAINING_FLAGS)


def wrapped_config_from_args(
    args: argparse.Namespace,
    config_class: Any,
    start: str,
    train: TrainConfig,
    default_out: str,
    saved: checkpoint.Checkpoint | None,
    run_name: str,
) -> Any:
    """The command's defaults (`start`: the field naming the starting checkpoint, `train`: its TrainConfig) or,
    with --resume, the run's saved config (`saved`), with the flags given applied. `run_name` ("a fine-tuning
    run") names what a foreign or damaged checkpoint is not."""
    overrides = {**given_options(args, config_class), **given_options(args, TrainConfig, exclude=NOT_TRAINING_FLAGS)}
    overrides.setdefault("out_dir", default_out)
    if saved is None:
        origin = overrides.pop(start, None)
        return config_class(**{start: origin}, train=train.replace(out_dir=overrides["out_dir"])).replace(**overrides)
    if not isinstance(saved.config, dict):
        raise CheckpointError(f"{saved.path} holds no config of {run_name} to resume from")
    try:
        config = config_class.from_dict(saved.config)
    except (TypeError, AttributeError, ScratchLMError) as e:
        raise CheckpointError(f"{saved.path} is not {run_name} this scratchlm can resume ({e})") from None
    return config.replace(**overrides)
