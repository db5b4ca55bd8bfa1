import hashlib
import io
import re
from pathlib import Path

import pytest
import torch

from scratchlm import downloads as data
from scratchlm.data import DataFile, fetch, get_batch, load_text, split
from scratchlm.errors import ConfigError, DataError

CONTENT = b"hello, tiny corpus\n" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def fake_entry(monkeypatch):
    """A registry entry whose URL can never be reached: tests must not touch the network."""
    entry = DataFile("fake", "fake.txt", "http://127.0.0.1:9/fake.txt", SHA, "a test file")
    monkeypatch.setitem(data.REGISTRY, "fake", entry)
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    return entry


def test_fetch_uses_verified_cache_without_mirror_or_network(tmp_path, fake_entry):
    (tmp_path / "fake.txt").write_bytes(CONTENT)
    assert fetch("fake", data_dir=tmp_path) == tmp_path / "fake.txt"


def test_fetch_copies_from_mirror_and_caches(tmp_path, fake_entry, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fake.txt").write_bytes(CONTENT)
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    cache = tmp_path / "cache"
    path = fetch("fake", data_dir=cache)
    assert path == cache / "fake.txt" and path.read_bytes() == CONTENT
    assert [p.name for p in cache.iterdir()] == ["fake.txt"]  # no temporary files left behind


def test_fetch_replaces_a_corrupt_cached_copy(tmp_path, fake_entry):
    cache, mirror = tmp_path / "cache", tmp_path / "mirror"
    cache.mkdir(), mirror.mkdir()
    (cache / "fake.txt").write_bytes(b"corrupted")
    (mirror / "fake.txt").write_bytes(CONTENT)
    assert fetch("fake", data_dir=cache, mirror=mirror).read_bytes() == CONTENT


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(tmp_path, fake_entry):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    (mirror / "fake.txt").write_bytes(b"not what the registry says")
    with pytest.raises(DataError, match=r"checksum mismatch for fake\.txt"):
        fetch("fake", data_dir=cache, mirror=mirror)
    assert not any(cache.iterdir())


def test_download_path_verifies_and_caches(tmp_path, fake_entry, monkeypatch):
    monkeypatch.setattr(data, "_download_chunks", lambda url, label: iter([CONTENT[:7], CONTENT[7:]]))
    assert fetch("fake", data_dir=tmp_path).read_bytes() == CONTENT


def test_download_interrupted_midway_leaves_no_file(tmp_path, fake_entry, monkeypatch):
    def broken(url, label):
        yield CONTENT[:10]
        raise data._DownloadFailed("connection reset")  # what the real generator raises on a failed read

    monkeypatch.setattr(data, "_download_chunks", broken)
    with pytest.raises(DataError, match=r"download from .* failed \(connection reset"):
        fetch("fake", data_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_offline_without_mirror_says_which_file_from_where_and_how(tmp_path, fake_entry):
    with pytest.raises(DataError) as err:
        fetch("fake", data_dir=tmp_path)
    message = str(err.value)
    assert "fake.txt" in message and fake_entry.url in message and data.MIRROR_ENV in message
    assert "\n" not in message


def test_offline_with_mirror_lacking_the_file_names_the_mirror(tmp_path, fake_entry):
    with pytest.raises(DataError, match="mirror"):
        fetch("fake", data_dir=tmp_path / "cache", mirror=tmp_path)


@pytest.fixture
def mirror_with_file(tmp_path, fake_entry):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fake.txt").write_bytes(CONTENT)
    return mirror


def unreadable(path: Path, error: OSError, after: bytes | None = None):
    """A stand-in for `open` inside the data module: `path` fails (on opening, or after yielding `after`)."""

    class FailingFile(io.BytesIO):
        def read(self, size=-1):
            if self.tell() >= len(after):
                raise error
            return super().read(size)

    def fake_open(file, mode="r", *args, **kwargs):
        if Path(file) != path:
            return open(file, mode, *args, **kwargs)
        if after is None:
            raise error
        return FailingFile(after)

    return fake_open


def test_unreadable_mirror_file_names_the_mirror_file_and_the_cause(tmp_path, mirror_with_file, monkeypatch):
    # as root, permission bits do not stop a read: simulate what open() raises for an unreadable file
    mirror_file = mirror_with_file / "fake.txt"
    denied = PermissionError(13, "Permission denied", str(mirror_file))
    monkeypatch.setattr(data, "open", unreadable(mirror_file, denied), raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        fetch("fake", data_dir=cache, mirror=mirror_with_file)
    message = str(err.value)
    assert f"cannot read the mirror copy {mirror_file} (Permission denied)" in message
    assert "could not write" not in message and "\n" not in message
    assert not cache.exists() or not any(cache.iterdir())


def test_mirror_file_failing_midway_is_a_read_error_not_a_write_error(tmp_path, mirror_with_file, monkeypatch):
    mirror_file = mirror_with_file / "fake.txt"
    failing = unreadable(mirror_file, OSError(5, "Input/output error"), after=CONTENT[:10])
    monkeypatch.setattr(data, "open", failing, raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=re.escape(f"cannot read the mirror copy {mirror_file} (Input/output error)")):
        fetch("fake", data_dir=cache, mirror=mirror_with_file)
    assert not any(cache.iterdir())  # the temporary file is gone


def test_mirror_entry_that_is_a_folder_is_reported_not_skipped(tmp_path, fake_entry):
    mirror = tmp_path / "mirror"
    (mirror / "fake.txt").mkdir(parents=True)
    message = f"cannot read the mirror copy {mirror / 'fake.txt'} (Is a directory)"
    with pytest.raises(DataError, match=re.escape(message)):
        fetch("fake", data_dir=tmp_path / "cache", mirror=mirror)


def test_unwritable_cache_is_still_reported_as_such(tmp_path, mirror_with_file):
    cache = tmp_path / "cache"
    (cache / "fake.txt").mkdir(parents=True)  # a folder where the cached file should go
    with pytest.raises(DataError, match=re.escape(f"cannot write {cache / 'fake.txt'}: it is a folder")):
        fetch("fake", data_dir=cache, mirror=mirror_with_file)


def test_unknown_name_lists_known_files():
    with pytest.raises(DataError, match="tinyshakespeare"):
        fetch("no-such-file")


def test_registry_holds_the_course_files():
    assert {"tinyshakespeare", "r50k_base", "cl100k_base"} <= set(data.REGISTRY)
    for entry in data.REGISTRY.values():
        assert len(entry.sha256) == 64 and entry.url.startswith("https://")


def test_tinyshakespeare_through_the_registry():
    text = load_text("tinyshakespeare")
    assert len(text) == 1115394 and text.startswith("First Citizen:")


def test_load_text_errors(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_text(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(binary)


def test_split_is_contiguous():
    tokens = torch.arange(100)
    train, val = split(tokens, 0.1)
    assert torch.equal(torch.cat([train, val]), tokens) and len(val) == 10
    with pytest.raises(ConfigError):
        split(tokens, 1.5)


def test_get_batch_shapes_targets_and_determinism():
    tokens = torch.arange(1000)
    x, y = get_batch(tokens, block_size=8, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)  # the target of each position is the next token
    x2, _ = get_batch(tokens, block_size=8, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    x3, _ = get_batch(tokens, block_size=8, batch_size=4, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(x, x3)


def test_get_batch_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="too few"):
        get_batch(torch.arange(5), block_size=8, batch_size=2)
    with pytest.raises(ConfigError, match="positive"):
        get_batch(torch.arange(50), block_size=0, batch_size=2)


def test_default_data_dir_is_the_checkout_data_folder(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.default_data_dir() == Path(data.__file__).resolve().parents[1] / "data"
    monkeypatch.setenv(data.DATA_DIR_ENV, "/somewhere/else")
    assert data.default_data_dir() == Path("/somewhere/else")
