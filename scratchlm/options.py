"""Declaring a configuration option once: its default, its help text and the values it accepts.

A config dataclass declares each field with `option(...)`. From that one declaration come the field's
validation (`check_options`, called from the dataclass's `__post_init__`, so a bad value fails where the config
is made, with a message naming the field) and its command-line flag (`add_arguments`: `n_layer` becomes
`--n-layer`, a bool becomes `--bias/--no-bias`, the help text is the field's; the flag converts the text,
and the config made from it checks the value). A new field is one line;
nothing else has to learn about it, so nothing can drift.

    @dataclass(frozen=True)
    class Config:
        n_layer: int = option(4, "number of transformer blocks", POSITIVE_INT)

Rules say which values a field accepts. Checks that involve two fields (n_embd divisible by n_head) stay in
`__post_init__`, after `check_options`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scratchlm.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """The values a field accepts: `accepts(value)` decides, `describe` completes "must be ..." in errors."""

    describe: str
    accepts: Callable[[Any], bool]
    numeric: bool = False  # a non-number (or NaN) is reported as "must be a number" before the range
    choices: tuple[str, ...] | None = None  # the whole set of values, when it is a short list (a flag's choices)

    def check(self, name: str, value: Any) -> None:
        if self.numeric and not is_number(value):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not self.accepts(value):
            raise ConfigError(f"{name} must be {self.describe}, got {value!r}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


POSITIVE_INT = Rule("a positive integer", lambda v: is_int(v) and v > 0)
NON_NEGATIVE_INT = Rule("a non-negative integer", lambda v: is_int(v) and v >= 0)
BOOL = Rule("True or False", lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v))


def number(describe: str, accepts: Callable[[float], bool]) -> Rule:
    """A real number (not NaN, not a bool) for which `accepts` holds, e.g. number("in [0, 1)", lambda v: 0 <= v < 1)."""
    return Rule(describe, accepts, numeric=True)


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(choices)}", lambda v: v in choices, choices=choices)


def optional(rule: Rule, mention_none: bool = True) -> Rule:
    """`rule`, or None (`mention_none=False`: None is an internal "not set yet", not named in the error)."""

    def accepts(value: Any) -> bool:
        return value is None or ((is_number(value) or not rule.numeric) and rule.accepts(value))

    return Rule(f"{rule.describe} or None" if mention_none else rule.describe, accepts)


def option(default: Any = dataclasses.MISSING, help: str = "", rule: Rule | None = None, *,
           flags: Sequence[str] = (), cli: bool = True, metavar: str | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:  # fmt: skip
    """A dataclass field with its help text and rule. `flags`: extra spellings of the command-line flag
    (`--lr` beside `--learning-rate`); `cli=False` keeps the field off the command line."""
    metadata = {"help": help, "rule": rule, "flags": tuple(flags), "cli": cli, "metavar": metavar}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def check_options(config: Any) -> None:
    """Validate every field of a dataclass instance against its rule. Paths (os.PathLike) in str fields
    become plain strings first, so a config always saves as plain data."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
            object.__setattr__(config, f.name, value)
        rule = f.metadata.get("rule")
        if rule is not None:
            rule.check(f.name, value)


def _base_type(annotation: Any) -> Any:
    """The type a flag parses to: `int` for `int` and for `int | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _parse(kind: Any) -> Callable[[str], Any]:
    """An argparse type that only converts the text; the field's rule is checked where the config is made,
    the one place that validates it."""

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None

    return parse


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each field of dataclass `cls` that has a command-line flag."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    title: str | None = None,
    exclude: Sequence[str] = (),
    defaults: Any = None,
) -> None:
    """Add a flag for every command-line field of dataclass `cls` but those named in `exclude` (a command
    whose own option takes that name). Flags default to None ("not given"), so `given_options` can tell what
    the user set from what a preset or a saved run should decide; the help shows the value that then applies,
    read from `defaults` (default: `cls()`, when every field has a default), unless it says its default itself."""
    if defaults is None:
        try:
            defaults = cls()
        except (TypeError, ValueError):  # a required field, or defaults that are not valid alone (ConfigError)
            defaults = None
    group = parser.add_argument_group(title) if title else parser
    for f, annotation in option_fields(cls):
        if f.name in exclude:
            continue
        names = [*f.metadata["flags"], f"--{f.name.replace('_', '-')}"]  # a short spelling shows first
        kind = _base_type(annotation)
        common = dict(
            dest=f.name, default=None, help=_with_default(f.metadata["help"], getattr(defaults, f.name, None))
        )
        if kind is bool:
            group.add_argument(*names, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(kind) is tuple:  # a fixed-length tuple of numbers (AdamW's betas)
            items = typing.get_args(kind)
            group.add_argument(*names, type=_parse(items[0]), nargs=len(items), metavar=f.metadata["metavar"], **common)
        else:
            rule = f.metadata["rule"]
            choices = rule.choices if rule is not None else None
            parse = str if kind is str else _parse(kind)
            group.add_argument(*names, type=parse, choices=choices, metavar=f.metadata["metavar"], **common)


def _with_default(help: str, value: Any) -> str:
    """`help` with "(default: VALUE)" appended, unless the value is None or the text already names its default."""
    if value is None or "default" in help:
        return help
    if isinstance(value, bool):
        shown = "on" if value else "off"
    elif isinstance(value, tuple):
        shown = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    return f"{help} (default: {shown})".replace("%", "%%")


def given_options(args: argparse.Namespace, cls: type, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of `cls` (but those in `exclude`) whose flags were given on the command line, as {field: value}."""
    values = {}
    for f, _ in option_fields(cls):
        if f.name in exclude:
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values
