"""`python -m scratchlm eval`: a report card for a trained checkpoint (`scratchlm.evaluate.report`); for a
fine-tuned chat checkpoint, first its accuracy on the held-out task suite (`scratchlm.posttraining.scoring`)."""

from __future__ import annotations

import argparse
import json

from scratchlm import checkpoint
from scratchlm.cli.args import add_threads_argument, positive_int
from scratchlm.data import load_splits
from scratchlm.errors import ConfigError
from scratchlm.evaluate.report import EvalConfig, check_sizes, format_card, report_card, write_report
from scratchlm.files import atomic_write, output_folder
from scratchlm.options import add_arguments, given_options
from scratchlm.posttraining.chat import has_chat_tokens
from scratchlm.posttraining.scoring import task_accuracy
from scratchlm.posttraining.tasks import held_out_items
from scratchlm.runtime import configure_threads, get_device

DEFAULT_VAL_FRACTION = 0.1
TASKS_FILENAME = "tasks.json"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="report card of a trained checkpoint: bits per byte, calibration, cloze, induction, novelty",
        description=(
            "Evaluate a checkpoint written by 'train' on the held-out end of its data: bits per byte, the "
            "expected calibration error of its next-token probabilities, accuracy on a next-line cloze test "
            "(against chance and a bigram model), the induction score of its attention heads, and how much of "
            "its samples is new. Prints the card; writes report.json and plots (reliability, induction, "
            "attention) to --out."
        ),
    )
    p.add_argument(
        "--ckpt", metavar="PATH", default="out", help="checkpoint file, or the folder holding ckpt.pt (default: out/)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="folder for report.json and the plots (default: eval/ beside the checkpoint)"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    add_threads_argument(p)
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars (default: on)"
    )
    p.add_argument(
        "--task-items",
        type=positive_int,
        default=100,
        help="held-out items per skill for a chat checkpoint's task accuracy (default: 100, seed 0)",
    )
    add_arguments(p, EvalConfig, title="evaluation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = EvalConfig(**given_options(args, EvalConfig))  # bad flag values fail before anything is loaded
    threads = configure_threads(args.threads)
    device = get_device(args.device)
    saved = checkpoint.load(args.ckpt)
    if "pretrain" in saved.extra and config.data is None:
        raise ConfigError(
            f"{saved.path} was written by pretrain: its data is a folder of prepared shards, not a text; give "
            "--data NAME|PATH, the text to score it on"
        )
    model, tokenizer = saved.build_model(device), saved.build_tokenizer()
    check_sizes(config, model.config, tokenizer, device)  # before minutes of work
    trained_on = saved.config if isinstance(saved.config, dict) else {}
    if has_chat_tokens(tokenizer):
        folder = output_folder(args.out or saved.path.parent / "eval", "report folder")
        _task_report(model, tokenizer, args.task_items, folder)
        if config.data is None:
            print("(a chat checkpoint: give --data NAME|PATH for the report card of its held-out text too)")
            return 0
        trained_on = {}
    data = config.data or trained_on.get("data")
    if not isinstance(data, str) or not data:
        raise ConfigError(f"{saved.path} does not say which data it was trained on: give --data NAME|PATH")
    val_fraction = config.val_fraction or trained_on.get("val_fraction") or DEFAULT_VAL_FRACTION
    folder = output_folder(args.out or saved.path.parent / "eval", "report folder")  # before minutes of work
    splits = load_splits(data, tokenizer, val_fraction)
    m = model.config
    print(
        f"{saved.path} (step {saved.step}): {m.n_layer} layers, {m.n_head} heads, {m.n_embd} channels, block "
        f"{m.block_size}, {tokenizer.vocab_size} tokens; held-out: the last {val_fraction:g} of {data}; "
        f"{device}, {threads} threads",
        flush=True,
    )
    train_text, val_text = tokenizer.decode(splits.train.tolist()), tokenizer.decode(splits.val.tolist())
    card = report_card(model, tokenizer, train_text, val_text, config, progress=args.progress)
    card["checkpoint"] = {"path": str(saved.path), "step": saved.step, "data": data, "val_fraction": val_fraction}
    print(format_card(card))
    written = write_report(card, folder)
    print(f"wrote {', '.join(str(p) for p in written)} ({card['elapsed_s']:.0f} s)")
    return 0


def _task_report(model, tokenizer, n_per_skill: int, folder) -> None:
    """Print and write (tasks.json) the accuracy per skill, greedy and zero-shot, on the fixed held-out items."""
    scores = task_accuracy(model, tokenizer, held_out_items(n_per_skill))
    print(f"task accuracy, greedy, zero-shot, {n_per_skill} held-out items per skill (95% Wilson intervals):")
    for skill, accuracy in scores.items():
        print(f"  {skill:8s} {accuracy}")
    report = {
        skill: {"correct": a.correct, "total": a.total, "accuracy": a.rate, "interval_95": list(a.interval)}
        for skill, a in scores.items()
    }
    with atomic_write(folder / TASKS_FILENAME, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {folder / TASKS_FILENAME}")
