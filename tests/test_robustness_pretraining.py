"""Hostile and careless inputs to prepare, pretrain, eval and train's resume (issue 22): files outside a prepared
folder are never deleted, a damaged or foreign index, shard or tokenizer file is one line, a full disk says so,
absurd sizes are refused before anything runs, and a folder of one command given to another says what it is.
All in-process and tiny; the torchrun cases are in test_ddp.py."""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import scratchlm.checkpoint as checkpoint
import scratchlm.pretraining.corpora as corpora
import scratchlm.pretraining.shards as shards_module
from scratchlm.cli import main
from scratchlm.errors import DataError
from scratchlm.pretraining.corpora import EOT_MARKER, open_corpus, split_stream, split_text
from scratchlm.pretraining.shards import ShardIndex, prepare
from scratchlm.tokenizers import BPETokenizer, CharTokenizer
from scratchlm.tokenizers.batches import ENCODE_BATCH_CHARS

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
         "--eval-iters", "1", "--samples", "0", "--no-progress"]  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: the model reads token after token." for i in range(120)))
    return path


@pytest.fixture
def shards(tmp_path, corpus) -> Path:
    prepare(corpus, "char", tmp_path / "shards", val_fraction=0.2, shard_tokens=2000, workers=1, progress=False)
    return tmp_path / "shards"


def _edit_index(folder: Path, change) -> None:
    index = json.loads((folder / "index.json").read_text())
    change(index)
    (folder / "index.json").write_text(json.dumps(index))


# --- item 2: prepare --overwrite deletes only what prepare wrote ------------------------------------------------


