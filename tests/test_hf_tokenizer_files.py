"""Hugging Face byte-level BPE files read into `BPETokenizer`: ids equal to the `tokenizers` library's.

Every file is built here with `tokenizers` (trained on Tiny Shakespeare, or written by hand for a refusal);
nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchlm.data import load_text
from scratchlm.errors import TokenizerError
from scratchlm.tokenizers import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, CharTokenizer, load
from scratchlm.tokenizers.hf_files import byte_to_unicode, bytes_to_unicode_string, unicode_to_bytes

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

SPECIALS = ["<|endoftext|>", "<pad>"]
# Characters assigned in this Python's Unicode database (newer ones may split differently in each regex engine).
ASSIGNED_TEXT = st.text(st.characters(exclude_categories=("Cn", "Cs")))
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VARIED_TEXT = [
    "",
    " ",
    "hello world",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.",
    "👋🏽 👨‍👩‍👧‍👦 🇫🇷 日本語のテキスト 한국어 مرحبا بالعالم",
    "e\u0301 a\u0308\u0304 ÅÄÖ åäö ß ẞ ǅ ﬁ",
    "line one\r\nline two\r\n\r\n\rend",
    "  leading and trailing  ",
    "     \n\n\n   \t\t  \n \n",
    "x" + " " * 50 + "y",
    "3.14159265358979 and 1,000,000 and 1e-10",
    "I'm you're he's they'll we've I'd I'M YOU'RE 'S 'LL",
    "\x00\x01\x07\x1b\x7f\x85\xa0\u2028\u2029\u3000\ufeff\u200b",
    "tabs\tand\vvertical\fform feeds",
    "<|endoftext|>Hello<|endoftext|> world<|endoftext <pad><pad>",
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n",
    "🙂" * 30,
]


def byte_level_tokenizer(text: str, vocab_size: int, *, use_regex: bool = True) -> Tokenizer:
    """A byte-level BPE trained by `tokenizers` on `text`, the way GPT-2's is built, plus SPECIALS at the end."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator([text], trainer)
    tokenizer.add_special_tokens(SPECIALS)
    return tokenizer


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text("tinyshakespeare")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, shakespeare) -> Path:
    """A folder with tokenizer.json and GPT-2-style vocab.json + merges.txt of one trained tokenizer."""
    folder = tmp_path_factory.mktemp("hf_bpe")
    tokenizer = byte_level_tokenizer(shakespeare, 1000)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.model.save(str(folder))  # vocab.json + merges.txt (without the added tokens)
    return folder


@pytest.fixture(scope="module")
def pairs(hf_folder, tmp_path_factory, shakespeare):
    """(ours, theirs) loaded from the same files: tokenizer.json with and without GPT-2's regex split."""
    one_chunk = tmp_path_factory.mktemp("hf_bpe_one_chunk") / "tokenizer.json"
    byte_level_tokenizer(shakespeare[:30_000], 400, use_regex=False).save(str(one_chunk))
    return [
        (load(hf_folder / "tokenizer.json"), Tokenizer.from_file(str(hf_folder / "tokenizer.json"))),
        (load(one_chunk), Tokenizer.from_file(str(one_chunk))),
    ]


def theirs_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


# ------------------------------------------------------------------------------------------------ the byte table


def test_byte_to_unicode_is_gpt2s_table():
    table = byte_to_unicode()
    assert set(table) == set(range(256)) and len(set(table.values())) == 256
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord("!")] == "!" and table[ord("ÿ")] == "ÿ" and table[ord("¡")] == "¡"  # printable: themselves
    assert table[0] == "\u0100" and table[32] == "Ġ" and table[10] == "Ċ" and table[173] == "Ń"  # the rest: U+0100...
    assert all(char.isprintable() and not char.isspace() for char in table.values())
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    assert table == bytes_to_unicode()


@given(data=st.binary(max_size=64))
def test_unicode_strings_round_trip_bytes(data):
    assert unicode_to_bytes(bytes_to_unicode_string(data)) == data


# ------------------------------------------------------------------------------------------------ equal ids


