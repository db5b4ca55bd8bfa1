"""Pretraining: prepare (shards, index, split, no-op re-runs, damaged shards), the shard loader (rank-disjoint
windows, epochs, exact resume) and the single-process run (exact resume, schedules, bits per byte, the CLI).
The multi-process (torchrun) tests are in test_ddp.py."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch

from scratchlm.cli import main
from scratchlm.errors import ConfigError, DataError, OutputError
from scratchlm.pretraining.config import PretrainConfig, lr_schedule
from scratchlm.pretraining.corpora import fingerprint, open_corpus, split_text
from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.loop import pretrain
from scratchlm.pretraining.shards import ShardIndex, goes_to_val, prepare, shard_dtype
from scratchlm.tokenizers import BPETokenizer, CharTokenizer
from scratchlm.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["the", "a", "to", "of", "and", "model", "token", "shard", "window", "rank", "loss", "step", "data", "learns"]


def _documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(rng.randint(3, 30)))
        for _ in range(n)
    ]


@pytest.fixture
def corpus_dir(tmp_path):
    """A folder of 60 text files, one document each (about 40 KB)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, doc in enumerate(_documents(60)):
        (folder / f"doc{i:03d}.txt").write_text(doc, encoding="utf-8")
    return folder


@pytest.fixture
def char_shards(tmp_path, corpus_dir):
    index, _ = prepare(corpus_dir, "char", tmp_path / "shards", val_fraction=0.2, shard_tokens=5000, workers=1,
                       progress=False)  # fmt: skip
    return index


# --- corpora -----------------------------------------------------------------------------------------------------


def test_a_text_file_is_cut_at_end_of_text_markers_if_it_has_them_else_at_blank_lines():
    assert list(split_text("one\ntwo\n\n\nthree\n  \nfour")) == ["one\ntwo", "three", "four"]
    assert list(split_text("a story\n\nstill it<|endoftext|>the next<|endoftext|>\n")) == [
        "a story\n\nstill it",
        "the next",
    ]


def test_the_default_corpus_is_the_standard_library_and_big_enough():
    corpus = open_corpus("python-stdlib")
    docs = corpus.documents()
    first = next(docs)
    assert isinstance(first, str) and first.strip()
    _, count, size = fingerprint(corpus.documents())
    assert count > 300 and size > 5_000_000, (count, size)  # multi-megabyte, hundreds of documents


def test_a_hugging_face_corpus_without_datasets_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install 'scratchlm\[hf\]'"):
        next(open_corpus("hf:roneneldan/TinyStories").documents())
    with pytest.raises(DataError, match="no corpus"):
        open_corpus("no-such-corpus")


# --- prepare -----------------------------------------------------------------------------------------------------


def test_shards_hold_every_document_after_its_separator_split_by_document(tmp_path, corpus_dir):
    bpe = BPETokenizer.train("\n".join(_documents(20, seed=1)), 300, special_tokens=["<|endoftext|>"], progress=False)
    index, stats = prepare(corpus_dir, bpe, tmp_path / "s", val_fraction=0.25, seed=3, shard_tokens=4000, workers=1,
                           progress=False)  # fmt: skip
    eot = bpe.special_tokens["<|endoftext|>"]
    assert index.separator == [eot] and index.dtype == np.uint16 and not stats.up_to_date
    docs = [p.read_text(encoding="utf-8") for p in sorted(corpus_dir.iterdir())]
    expected = {"train": [], "val": []}
    for i, doc in enumerate(docs):
        expected["val" if goes_to_val(i, 3, 0.25) else "train"] += [eot, *bpe.encode_ordinary(doc)]
    for split in ("train", "val"):
        assert index.read(split).tolist() == expected[split]
        assert all(n == 4000 for n in index.shard_tokens(split)[:-1])  # fixed-size shards, the last shorter
        entry = index.index["splits"][split]
        assert entry["bytes"] == sum(
            len(d.encode()) for i, d in enumerate(docs) if (split == "val") == goes_to_val(i, 3, 0.25)
        )
    assert 0 < index.index["splits"]["val"]["documents"] < len(docs)
    assert index.index["source"]["documents"] == len(docs)
    assert index.tokenizer().to_dict() == bpe.to_dict()


