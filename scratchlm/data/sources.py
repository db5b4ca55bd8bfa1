"""Texts by name or by path: a registered file (fetched and verified by `scratchlm.downloads`) or any UTF-8
text file."""

from __future__ import annotations

from pathlib import Path

from scratchlm.downloads import REGISTRY, fetch
from scratchlm.errors import DataError


def load_text(name_or_path: str | Path = "tinyshakespeare") -> str:
    """Read a registered file by name, or any UTF-8 text file by path."""
    path = Path(name_or_path)
    if str(name_or_path) in REGISTRY and not path.exists():
        path = fetch(str(name_or_path))
    if not path.is_file():
        known = ", ".join(sorted(REGISTRY))
        raise DataError(f"no such data file: {name_or_path} (give a path to a text file or one of: {known})")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