@pytest.mark.parametrize("outside", ["../victim.txt", "ABSOLUTE"])
def test_prepare_overwrite_never_deletes_files_outside_its_folder(outside, tmp_path, corpus, shards, capsys):
    """Regression (issue 22, item 2): --overwrite deleted every file an edited index listed, outside the folder too."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    name = str(victim) if outside == "ABSOLUTE" else outside
    _edit_index(shards, lambda index: index["splits"]["train"]["shards"][0].update(file=name))
    (shards / "notes.txt").write_text("mine, not prepare's")
    corpus.write_text(corpus.read_text() + "\n\nA new paragraph.")
    argv = ["prepare", "--data", str(corpus), "--tokenizer", "char", "--out", str(shards), "--workers", "1"]
    assert main([*argv, "--overwrite", "--no-progress"]) == 2
    assert "is not a file that prepare writes in this folder" in one_error_line(capsys)
    assert victim.read_text() == "keep me" and (shards / "notes.txt").exists()


def test_prepare_overwrite_deletes_its_own_shards_and_nothing_else(tmp_path, corpus, shards):
    (shards / "notes.txt").write_text("mine, not prepare's")
    (shards / "train_999999.bin").write_bytes(b"not listed in the index")
    corpus.write_text("\n\n".join(f"Short {i}." for i in range(40)))
    prepare(corpus, "char", shards, val_fraction=0.2, shard_tokens=2000, workers=1, overwrite=True, progress=False)
    assert (shards / "notes.txt").exists() and (shards / "train_999999.bin").exists()
    assert ShardIndex.open(shards).tokens("train") > 0


# --- item 4: damaged or foreign files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.pop("splits"), "splits must be exactly train and val"),
        (lambda i: i.pop("tokenizer"), "tokenizer must be a record with a sha256"),
        (lambda i: i.update(dtype=16), "dtype is 16"),
        (lambda i: i["tokenizer"].update(vocab_size="65"), "vocab_size '65' is not a positive integer"),
        (lambda i: i["tokenizer"].update(vocab_size=10**6), "is not a positive integer that fits uint16"),
        (lambda i: i["separator"].update(ids="\n\n"), "separator ids must be a non-empty list"),
        (lambda i: i["splits"]["val"].update(tokens=-1), "split val needs documents, tokens and bytes as counts"),
        (lambda i: i["splits"]["train"]["shards"][0].update(tokens="many"), "needs a file, a token count"),
        (lambda i: i["splits"]["train"]["shards"].append(i["splits"]["train"]["shards"][0]), "do not add up"),
        (lambda i: i["splits"]["train"].update(shards={}), "shards must be a list"),
        (lambda i: i.update(source=[]), "source must be a record"),
    ],
)
def test_a_damaged_index_is_one_line_naming_it_for_every_command(change, message, tmp_path, corpus, shards, capsys):
    _edit_index(shards, change)
    with pytest.raises(DataError, match=r"index\.json is damaged: .*" + re.escape(message)):
        ShardIndex.open(shards)
    assert main(["pretrain", "--data", str(shards), "--out", str(tmp_path / "run"), *MODEL, "--max-iters", "1"]) == 2
    assert message in one_error_line(capsys)
    argv = ["prepare", "--data", str(corpus), "--tokenizer", "char", "--out", str(shards), "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 2
    assert message in one_error_line(capsys)


def test_shard_ids_beyond_the_vocabulary_are_one_line_without_verify(tmp_path, shards, capsys):
    shard = shards / "train_000000.bin"
    ids = np.fromfile(shard, dtype="<u2")
    ids[:] = 60_000  # the same size, so only hashing (skipped by --no-verify) would notice
    ids.tofile(shard)
    argv = ["pretrain", "--data", str(shards), "--out", str(tmp_path / "run"), *MODEL, "--max-iters", "2"]
    assert main([*argv, "--no-verify"]) == 2
    assert "hold token id 60000, beyond the tokenizer's" in one_error_line(capsys)
    assert main(argv) == 2
    assert "does not match its index" in one_error_line(capsys)


def test_the_tokenizer_file_prepare_writes_is_read_by_tokenizer_info_and_prepare(tmp_path, corpus, shards, capsys):
    """Regression (issue 22, item 4): the library did not read the tokenizer.json it wrote (a BPE's)."""
    bpe = BPETokenizer.train(corpus.read_text(), 300, special_tokens=["<|endoftext|>"], progress=False)
    first, _ = prepare(corpus, bpe, tmp_path / "bpe", val_fraction=0.2, workers=1, progress=False)
    for folder, kind in ((tmp_path / "bpe", "256 bytes"), (shards, "characters")):
        capsys.readouterr()
        assert main(["tokenizer", "info", "--tokenizer", str(folder / "tokenizer.json")]) == 0
        assert kind in capsys.readouterr().out
    again, _ = prepare(corpus, tmp_path / "bpe" / "tokenizer.json", tmp_path / "again", val_fraction=0.2, workers=1,
                       progress=False)  # fmt: skip
    assert again.index["tokenizer"] == first.index["tokenizer"]
    assert (tmp_path / "again" / "train_000000.bin").read_bytes() == (
        tmp_path / "bpe" / "train_000000.bin"
    ).read_bytes()


# --- items 5-7: sizes, full disks, folders of other commands -------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--n-embd", str(2**20), "--n-head", "2"],
        ["--n-layer", str(10**6)],
        ["--block-size", str(2**31)],
        ["--batch-tokens", str(4 * 16 * 10**11)],
        ["--samples", str(10**12)],
        ["--samples", "1", "--sample-tokens", str(10**13)],
    ],
)
def test_pretrain_refuses_absurd_sizes_before_anything_runs(flags, tmp_path, shards, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(shards), "--out", str(out), *MODEL, *flags]) == 2
    assert "needs at least" in one_error_line(capsys)
    assert not out.exists()


def test_prepare_refuses_a_shard_size_that_cannot_fit(tmp_path, corpus, capsys):
    out = tmp_path / "shards"
    argv = ["prepare", "--data", str(corpus), "--tokenizer", "char", "--out", str(out), "--shard-tokens", str(10**15)]
    assert main(argv) == 2
    assert "needs at least" in one_error_line(capsys)
    assert not out.exists()


def test_a_full_disk_during_a_pretrain_save_says_no_space_left(tmp_path, shards, monkeypatch, capsys):
    def disk_full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 92224 vs 92112")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(shards), "--out", str(out), *MODEL, "--max-iters", "2"]) == 2
    assert "No space left on device" in one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "metrics.jsonl"]  # no temporary file left


def test_a_full_disk_during_a_sweep_save_says_no_space_left(tmp_path, corpus, monkeypatch, capsys):
    def disk_full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 92224 vs 92112")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    argv = ["sweep", "--grid", "smoke", "--data", str(corpus), "--widths", "16", "--budgets", "4e8", "--depth", "1",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "sweep")]) == 2
    assert "No space left on device" in one_error_line(capsys)


def test_pretrain_resume_on_another_corpus_is_refused(tmp_path, corpus, shards, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(shards), "--out", str(out), *MODEL, "--max-iters", "2"]) == 0
    corpus.write_text(corpus.read_text().replace("model", "network"))
    prepare(corpus, "char", tmp_path / "other", val_fraction=0.2, workers=1, progress=False)
    capsys.readouterr()
    assert main(["pretrain", "--resume", "--out", str(out), "--data", str(tmp_path / "other"), "--max-iters", "4"]) == 2
    assert "was trained on another corpus" in one_error_line(capsys)