def test_the_char_tokenizer_has_no_end_of_text_so_documents_are_separated_by_a_blank_line(char_shards):
    tok = char_shards.tokenizer()
    assert isinstance(tok, CharTokenizer)
    assert char_shards.separator == tok.encode("\n\n")
    assert char_shards.index["separator"]["text"] == "\n\n"
    assert tok.decode(char_shards.read("train")[:2].tolist()) == "\n\n"


def test_ids_are_uint32_when_the_vocabulary_does_not_fit_in_16_bits():
    assert shard_dtype(65536) == np.uint16 and shard_dtype(65537) == np.uint32


def test_any_number_of_workers_writes_the_same_shards(tmp_path, corpus_dir):
    one, _ = prepare(corpus_dir, "char", tmp_path / "w1", workers=1, progress=False)
    two, stats = prepare(corpus_dir, "char", tmp_path / "w2", workers=2, progress=False)
    assert stats.workers == 2
    assert one.index["splits"] == two.index["splits"]  # same files, tokens and sha256s


def test_preparing_again_is_a_no_op_and_a_damaged_shard_is_an_error(tmp_path, corpus_dir, char_shards):
    folder = char_shards.folder
    first = folder / char_shards.index["splits"]["train"]["shards"][0]["file"]
    mtime = first.stat().st_mtime_ns
    again, stats = prepare(corpus_dir, "char", folder, val_fraction=0.2, shard_tokens=5000, workers=1, progress=False)
    assert stats.up_to_date and first.stat().st_mtime_ns == mtime
    assert again.index == char_shards.index

    data = bytearray(first.read_bytes())
    data[10] ^= 1
    first.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its index"):
        prepare(corpus_dir, "char", folder, val_fraction=0.2, shard_tokens=5000, workers=1, progress=False)
    with pytest.raises(DataError, match="does not match its index"):
        ShardIndex.open(folder)
    first.write_bytes(bytes(data[:-2]))
    with pytest.raises(DataError, match="does not match its index"):
        ShardIndex.open(folder, verify=False)  # a wrong size is caught even without hashing


def test_other_input_in_a_prepared_folder_is_refused_unless_overwrite(tmp_path, corpus_dir, char_shards):
    (corpus_dir / "doc000.txt").write_text("a changed document\n", encoding="utf-8")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare(corpus_dir, "char", char_shards.folder, val_fraction=0.2, shard_tokens=5000, workers=1, progress=False)
    index, stats = prepare(corpus_dir, "char", char_shards.folder, val_fraction=0.2, shard_tokens=5000, workers=1,
                           overwrite=True, progress=False)  # fmt: skip
    assert not stats.up_to_date and index.index["source"]["sha256"] != char_shards.index["source"]["sha256"]


# --- loader ------------------------------------------------------------------------------------------------------


def test_ranks_read_disjoint_windows_that_together_are_the_single_process_batch(char_shards):
    single = ShardLoader(char_shards, "train", 16, 6, seed=5)
    ranks = [ShardLoader(char_shards, "train", 16, 3, rank=r, world_size=2, seed=5) for r in range(2)]
    for _ in range(20):
        whole = single.window_ids()
        parts = [loader.window_ids() for loader in ranks]
        assert not set(parts[0]) & set(parts[1])
        assert sorted([*parts[0], *parts[1]]) == sorted(whole)