def test_tokenizer_json_loads_as_a_bpe_tokenizer(pairs):
    ours, theirs = pairs[0]
    assert isinstance(ours, BPETokenizer) and ours.pattern == GPT2_SPLIT_PATTERN
    assert ours.vocab_size == theirs.get_vocab_size() == 1002
    assert ours.special_tokens == {"<|endoftext|>": 1000, "<pad>": 1001}
    assert pairs[1][0].pattern is None  # use_regex=false: the whole text is one chunk
    # the trainer orders the 256 bytes by their characters, which is GPT-2's vocab.json order: the 188 printable
    # bytes first ("!" is id 0), then the others (byte 0, "Ā", is id 188; the space, "Ġ", id 220)
    table = byte_to_unicode()
    assert [ours.vocab[i][0] for i in range(256)] == sorted(range(256), key=table.__getitem__)
    assert ours.vocab[0] == b"!" and ours.vocab[188] == b"\x00" and ours.vocab[220] == b" "


@pytest.mark.parametrize("text", VARIED_TEXT)
def test_ids_equal_the_tokenizers_library(pairs, text):
    for ours, theirs in pairs:
        ids = ours.encode(text, allowed_special="all")
        assert ids == theirs_ids(theirs, text)
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=False) == text


def test_ids_equal_on_shakespeare(pairs, shakespeare):
    ours, theirs = pairs[0]
    text = shakespeare[:300_000]
    assert ours.encode_ordinary(text) == theirs_ids(theirs, text)


@PROPERTY
@given(pieces=st.lists(st.sampled_from(SPECIALS) | ASSIGNED_TEXT))
def test_ids_equal_on_any_text(pairs, pieces):
    text = "".join(pieces)
    for ours, theirs in pairs:
        ids = ours.encode(text, allowed_special="all")
        assert ids == theirs_ids(theirs, text)
        assert ours.decode(ids) == text


def test_vocab_and_merges_give_the_same_tokenizer(hf_folder, pairs):
    from_json = pairs[0][0]
    for spec in (hf_folder / "vocab.json", hf_folder / "merges.txt"):  # the folder prefers tokenizer.json
        assert spec.is_file()
    only_vocab = BPETokenizer.from_hf_files(hf_folder / "vocab.json")
    assert only_vocab.ranks == from_json.ranks and only_vocab.special_tokens == {}
    theirs = Tokenizer(models.BPE.from_file(str(hf_folder / "vocab.json"), str(hf_folder / "merges.txt")))
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in VARIED_TEXT:
        assert only_vocab.encode_ordinary(text) == theirs_ids(theirs, text)


def test_trailing_vocab_entries_become_special_tokens(hf_folder, tmp_path):
    # GPT-2's vocab.json ends with "<|endoftext|>": 50256, after the last merge's token
    vocab = json.loads((hf_folder / "vocab.json").read_text(encoding="utf-8"))
    (tmp_path / "gpt2-vocab.json").write_text(json.dumps({**vocab, "<|endoftext|>": len(vocab)}), encoding="utf-8")
    (tmp_path / "gpt2-merges.txt").write_bytes((hf_folder / "merges.txt").read_bytes())
    tokenizer = load(tmp_path / "gpt2-vocab.json")
    assert tokenizer.special_tokens == {"<|endoftext|>": 1000}


def test_load_takes_a_folder_a_tokenizer_json_or_a_vocab_json(hf_folder, pairs, tmp_path):
    ranks = pairs[0][0].ranks
    for spec in (hf_folder, hf_folder / "tokenizer.json", str(hf_folder / "vocab.json")):
        assert load(spec).ranks == ranks
    char_file = tmp_path / "chars.json"  # JSON of our own still loads as before
    CharTokenizer("ab").save(char_file)
    assert isinstance(load(char_file), CharTokenizer)


def test_loaded_tokenizer_saves_and_reloads_in_our_format(pairs, tmp_path):
    ours, theirs = pairs[0]
    ours.save(tmp_path / "tok.bpe")
    again = load(tmp_path / "tok.bpe")
    text = VARIED_TEXT[3] + "<|endoftext|>" + VARIED_TEXT[4]
    assert again.encode(text, allowed_special="all") == theirs_ids(theirs, text)
    assert again.merges == ours.merges


