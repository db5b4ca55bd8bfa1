"""Argument types shared by subcommands: they reject bad values with a one-line message."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_probability(text: str) -> float:
    """A number in (0, 1], such as the probability mass that top-p sampling keeps."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


THREADS_DEFAULTS = {
    "cpus": "one less than the CPUs, at most 8",
    "one": "1: the models are small",
}


def add_threads_argument(parser: argparse.ArgumentParser, default: str = "cpus", per: str = "") -> None:
    """--threads, described the same way by every command: the environment variable first, then the command's own
    default (`THREADS_DEFAULTS`: "cpus" or "one")."""
    from scratchlm.runtime import THREADS_ENV

    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"CPU threads{per} (default: {THREADS_ENV} if set, else {THREADS_DEFAULTS[default]})",
    )
