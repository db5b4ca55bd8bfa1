"""`python -m scratchlm train`: train a GPT from a preset; every `TrainConfig` and `GPTConfig` field is a flag.

The flags are generated from the two dataclasses' field declarations (`scratchlm.options`): a new option is a
new field, nothing here changes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from scratchlm import checkpoint
from scratchlm.cli.args import add_threads_argument
from scratchlm.errors import CheckpointError, ScratchLMError
from scratchlm.files import folder_lock
from scratchlm.generation import generate
from scratchlm.model import GPTConfig
from scratchlm.options import add_arguments, given_options
from scratchlm.runtime import configure_threads, get_device, run_mode
from scratchlm.training import PRESETS, TrainConfig, prepare_run, preset, run_training

SAMPLE_CHARS = 300
DEFAULT_OUT = "out"
# the CPU speedrun's record (bench/speedrun.py, lesson 13): GPT-2's `cpu` recipe stays one --preset away
CPU_DEFAULT_PRESET = "cpu-modern"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPT on a text corpus (Tiny Shakespeare by default)",
        description=(
            "Train a GPT from a preset: 'smoke' (seconds, for tests), 'cpu' (the best GPT-2 recipe found for "
            "about 100 s on one CPU thread), 'cpu-modern' (lesson 13's block and Muon in the same time: the "
            "default on a CPU) or 'gpu' (the classic 6-layer character-level Shakespeare model). Flags "
            "override single fields. A checkpoint and metrics.jsonl are written to --out at every evaluation; "
            "a short sample is printed at the end. --resume continues the run in --out with its saved settings "
            "(flags given replace them, e.g. --max-iters to train longer)."
        ),
    )
    p.add_argument(
        "--preset",
        metavar="{" + ",".join(PRESETS) + "}",
        help=f"starting configuration (default: gpu on a CUDA or MPS device, else {CPU_DEFAULT_PRESET})",
    )
    add_threads_argument(p)
    cpu = preset(CPU_DEFAULT_PRESET)  # the defaults shown (--preset gpu, the default on a GPU, changes some)
    shown = f"defaults shown: the {CPU_DEFAULT_PRESET} preset's"
    add_arguments(p, GPTConfig, title=f"model ({shown})", defaults=cpu.model)
    add_arguments(p, TrainConfig, title=f"training ({shown})", defaults=cpu)
    p.set_defaults(func=run)


def config_from_args(
    args: argparse.Namespace, device: torch.device, saved: checkpoint.Checkpoint | None = None
) -> TrainConfig:
    """The preset named by --preset with the flags given applied. `--resume` without `--preset` starts from
    the run's own saved config (`saved`, the checkpoint already read) instead, so resuming needs only `--out`."""
    overrides = {**given_options(args, GPTConfig), **given_options(args, TrainConfig)}
    overrides.setdefault("out_dir", DEFAULT_OUT)
    if saved is not None and args.preset is None:
        return _saved_config(saved).replace(**overrides)
    name = args.preset or ("gpu" if run_mode(device) == "gpu" else CPU_DEFAULT_PRESET)
    return preset(name, **overrides)


def _departures(config: TrainConfig) -> str:
    """What the run changes from GPT-2's block and AdamW, for the banner: "RoPE, RMSNorm, ..., Muon; " or ""."""
    m = config.model
    words = [
        *(["RoPE"] if m.pos_embedding == "rope" else []),
        *(["RMSNorm"] if m.norm == "rmsnorm" else []),
        *({"swiglu": ["SwiGLU"], "relu2": ["ReLU²"]}.get(m.mlp, [])),
        *(["untied head"] if not m.tie_embeddings else []),
        *(["QK-norm"] if m.qk_norm else []),
        *(["no biases"] if not m.bias else []),
        *(["Muon"] if config.optimizer == "muon" else []),
    ]
    return f"{', '.join(words)}; " if words else ""


def _saved_config(saved: checkpoint.Checkpoint) -> TrainConfig:
    if "pretrain" in saved.extra:
        raise CheckpointError(
            f"{saved.path} was written by pretrain (a run on prepared shards): continue it with "
            f"`python -m scratchlm pretrain --resume --out {saved.path.parent}`"
        )
    if not isinstance(saved.config, dict):
        raise CheckpointError(f"{saved.path} holds no training config to resume from")
    try:
        return TrainConfig.from_dict(saved.config)
    except (TypeError, ScratchLMError) as e:
        raise CheckpointError(f"{saved.path}: its training config is not usable by this scratchlm ({e})") from None


def _start_ids(tokenizer) -> list[int]:
    try:
        ids = tokenizer.encode("\n")
    except ScratchLMError:
        ids = []
    return ids or [0]


def run(args: argparse.Namespace) -> int:
    device = get_device(args.device)  # once: the preset, the message and the run all use this one
    saved = None
    if args.resume:
        saved = checkpoint.load(Path(args.out_dir or DEFAULT_OUT) / checkpoint.FILENAME)
    config = config_from_args(args, device, saved)
    if saved is not None and saved.step >= config.max_iters:
        print(
            f"{saved.path.parent} holds a finished run (step {saved.step} of --max-iters {config.max_iters}): "
            "nothing to train; give a larger --max-iters to train it longer"
        )
        return 0
    threads = configure_threads(args.threads)
    run = prepare_run(config, checkpoint=saved, device=device)
    run.check_output()  # refusals come before the banner: a refused run says only why
    if run.out_dir is not None:
        with folder_lock(run.out_dir):  # another run in the folder is refused now, not after the banner
            pass
    m = config.model
    print(
        f"training on {device} ({threads} thread{'s' if threads != 1 else ''}): {m.n_layer} layers, {m.n_head} "
        f"heads, {m.n_embd} dims, block {m.block_size}, batch {config.batch_size}, {_departures(config)}"
        f"{config.max_iters} steps; checkpoints in {config.out_dir}/"
    )
    t0 = time.perf_counter()
    result = run_training(run)
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
