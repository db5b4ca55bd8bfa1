"""Atomic file writes: a crash, a full disk or Ctrl-C in the middle of a write never leaves half a file.

The bytes go to a temporary file in the target's folder, are flushed to disk, and the temporary file is then
renamed over the target; within one filesystem a rename is atomic, so a reader sees the old file or the
new one, never a mixture. Checkpoints, tokenizer files and the data cache are all written this way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from scratchlm.errors import OutputError, ScratchLMError


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return mask


def check_writable(path: str | Path, error: type[ScratchLMError] = OutputError) -> Path:
    """Fail early, before any long work, if `path` cannot become a file: it is a folder, or its folder cannot
    be created. Creates the folder; returns `path` as a Path."""
    path = Path(path)
    if path.is_dir():
        raise error(f"cannot write {path}: it is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}") from e
    return path


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    error: type[ScratchLMError] = OutputError,
) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces `path`, on any exception it is removed.

    The file gets the permissions a plain `open(path, "w")` would give (mkstemp's private 0600 would
    otherwise survive the rename). An OSError (no such folder, no permission, disk full, `path` is a folder)
    becomes `error` with a one-line message naming the path.
    """
    path = check_writable(path, error)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the file
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException as e:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise error(f"could not write {path}: {e.strerror or e}") from e
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