# ------------------------------------------------------------------------------------------------ writing


@pytest.fixture(scope="module")
def written(tmp_path_factory, shakespeare):
    """(ours, tokenizers' reading of the files ours wrote, their folder): trained with GPT-2's split and with none."""
    out = []
    recipes = [(GPT2_SPLIT_PATTERN, 600, shakespeare[:200_000]), (None, 300, shakespeare[:20_000])]
    for n, (pattern, size, text) in enumerate(recipes):
        ours = BPETokenizer.train(text, size, pattern, SPECIALS, progress=False)
        folder = tmp_path_factory.mktemp(f"written{n}")
        ours.save_hf_files(folder)
        out.append((ours, Tokenizer.from_file(str(folder / "tokenizer.json")), folder))
    return out


def test_our_tokenizers_written_as_hf_files_give_the_same_ids(written):
    for ours, theirs, folder in written:
        for text in VARIED_TEXT:
            assert ours.encode(text, allowed_special="all") == theirs_ids(theirs, text)
        for spec in (folder, folder / "vocab.json"):
            again = load(spec)
            assert again.ranks == ours.ranks and again.special_tokens == ours.special_tokens
        assert load(folder).pattern == ours.pattern  # vocab.json has no pre-tokenizer: GPT-2's split is implied


@PROPERTY
@given(pieces=st.lists(st.sampled_from(SPECIALS) | ASSIGNED_TEXT))
def test_written_files_give_the_same_ids_on_any_text(written, pieces):
    text = "".join(pieces)
    for ours, theirs, _ in written:
        assert ours.encode(text, allowed_special="all") == theirs_ids(theirs, text)


def test_what_hf_files_cannot_hold_is_not_written(tmp_path):
    gpt4 = BPETokenizer.train("to be or not to be, " * 20, 260, GPT4_SPLIT_PATTERN, progress=False)
    with pytest.raises(TokenizerError, match="split with GPT-2's pattern or not at all"):
        gpt4.save_hf_files(tmp_path / "gpt4")
    # merges "bc", "ab", then "ab" + "c": in file order "abc" would encode as "a" + "bc", by rank as "abc"
    state = gpt4.to_dict() | {"pattern": None, "special_tokens": [], "merges": [[98, 99], [97, 98], [257, 99]]}
    with pytest.raises(TokenizerError, match="merge 2 makes 'abc' from 'ab' \\+ 'c'"):
        BPETokenizer.from_dict(state).save_hf_files(tmp_path / "order")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ refusals


def edited(hf_folder: Path, tmp_path: Path, edit) -> Path:
    """A copy of the trained tokenizer.json with `edit(state)` applied."""
    state = json.loads((hf_folder / "tokenizer.json").read_text(encoding="utf-8"))
    edit(state)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def set_part(key, value):
    return lambda state: state.__setitem__(key, value)


def swap_ids(a: int, b: int | None, rename: str = ""):
    """Swap the tokens of ids a and b, or (b None) rename the token of id a."""

    def edit(state):
        vocab = state["model"]["vocab"]
        by_id = {i: t for t, i in vocab.items()}
        if b is None:
            vocab[rename] = vocab.pop(by_id[a])
        else:
            vocab[by_id[a]], vocab[by_id[b]] = b, a

    return edit


def swap_merges(k: int):
    def edit(state):
        merges = state["model"]["merges"]
        merges[k], merges[k + 1] = merges[k + 1], merges[k]

    return edit


def added_flag(flag: str):
    return lambda state: state["added_tokens"][0].__setitem__(flag, True)


def extra_token(state):
    # a token that is neither a byte nor a merge's, before the added tokens
    state["model"]["vocab"]["Ġwherefore"] = 1000
    for n, added in enumerate(state["added_tokens"]):
        added["id"] = 1001 + n