def test_an_epoch_reads_every_window_once_and_windows_are_the_text(char_shards):
    loader = ShardLoader(char_shards, "train", 16, 4, seed=1)
    seen = []
    while loader.epoch == 0:
        ids = loader.window_ids()
        if loader.epoch == 0:
            seen += ids.tolist()
    usable = loader.windows - loader.windows % 4
    assert len(seen) == usable == len(set(seen))
    text = char_shards.read("train")
    x, y = ShardLoader(char_shards, "train", 16, 4, shuffle=False).next_batch()
    assert x[0].tolist() == text[:16].tolist() and y[0].tolist() == text[1:17].tolist()
    assert x[1].tolist() == text[16:32].tolist()  # windows start every block_size tokens


def test_a_restored_loader_continues_at_the_same_token_and_refuses_other_windows(char_shards):
    loader = ShardLoader(char_shards, "train", 16, 4, seed=2)
    for _ in range(37):  # into the second epoch
        loader.next_batch()
    state = loader.state_dict()
    expected = [loader.next_batch() for _ in range(5)]
    fresh = ShardLoader(char_shards, "train", 16, 4, seed=2)
    fresh.load_state_dict(json.loads(json.dumps(state)))  # plain data, as a checkpoint stores it
    for x, y in expected:
        fx, fy = fresh.next_batch()
        assert torch.equal(fx, x) and torch.equal(fy, y)
    with pytest.raises(DataError, match="block_size 16 -> 8"):
        ShardLoader(char_shards, "train", 8, 4, seed=2).load_state_dict(state)


def test_a_split_smaller_than_one_global_batch_is_a_clear_error(char_shards):
    with pytest.raises(DataError, match="fewer than one batch"):
        ShardLoader(char_shards, "val", 16, 4000, world_size=2)


# --- the run -----------------------------------------------------------------------------------------------------


def _config(index, out_dir=None, **overrides) -> PretrainConfig:
    train = TrainConfig().replace(data=str(index.folder), n_layer=1, n_head=2, n_embd=16, block_size=16,
                                  batch_size=4, max_iters=8, learning_rate=1e-2, min_lr=1e-3, warmup_iters=2,
                                  eval_interval=4, eval_iters=2, progress=False, out_dir=out_dir,
                                  device="cpu")  # fmt: skip
    return PretrainConfig(train=train, samples=1, sample_tokens=8).replace(**overrides)


def test_a_resumed_run_continues_exactly(tmp_path, char_shards):
    straight = pretrain(_config(char_shards, str(tmp_path / "a"), max_iters=8, dropout=0.1, grad_accum_steps=2))
    pretrain(_config(char_shards, str(tmp_path / "b"), max_iters=4, lr_decay_iters=8, dropout=0.1, grad_accum_steps=2))
    resumed = pretrain(_config(char_shards, str(tmp_path / "b"), max_iters=8, resume=True, dropout=0.1,
                               grad_accum_steps=2))  # fmt: skip
    assert resumed.step_losses == straight.step_losses  # bit for bit on CPU
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [m["step"] for m in resumed.metrics] == [0, 4, 8]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_loss"] for line in lines] == [m["val_loss"] for m in straight.metrics]


def test_metrics_report_bits_per_byte_throughput_and_samples(tmp_path, char_shards):
    result = pretrain(_config(char_shards, str(tmp_path / "run")))
    last = result.metrics[-1]
    assert last["tokens"] == 8 * 4 * 16
    # eval_iters x batch = 8 of the split's windows, a fixed sample with its standard error; bits per byte uses
    # the bytes of exactly the tokens scored
    assert last["val_windows"] == 8 and last["val_tokens"] == 8 * 16 and 0 < last["val_loss_se"] < 1
    assert last["val_bpb"] == pytest.approx(last["val_loss"] / math.log(2) * last["val_tokens"] / last["val_bytes"])
    assert last["tokens_per_s"] > 0 and 0 < last["mfu"] < 1
    assert len(last["samples"]) == 1 and isinstance(last["samples"][0], str)
    assert result.metrics[0]["val_loss"] > last["val_loss"]  # it learns
    with pytest.raises(OutputError, match="already holds a run"):
        pretrain(_config(char_shards, str(tmp_path / "run")))


