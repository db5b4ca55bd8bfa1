"""`python -m scratchlm`: one entry point, a subcommand per job.

Each subcommand lives in its own module with a `register(subparsers)` function that adds its parser and
sets `func` (called with the parsed arguments, returning an exit code). Errors the user can fix
(`ScratchLMError`), files the machine cannot read or write (`OSError`) and bad arguments end with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import re
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


_SETTING = re.compile(r"(?<![\w/.-])([a-z][a-z0-9_]*)=(True|False|[^\s,;)]+)")
_NAME = re.compile(r"(?<![\w/.=-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w/.=-])")


def cli_words(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """`message` in the command line's words: the library names a setting as Python does (`resume=True`,
    `max_iters=500`, `out_dir`), which on the command line is a flag (`--resume`, `--max-iters 500`, `--out`).
    Only names that are flags of `command` change; everything else is left as it is."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.get(command)
    flags = {a.dest: a for a in (sub._actions if sub is not None else []) if a.option_strings}

    def setting(match: re.Match) -> str:
        action = flags.get(match.group(1))
        if action is None:
            return match.group(0)
        value = match.group(2)
        if isinstance(action, argparse.BooleanOptionalAction):
            return action.option_strings[0 if value == "True" else 1] if value in ("True", "False") else match.group(0)
        return f"{action.option_strings[0]} {value}"

    def name(match: re.Match) -> str:
        action = flags.get(match.group(1))
        return action.option_strings[0] if action is not None else match.group(0)

    return _NAME.sub(name, _SETTING.sub(setting, message))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ScratchLMError as e:
        print(f"{parser.prog} {args.command}: error: {cli_words(str(e), parser, args.command)}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's side: a file that cannot be read or written, a full disk
        where = f": {e.filename}" if e.filename else ""
        print(f"{parser.prog} {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        detail = f": {cli_words(str(e), parser, args.command)}" if str(e) else ""  # where its checkpoint is
        print(f"{parser.prog} {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
