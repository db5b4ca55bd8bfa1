"""Downloads: the public files the course uses, and one verified way to get each.

A registry of the few public files (texts and vocabularies), each with its URL and sha256. `fetch(name)` looks
for a verified copy in the cache folder, then in a mirror folder (`SCRATCHLM_DATA_MIRROR`, for offline use), then
downloads it with a progress bar. Every copy is checked against its sha256 before it is used, and written
atomically, so a failed or interrupted fetch never leaves a bad file in the cache.

It sits below both `scratchlm.tokenizers` (published rank files) and `scratchlm.data` (texts), and imports
neither: it needs no torch and no tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from scratchlm.errors import DataError
from scratchlm.files import atomic_write

MIRROR_ENV = "SCRATCHLM_DATA_MIRROR"
DATA_DIR_ENV = "SCRATCHLM_DATA_DIR"


@dataclass(frozen=True)
class DataFile:
    """A known public file: where it comes from and what its bytes must hash to."""

    name: str
    filename: str
    url: str
    sha256: str
    description: str


REGISTRY: dict[str, DataFile] = {
    f.name: f
    for f in (
        DataFile(
            "tinyshakespeare",
            "tinyshakespeare.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            "Tiny Shakespeare: 1.1 MB of plays, the course's training corpus",
        ),
        DataFile(
            "r50k_base",
            "r50k_base.tiktoken",
            "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
            "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
            "GPT-2 BPE ranks (tiktoken format)",
        ),
        DataFile(
            "cl100k_base",
            "cl100k_base.tiktoken",
            "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            "GPT-4 BPE ranks (tiktoken format)",
        ),
    )
}


def default_data_dir() -> Path:
    """The cache folder: $SCRATCHLM_DATA_DIR, else `data/` of a source checkout, else ~/.cache/scratchlm."""
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path.home() / ".cache" / "scratchlm" / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_copy_verified(source_chunks, target: Path, expected_sha256: str, origin: str) -> None:
    """Write chunks to a temporary file next to `target`, check the hash, then rename into place."""
    digest = hashlib.sha256()
    with atomic_write(target, "wb", error=DataError) as out:
        for chunk in source_chunks:
            digest.update(chunk)
            out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected_sha256:  # raising inside the block discards the temporary file
            raise DataError(
                f"checksum mismatch for {target.name} from {origin}: expected sha256 {expected_sha256}, "
                f"got {actual}; the file was not cached"
            )


class _SourceFailed(Exception):
    """Reading the source of a copy failed. Not an OSError on purpose: `atomic_write` reports OSErrors as
    failures to write the file, and a file we cannot read must not be reported as one we cannot write."""


class _DownloadFailed(_SourceFailed):
    """The download failed (no network, an HTTP error, a connection reset midway)."""


class _ReadFailed(_SourceFailed):
    """A mirror copy could not be read (no permission, a folder in its place, an I/O error midway)."""


def _read_file_chunks(path: Path):
    try:
        with open(path, "rb") as f:
            yield from iter(lambda: f.read(1 << 20), b"")
    except OSError as e:
        raise _ReadFailed(e.strerror or str(e)) from e


def _download_chunks(url: str, label: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {label}") as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    bar.update(len(chunk))
                    yield chunk
    except (urllib.error.URLError, OSError) as e:
        raise _DownloadFailed(str(getattr(e, "reason", e))) from e


def fetch(name: str, data_dir: Path | str | None = None, mirror: Path | str | None = None) -> Path:
    """Return the local path of registered file `name`, obtaining and verifying it first if needed.

    Order: verified cached copy → mirror folder (`mirror` or $SCRATCHLM_DATA_MIRROR) → download.
    A cached file whose hash no longer matches is replaced. Raises `DataError` with one message that says
    which file, from where, and how to provide it when every source fails; a mirror copy that exists but
    cannot be read is reported as such (not as a cache that cannot be written), and is not silently skipped.
    """
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise DataError(f"unknown data file {name!r}; known files: {known}")
    entry = REGISTRY[name]
    target = Path(data_dir) if data_dir is not None else default_data_dir()
    target = target / entry.filename
    if target.is_file() and sha256_of(target) == entry.sha256:
        return target

    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if mirror:
        candidate = Path(mirror) / entry.filename
        if os.path.exists(candidate):  # a folder or an unreadable file in its place is reported, not skipped
            try:
                _atomic_copy_verified(_read_file_chunks(candidate), target, entry.sha256, f"mirror {candidate}")
            except _ReadFailed as e:
                raise DataError(
                    f"cannot read the mirror copy {candidate} ({e}); nothing was cached in {target.parent}/. "
                    f"Make it a readable file, or remove it to download {entry.filename} instead."
                ) from None
            return target

    try:
        _atomic_copy_verified(_download_chunks(entry.url, entry.filename), target, entry.sha256, entry.url)
    except _DownloadFailed as e:
        where = f" (mirror {mirror} has no {entry.filename})" if mirror else ""
        raise DataError(
            f"cannot obtain {entry.filename}: download from {entry.url} failed ({e}){where}. "
            f"Download it yourself into {target.parent}/ or set {MIRROR_ENV} to a folder that contains it."
        ) from None
    return target