def test_train_and_eval_on_a_pretrain_folder_say_what_it_is(tmp_path, shards, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(shards), "--out", str(out), *MODEL, "--max-iters", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert "written by pretrain" in err and "pretrain --resume" in err
    assert main(["eval", "--ckpt", str(out)]) == 2
    err = one_error_line(capsys)
    assert "written by pretrain" in err and "--data" in err


# --- item 9: streaming ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_a_text_read_in_chunks_is_cut_into_the_same_documents_as_the_whole_text(seed):
    rng = random.Random(seed)
    pieces = ["word", " ", "\n", "\n\n", "\n \t\n", "\n\n\n", "\t", EOT_MARKER if seed % 2 else "x", "é", "\r\n"]
    text = "".join(rng.choice(pieces) for _ in range(3000))
    for size in (1, 2, 3, 7, 64, 10_000):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert list(split_stream(chunks, by_marker=EOT_MARKER in text)) == list(split_text(text)), size


def test_a_text_file_corpus_is_read_lazily_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"paragraph {i}\n\n" for i in range(5000)))
    monkeypatch.setattr(corpora, "_READ_CHARS", 1000)
    reads = []
    original = corpora._read_chunks
    monkeypatch.setattr(corpora, "_read_chunks", lambda p: (reads.append(len(c)) or c for c in original(p)))
    documents = open_corpus(path).documents()
    assert next(documents) == "paragraph 0" and len(reads) == 1  # one chunk read, not the file
    assert [next(documents) for _ in range(3)] == ["paragraph 1", "paragraph 2", "paragraph 3"]
    assert list(open_corpus(path).documents()) == list(split_text(path.read_text()))


def test_encode_iter_is_lazy_and_gives_the_ids_of_encoding_each_text_and_the_whole_list(corpus):
    text = corpus.read_text()
    bpe = BPETokenizer.train(text, 300, progress=False)
    texts = [text[i : i + 97] for i in range(0, len(text), 97)]
    for tokenizer in (bpe, CharTokenizer.from_text(text)):
        whole = tokenizer._encode_ordinary_texts(texts) if tokenizer is bpe else [tokenizer.encode(t) for t in texts]
        assert list(tokenizer.encode_iter(iter(texts))) == whole
    consumed = []

    def texts_read() -> Iterator[str]:
        for t in texts * 10_000:  # far more than fits in one batch
            consumed.append(t)
            yield t

    first = next(bpe.encode_iter(texts_read()))
    assert first == bpe.encode_ordinary(texts[0]) and sum(map(len, consumed)) < 2 * ENCODE_BATCH_CHARS


def test_prepare_feeds_its_workers_a_bounded_window():
    class Pool:
        def __init__(self):
            self.submitted = 0

        def apply_async(self, function, args):
            self.submitted += 1
            result = function(*args)
            return type("Done", (), {"get": lambda self: result})()

    pool, read = Pool(), []
    tasks = (read.append(i) or i for i in range(1000))
    results = shards_module._in_order(pool, lambda x: x * 2, tasks, window=4)
    assert [next(results) for _ in range(3)] == [0, 2, 4] and len(read) == 6  # three yielded, three in flight
    assert list(results) == [2 * i for i in range(3, 1000)]


# --- item 5: eval's absurd sizes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    data = folder / "tiny.txt"
    data.write_text("".join(f"To be, or not to be: line {i}.\n" for i in range(200)), encoding="utf-8")
    argv = ["train", "--preset", "smoke", "--max-iters", "1", "--eval-iters", "1", "--no-progress"]
    assert main([*argv, "--data", str(data), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bins", str(10**12)], "is more than the 200,000 tokens scored"),
        (["--bins", str(10**12), "--max-tokens", str(10**13)], "confidence bins needs at least"),
        (["--samples", str(10**12)], "samples of 200 tokens needs at least"),
        (["--sample-tokens", str(10**13)], "needs at least"),
        (["--induction-batch", str(10**12)], "induction sequences needs at least"),
        (["--novelty-n", str(10**12)], "is longer than a sample of 200 tokens can be"),
        (["--seed", str(2**64)], "seed must be in [0, 2**64)"),
    ],
)
def test_eval_refuses_absurd_sizes_before_anything_runs(flags, message, trained, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(trained), "--out", str(tmp_path / "eval"), "--no-progress", *flags]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "eval").exists()