def test_batch_tokens_sets_the_accumulation_and_must_divide():
    config = PretrainConfig(train=TrainConfig().replace(batch_size=4, block_size=16, tokenizer=None), batch_tokens=512)
    assert config.accumulation(1) == 8 and config.accumulation(2) == 4 and config.tokens_per_step(2) == 512
    with pytest.raises(ConfigError, match="not a multiple"):
        config.replace(batch_tokens=500).accumulation(1)
    with pytest.raises(ConfigError, match="tokenizer from the prepared folder"):
        PretrainConfig(train=TrainConfig(tokenizer="r50k_base"))


def test_warmup_stable_decay_holds_the_peak_then_decays_linearly():
    config = PretrainConfig(
        train=TrainConfig().replace(max_iters=100, warmup_iters=10, learning_rate=1.0, min_lr=0.1),
        schedule="wsd",
        decay_fraction=0.2,
    )
    lrs = [lr_schedule(s, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(lr == 1.0 for lr in lrs[10:80])
    assert lrs[99] == pytest.approx(0.1) and all(a > b for a, b in itertools.pairwise(lrs[80:]))
    assert lr_schedule(50, config.replace(schedule="cosine")) < 1.0


# --- the commands ------------------------------------------------------------------------------------------------


def test_prepare_and_pretrain_commands(tmp_path, corpus_dir, capsys):
    shards = tmp_path / "shards"
    assert main(["prepare", "--data", str(corpus_dir), "--tokenizer", "char", "--out", str(shards), "--workers", "1",
                 "--val-fraction", "0.2", "--no-progress"]) == 0  # fmt: skip
    assert "MB/s" in capsys.readouterr().out
    assert main(["prepare", "--data", str(corpus_dir), "--tokenizer", "char", "--out", str(shards), "--workers", "1",
                 "--val-fraction", "0.2", "--no-progress"]) == 0  # fmt: skip
    assert "up to date" in capsys.readouterr().out
    args = ["pretrain", "--data", str(shards), "--preset", "smoke", "--n-layer", "1", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2",
            "--batch-tokens", "128", "--schedule", "wsd", "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 micro-batch(es) per step, 128 tokens per step" in out and "bits/byte" in out
    assert main(["pretrain", "--resume", "--out", str(tmp_path / "run"), "--max-iters", "6", "--no-progress"]) == 0
    assert "step 6:" in capsys.readouterr().out
    assert main(["pretrain", "--data", str(shards), "--tokenizer", "r50k_base"]) == 2
    assert "from the prepared folder" in capsys.readouterr().err
    assert main(["pretrain", "--max-iters", "1"]) == 2
    assert "needs --data DIR" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nothing")]) == 2
    assert "no prepared corpus" in capsys.readouterr().err


def test_train_step_with_no_sync_defers_the_all_reduce_to_the_last_micro_batch_and_changes_nothing_else():
    from contextlib import contextmanager

    from scratchlm.model import GPT, GPTConfig
    from scratchlm.training import make_optimizer, train_step

    events = []

    class Recorded(GPT):
        def forward(self, x, y=None):
            events.append("forward")
            return super().forward(x, y)

    @contextmanager
    def no_sync():
        events.append("no_sync")
        yield

    config = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11)
    batches = [(torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))) for _ in range(3)]
    results = []
    for step in ("ddp", "plain"):
        torch.manual_seed(0)
        model = Recorded(config)
        optimizer = make_optimizer(model, TrainConfig(), torch.device("cpu"))
        if step == "ddp":
            result = train_step(model, optimizer, batches, lr=1e-2, grad_clip=1.0, no_sync=no_sync)
        else:
            result = train_step(model, optimizer, batches, lr=1e-2, grad_clip=1.0)
        results.append((result.loss, [p.detach().clone() for p in model.parameters()]))
    assert events[:5] == ["no_sync", "forward", "no_sync", "forward", "forward"]  # the last backward syncs
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)
