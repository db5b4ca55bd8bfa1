"""Safe files: atomic writes, and an exclusive lock on a folder that one process works in.

Atomic writes: a crash, a full disk or Ctrl-C in the middle of a write never leaves half a file. The bytes go
to a temporary file in the target's folder (named after the writing process, `.NAME.PID.XXXX.tmp`), are flushed
to disk, and the temporary file is then renamed over the target; within one filesystem a rename is atomic, so a
reader sees the old file or the new one, never a mixture. Checkpoints, tokenizer files and the data cache are all
written this way. A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
`remove_stale_temporaries` deletes those of processes that no longer run.

Folder locks: `folder_lock` holds an exclusive lock (`fcntl.flock`) on `FOLDER/.lock` for as long as a training
run writes there, so a second run on the same folder is refused instead of interleaving with the first. The
operating system drops the lock when its process ends, however it ends, so a killed run never leaves a stale one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there are not protected from each other
    fcntl = None

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


def output_folder(path: str | Path, name: str = "output folder") -> Path:
    """Create the folder a run writes into, now, before any long work: a path that is a file, or a folder that
    cannot be created, fails at once with a one-line `OutputError` that calls it `name` ("out_dir", "report
    folder"). Returns it as a Path."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{name} {folder} is a file; it must be a folder (or a path that does not exist yet)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write to {name} {folder}: {e.strerror or e}") from e
    return folder


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
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # .NAME.PID.XXXX.tmp, as atomic_write names them


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 checks that the process exists without touching it
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists but belongs to someone else (or we cannot tell: keep its file)
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that `atomic_write`s of processes no longer running left in `folder`
    (a run killed while saving); a live process's temporary file is left alone. Returns what was deleted."""
    removed = []
    if os.name != "posix" or not Path(folder).is_dir():
        return removed
    for path in Path(folder).iterdir():
        match = _TEMPORARY.match(path.name)
        if match and int(match.group(1)) != os.getpid() and not _process_is_running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


LOCK_NAME = ".lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path, error: type[ScratchLMError] = OutputError) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (created if needed) for the duration of the block; raise `error` at
    once, naming the holder's pid, when another process holds it. Where `fcntl` is missing (Windows) the block
    runs unlocked."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise error(f"cannot write to {folder}: {e.strerror or e}") from e
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise error(
                    f"{folder} is in use by another training run (pid {holder}); wait for it to finish or use "
                    "another folder"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield folder
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
