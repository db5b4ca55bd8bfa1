"""Curation before tokenization (`scratchlm.pretraining.curation`): exact and MinHash near-duplicate removal on
constructed near-duplicates, the generated-file filter by a property of the text, the validation-overlap check,
and prepare's use of them (what is dropped is reported in the index)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from scratchlm.pretraining.curation import (
    curate,
    looks_generated,
    minhash,
    shingle_hashes,
    similarity,
)
from scratchlm.pretraining.shards import prepare

pytestmark = pytest.mark.usefixtures("one_thread")


def _words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"w{rng.randrange(5000)}" for _ in range(n)]


def _edit(words: list[str], changes: int, seed: int) -> list[str]:
    """`words` with `changes` of them, evenly spaced, replaced by new words."""
    out = list(words)
    for k in range(changes):
        out[(k * len(words)) // changes + 2] = f"new{seed}_{k}"
    return out


def _text(words: list[str]) -> str:
    return "\n".join(" ".join(words[i : i + 10]) for i in range(0, len(words), 10))


def _jaccard(a: str, b: str) -> float:
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


def test_minhash_estimates_the_jaccard_similarity_of_word_shingles():
    base = _words(400, 0)
    for changes in (0, 4, 12, 40):
        a, b = _text(base), _text(_edit(base, changes, 1))
        exact = _jaccard(a, b)
        estimate = similarity(minhash(shingle_hashes(a)), minhash(shingle_hashes(b)))
        assert abs(estimate - exact) < 0.12, (changes, exact, estimate)  # 128 functions: sd <= 0.045
    assert similarity(minhash(shingle_hashes(_text(base))), minhash(shingle_hashes(_text(_words(400, 9))))) < 0.05


def test_exact_and_near_duplicates_are_dropped_and_the_first_copy_kept():
    base = _words(300, 0)
    docs = [
        _text(base),  # 0: the original
        _text(_words(300, 1)),  # 1: unrelated
        _text(base),  # 2: an exact copy of 0
        _text(_edit(base, 3, 2)),  # 3: 3 words changed: Jaccard about 0.9
        _text(_edit(base, 30, 3)),  # 4: 30 words changed: Jaccard about 0.33, a different document
        "My lord.",  # 5, 6: a short line repeated is language, not a copy
        "My lord.",
    ]
    report = curate(docs, lambda position: False)
    assert report.keep == [True, True, False, False, True, True, True]
    by_position = {d.position: d for d in report.dropped}
    assert by_position[2].reason == "exact_duplicate" and by_position[2].of == 0
    assert by_position[3].reason == "near_duplicate" and by_position[3].of == 0
    assert _jaccard(docs[0], docs[3]) > 0.85 and _jaccard(docs[0], docs[4]) < 0.4
    counts = report.counts()
    assert counts["exact_duplicate"]["documents"] == 1 and counts["near_duplicate"]["documents"] == 1
    assert counts["near_duplicate"]["bytes"] == len(docs[3].encode())


def test_generated_tables_are_recognised_by_their_lines_not_their_name():
    table = "decoding_table = (\n" + "".join(f"    '\\x{i:02x}'     #  0x{i:02X} -> CHAR {i}\n" for i in range(256))
    table += ")\n\nencoding_table = codecs.charmap_build(decoding_table)\n"
    mapping = "".join(f"    0x{i:04x}: 0x{i + 128:04x},  # LATIN LETTER {i}\n" for i in range(200))
    code = "\n".join(
        f"def f{i}(x):\n    values = (1, 2, 3)\n    return x + values[{i % 3}]\n" for i in range(80)
    )  # hand-written code: short literal runs
    prose = "\n".join(" ".join(_words(12, i)) for i in range(300))
    assert looks_generated(table)[0] and looks_generated("m = {\n" + mapping + "}\n")[0]
    assert not looks_generated(code)[0] and not looks_generated(prose)[0]
    _, figures = looks_generated(table)
    assert "longest run 256" in figures
    report = curate([code, table, prose], lambda position: False)
    assert report.keep == [True, False, True] and report.dropped[0].reason == "generated"


def test_a_validation_document_overlapping_a_training_one_is_dropped_from_validation():
    base = _words(300, 0)
    docs = [_text(base), _text(_words(300, 1)), _text(_edit(base, 12, 5)), _text(_words(300, 2))]
    assert 0.55 < _jaccard(docs[0], docs[2]) < 0.8  # below the deduplication threshold, above the overlap one
    in_val = {2, 3}.__contains__
    report = curate(docs, in_val)
    assert report.keep == [True, True, False, True]
    (dropped,) = report.dropped
    assert dropped.reason == "val_overlaps_train" and dropped.of == 0
    assert curate(docs, lambda position: False).keep == [True] * 4  # both in training: not duplicates, kept


def test_prepare_curates_reports_in_the_index_and_can_be_turned_off(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    docs = [_text(_words(200, i)) for i in range(30)]
    docs += [docs[0], _text(_edit(_words(200, 1), 2, 7))]  # an exact and a near duplicate
    docs.append("table = {\n" + "".join(f"    {i}: {i * 7},  # entry {i}\n" for i in range(150)) + "}\n")
    for i, doc in enumerate(docs):
        (folder / f"doc{i:03d}.txt").write_text(doc, encoding="utf-8")
    index, _ = prepare(folder, "char", tmp_path / "curated", val_fraction=0.2, workers=1, progress=False)
    curation = index.index["curation"]
    assert {d["position"]: d["reason"] for d in curation["documents"]} == {
        30: "exact_duplicate",
        31: "near_duplicate",
        32: "generated",
    }
    splits = index.index["splits"]
    assert splits["train"]["documents"] + splits["val"]["documents"] == 30
    assert index.index["settings"]["curation"]["near_duplicate"] == 0.8
    raw, _ = prepare(folder, "char", tmp_path / "raw", val_fraction=0.2, workers=1, curate=False, progress=False)
    assert raw.index["curation"] is None
    assert sum(s["documents"] for s in raw.index["splits"].values()) == 33
    # no validation document left has a near duplicate in training
    decoded = {split: index.tokenizer().decode(index.read(split).tolist()).split("\n\n") for split in ("train", "val")}
    val_signatures = [minhash(shingle_hashes(d)) for d in decoded["val"] if d.strip()]
    train_signatures = [minhash(shingle_hashes(d)) for d in decoded["train"] if d.strip()]
    assert max(similarity(v, t) for v in val_signatures for t in train_signatures) < 0.5
    assert np.isfinite(index.bytes_per_token("train"))
