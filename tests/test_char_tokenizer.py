import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchlm.errors import TokenizerError
from scratchlm.tokenizers import CharTokenizer, tokenizer_from_dict


def test_vocabulary_is_the_sorted_alphabet():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == 8
    assert tok.encode("hello") == [tok.stoi[c] for c in "hello"]


@given(st.text(alphabet="abc xyz\n", min_size=0, max_size=200))
def test_decode_inverts_encode(text):
    tok = CharTokenizer.from_text("abc xyz\n")
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_is_named_with_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"'Z' \(U\+005A\) at position 2"):
        tok.encode("abZ")


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(TokenizerError, match=r"\[0, 3\)"):
        CharTokenizer.from_text("abc").decode([0, 7])


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text("Thou art\nmore lovely — ünïcödé")
    tok.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.chars == tok.chars
    assert tokenizer_from_dict(tok.to_dict()).chars == tok.chars


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not a character tokenizer file"),
        ("[1, 2]", "not a character tokenizer file"),
        (json.dumps({"format": "something-else", "chars": "ab"}), "not a scratchlm character tokenizer"),
        (json.dumps({"format": "scratchlm-char-tokenizer", "version": 99, "chars": "ab"}), "version 99"),
    ],
)
def test_load_rejects_foreign_or_corrupt_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match=message):
        CharTokenizer.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer file"):
        CharTokenizer.load(tmp_path / "nope.json")


def test_unknown_tokenizer_type():
    with pytest.raises(TokenizerError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "wordpiece"})
