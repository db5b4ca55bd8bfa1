"""`python -m scratchlm`: one entry point, a subcommand per job.

Each subcommand lives in its own module with a `register(subparsers)` function that adds its parser and
sets `func` (called with the parsed arguments, returning an exit code). Errors the user can fix
(`ScratchLMError`), files the machine cannot read or write (`OSError`) and bad arguments end with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from scratchlm.errors import ScratchLMError


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on error; one line says more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from scratchlm.cli import chat, data, evaluate, ladder, prepare, pretrain, sample, sft, sweep, tokenizer, train

    parser = _Parser(
        prog="python -m scratchlm",
        description="Train, sample from and inspect the course's language models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (train, sample, tokenizer, data, sweep, prepare, pretrain, ladder, evaluate, sft, chat):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ScratchLMError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's side: a file that cannot be read or written, a full disk
        where = f": {e.filename}" if e.filename else ""
        print(f"{parser.prog} {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        detail = f": {e}" if str(e) else ""  # training says where its checkpoint is
        print(f"{parser.prog} {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