TEMPLATE = json.loads(processors.TemplateProcessing(single="<pad> $A", special_tokens=[("<pad>", 1001)]).__getstate__())
REFUSED_EDITS = {
    "normalizer": (set_part("normalizer", {"type": "NFC"}), "has a normalizer \\('NFC'\\)"),
    "pre-tokenizer": (set_part("pre_tokenizer", {"type": "Whitespace"}), "pre-tokenizer is 'Whitespace', not"),
    "prefix space": (
        set_part("pre_tokenizer", {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}),
        "add_prefix_space=true",
    ),
    "post-processor": (set_part("post_processor", TEMPLATE), "post-processor 'TemplateProcessing' adds"),
    "model": (lambda s: s["model"].__setitem__("type", "WordPiece"), "model is 'WordPiece', not a BPE"),
    "suffix": (lambda s: s["model"].__setitem__("end_of_word_suffix", "</w>"), "end_of_word_suffix='</w>'"),
    "lstrip": (added_flag("lstrip"), "has lstrip=true"),
    "ids 0..255": (swap_ids(5, 300), "ids 0..255 must be the 256 single bytes, but id 5 is"),
    "merge order": (swap_merges(10), "merge 10 .* makes id 267: BPETokenizer needs the merges in the vocabulary"),
    "extra token": (extra_token, "id 1000 does not fit"),
    "not byte-level": (swap_ids(999, None, " x"), "' x' \\(id 999\\) is not byte-level"),
}


@pytest.mark.parametrize("name", REFUSED_EDITS)
def test_unrepresentable_tokenizer_json_is_refused_in_one_line(hf_folder, tmp_path, name):
    edit, message = REFUSED_EDITS[name]
    path = edited(hf_folder, tmp_path, edit)
    with pytest.raises(TokenizerError, match=message) as refused:
        load(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_special_tokens_before_the_bpe_are_refused(tmp_path):
    # the trainer's own special tokens take ids 0, 1, ...: the bytes no longer start at id 0
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(["to be or not to be"] * 10, trainer)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match="added token '<s>' has id 0, among the BPE's tokens"):
        load(tmp_path / "tokenizer.json")


def test_missing_bytes_are_refused(tmp_path):
    # trained without the ByteLevel alphabet: only the bytes seen in the text are tokens
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["to be or not to be"] * 10, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"lacks 249 of the 256 single bytes \(e.g. 0\)"):
        load(tmp_path / "tokenizer.json")


def test_merges_that_rank_order_would_not_follow_are_refused(tmp_path):
    # "bc" is merged first, then "ab", then "ab" + "c": Hugging Face applies merges in that order, so "abc"
    # becomes "a" + "bc" (no merge joins those); merging by rank would join "a" + "bc" into "abc".
    alphabet = [byte_to_unicode()[b] for b in range(256)]
    vocab = {char: i for i, char in enumerate(alphabet)} | {"bc": 256, "ab": 257, "abc": 258}
    merges = [["b", "c"], ["a", "b"], ["ab", "c"]]
    theirs = Tokenizer(models.BPE(vocab, [tuple(m) for m in merges]))
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert theirs_ids(theirs, "abc") == [vocab["a"], 256]
    theirs.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(
        TokenizerError, match=r"merge 2 makes 'abc' from 'ab' \+ 'c', but merging by rank .* 'a' \+ 'bc'"
    ):
        load(tmp_path / "tokenizer.json")


@pytest.mark.parametrize(
    "files, message",
    [
        ({"tokenizer.json": "{not json"}, "is not a Hugging Face tokenizer file: not JSON"),
        ({"vocab.json": json.dumps({"a": 0})}, "no merges.txt at .*merges.txt"),
        ({"vocab.json": json.dumps({"a": 0}), "merges.txt": "#version: 0.2\na b c\n"}, "a merge must be two tokens"),
        ({"notes.txt": "hello"}, "holds neither a tokenizer.json nor a vocab.json"),
    ],
)
def test_broken_files_are_refused_in_one_line(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    spec = tmp_path / next(iter(files)) if "notes.txt" not in files else tmp_path
    with pytest.raises(TokenizerError, match=message) as refused:
        BPETokenizer.from_hf_files(spec)
    assert "\n" not in str(refused.value)
