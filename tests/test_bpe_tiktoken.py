"""Token-for-token equality with tiktoken.

GPT-2's (r50k_base) and GPT-4's (cl100k_base) published ranks, loaded by us and by tiktoken, must give the
same ids on Tiny Shakespeare, on Python's standard library sources and on hard strings; tokenizers we train
must give the same ids as their own tiktoken export.
"""

from __future__ import annotations

import os
import sysconfig
from itertools import chain
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchlm.data import fetch, load_text
from scratchlm.errors import TokenizerError
from scratchlm.tokenizers import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer
from scratchlm.tokenizers.bpe import PRETRAINED
from scratchlm.tokenizers.bpe_ranks import _merge_by_scanning, _merge_with_heap

tiktoken = pytest.importorskip("tiktoken")
from tiktoken.load import load_tiktoken_bpe  # noqa: E402  (after the skip: only if tiktoken is installed)

# Characters assigned in this Python's Unicode database. Code points assigned only in newer Unicode versions
# (e.g. U+323B0, CJK Extension J, new in Unicode 17.0) can be letters to the `regex` package but unassigned
# to tiktoken's Rust regex engine, so the two split them differently; that is a Unicode-table difference,
# not a tokenizer bug, and the Unicode section below pins it down to exactly those code points.
ASSIGNED_TEXT = st.text(st.characters(exclude_categories=("Cn", "Cs")))
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

HARD_STRINGS = [
    "",
    " ",
    "\n",
    "hello world",
    "👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷",  # skin tone modifier, ZWJ family, flag sequences
    "日本語のテキスト、中文文本，한국어 텍스트",
    "مرحبا بالعالم، هذا نص عربي",
    "e\u0301 a\u0308\u0304 Z\u0351\u0356\u0359a\u0352\u0367l\u036bg\u0335o",  # combining marks
    "line one\r\nline two\r\n\r\n\rend",
    "  leading and trailing  ",
    "     \n\n\n   \t\t  \n \n",
    "x" + " " * 50 + "y",
    "\n" * 20 + " " * 20,
    "3.14159265358979323846264338327950288419716939937510 and 1,000,000 and 1e-10",
    "12345678901234567890123456789012345678901234567890",
    "I'm you're he's they'll we've I'd she'll",
    "I'M YOU'RE HE'S THEY'LL WE'VE I'D SHE'LL 'S 'LL 'Ve",
    "\x00\x01\x02\x07\x08\x1b\x1c\x1d\x1e\x1f\x7f\x85\xa0",
    "\u2028\u2029\u3000\ufeff\u200b\u200d",
    "tabs\tand\vvertical\fform feeds",
    "<|endoftext|> is just text here",
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n",
    "a\ud800b",  # a lone surrogate: both sides replace it with U+FFFD
    "🙂" * 30,
    "ÅÄÖ åäö ß ẞ ǅ ǈ ﬁ ﬀ",
]


def stdlib_sources() -> str:
    """Every .py file of this Python's standard library that is UTF-8 (about 30 MB of varied real text:
    code, docstrings, comments in many languages, odd whitespace), in a fixed order, joined by newlines."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in ("site-packages", "dist-packages", "__pycache__")]
        files.extend(Path(folder, name) for name in names if name.endswith(".py"))
    texts = []
    for path in sorted(files):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return "\n".join(texts)


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text("tinyshakespeare")


@pytest.fixture(scope="module")
def stdlib() -> str:
    return stdlib_sources()


@pytest.fixture(scope="module", params=["r50k_base", "cl100k_base"])
def published(request):
    """(ours, tiktoken's) for a published vocabulary, both from the same rank file."""
    name = request.param
    pattern, special_tokens = PRETRAINED[name]
    path = fetch(name)
    ours = BPETokenizer.from_tiktoken_file(path, pattern, special_tokens)
    reference = tiktoken.Encoding(
        name, pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens=special_tokens
    )
    return ours, reference


@pytest.fixture(scope="module")
def trained(shakespeare):
    """Tokenizers we train, with each split pattern, and their tiktoken exports."""
    tokenizers = [
        BPETokenizer.train(shakespeare, 1024, GPT4_SPLIT_PATTERN, ["<|endoftext|>"], progress=False),
        BPETokenizer.train(shakespeare[:200_000], 600, GPT2_SPLIT_PATTERN, progress=False),
        BPETokenizer.train(shakespeare[:20_000], 400, None, ["<s>", "</s>"], progress=False),
    ]
    return [(tok, tok.to_tiktoken()) for tok in tokenizers]


def test_our_patterns_are_tiktokens(monkeypatch):
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})  # no download
    assert openai_public.r50k_base()["pat_str"] == GPT2_SPLIT_PATTERN
    assert openai_public.cl100k_base()["pat_str"] == GPT4_SPLIT_PATTERN
    assert openai_public.r50k_base()["special_tokens"] == PRETRAINED["r50k_base"][1]
    assert openai_public.cl100k_base()["special_tokens"] == PRETRAINED["cl100k_base"][1]


# ------------------------------------------------------------------------------------------------ published


def test_published_shakespeare(published, shakespeare):
    ours, reference = published
    assert ours.encode_ordinary(shakespeare) == reference.encode_ordinary(shakespeare)


def test_published_stdlib(published, stdlib):
    ours, reference = published
    ids = ours.encode_ordinary(stdlib)
    assert ids == reference.encode_ordinary(stdlib)
    assert ours.decode(ids) == stdlib


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_published_hard_strings(published, text):
    ours, reference = published
    ids = ours.encode_ordinary(text)
    assert ids == reference.encode_ordinary(text)
    assert ours.decode(ids) == reference.decode(ids) == text.replace("\ud800", "\ufffd")


@PROPERTY
@given(text=ASSIGNED_TEXT)
def test_published_any_text(published, text):
    ours, reference = published
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


def test_published_special_tokens(published):
    ours, reference = published
    text = "<|endoftext|>Hello<|endoftext|> world<|endoftext"
    assert ours.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
    assert ours.encode(text, disallowed_special="none") == reference.encode(text, disallowed_special=())
    with pytest.raises(ValueError):
        reference.encode(text)
    with pytest.raises(TokenizerError):
        ours.encode(text)
    assert ours.vocab_size == reference.n_vocab


@PROPERTY
@given(pieces=st.lists(st.sampled_from(["<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>"]) | ASSIGNED_TEXT))
def test_published_any_text_with_special_tokens(published, pieces):
    ours, reference = published
    text = "".join(pieces)
    assert ours.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")


def test_published_vocab_round_trips_through_merges():
    # GPT-2's file lists tokens, not merges: recover them, save them, and get the same ranks back
    ours = BPETokenizer.from_tiktoken_file(fetch("r50k_base"), GPT2_SPLIT_PATTERN, {"<|endoftext|>": 50256})
    assert ours.merges[0] == ((220, 83), 256)  # " t", GPT-2's first merge
    for (left, right), new_id in ours.merges[:2000]:
        assert ours.vocab[new_id] == ours.vocab[left] + ours.vocab[right] and max(left, right) < new_id
    rebuilt = BPETokenizer.from_dict(ours.to_dict())
    assert rebuilt.ranks == ours.ranks and rebuilt.special_tokens == ours.special_tokens


@pytest.fixture(scope="module")
def r50k_ranks():
    return load_tiktoken_bpe(str(fetch("r50k_base")))


@PROPERTY
@given(data=st.binary(max_size=400) | st.text(alphabet=" ea\nt", max_size=400).map(str.encode))
def test_long_chunk_merging_agrees_with_the_short_loop(r50k_ranks, data):
    # merge_chunk switches to a heap for long chunks; both must give the same tokens
    assert _merge_with_heap(data, r50k_ranks) == _merge_by_scanning(data, r50k_ranks.get)


# ------------------------------------------------------------------------------------------------ trained


def test_trained_shakespeare_and_stdlib(trained, shakespeare, stdlib):
    for ours, exported in trained:
        # without a split pattern the whole text is one chunk: a shorter text keeps that quick
        length = 300_000 if ours.pattern else 30_000
        for text in (shakespeare[:length], stdlib[: length // 3]):
            assert ours.encode_ordinary(text) == exported.encode_ordinary(text)
        text = "First Citizen:" + "".join(ours.special_tokens) + "Before we proceed"
        assert ours.encode(text, allowed_special="all") == exported.encode(text, allowed_special="all")


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_trained_hard_strings(trained, text):
    for ours, exported in trained:
        assert ours.encode_ordinary(text) == exported.encode_ordinary(text)


@PROPERTY
@given(text=ASSIGNED_TEXT)
def test_trained_any_text(trained, text):
    for ours, exported in trained:
        ids = ours.encode_ordinary(text)
        assert ids == exported.encode_ordinary(text)
        assert ours.decode(ids) == text


@pytest.fixture(scope="module")
def trained_with_groups(shakespeare):
    """Tokenizers whose split patterns have capture groups, and their tiktoken exports."""
    patterns = [r"(\p{L})\p{L}*|(\p{N})+|\s+|[^\s\p{L}\p{N}]+", r"(?:(\p{L})+)|(?P<digits>\p{N}{1,2})|([\s\S])"]
    tokenizers = [BPETokenizer.train(shakespeare[:20_000], 300, pattern, progress=False) for pattern in patterns]
    return [(tok, tok.to_tiktoken()) for tok in tokenizers]


@PROPERTY
@given(text=ASSIGNED_TEXT)
def test_split_pattern_with_capture_groups_gives_tiktokens_ids(trained_with_groups, text):
    # chunks are whole matches, never the groups' text, in tiktoken and here alike
    for ours, exported in trained_with_groups:
        ids = ours.encode_ordinary(text)
        assert ids == exported.encode_ordinary(text)
        assert ours.decode(ids) == text


# ------------------------------------------------------------------------------------------------ Unicode versions

# Every code point but the surrogates, which are not characters (UTF-8 cannot encode them).
EVERY_CODE_POINT = "".join(map(chr, chain(range(0xD800), range(0xE000, 0x110000))))
SINGLE_BYTES = {bytes([b]): b for b in range(256)}

# The character classes the two split patterns are made of, besides literal characters: a pattern's chunks are
# decided by which of these each code point belongs to. (The case-insensitive ones are the contractions'.)
PATTERN_CLASSES = [
    r"\p{L}",
    r"\p{N}",
    r"\s",
    r"[\r\n]",
    r"[^\s\p{L}\p{N}]",
    r"[^\r\n\p{L}\p{N}]",
    r"(?i:[sdmt])",
    r"(?i:[lver])",
]


def our_class(pattern: str) -> set[str]:
    """The code points that the `regex` package (our split) matches with the one-character `pattern`."""
    return set(regex.findall(pattern, EVERY_CODE_POINT))


def tiktoken_class(pattern: str) -> set[str]:
    """The code points that tiktoken's regex engine matches with the one-character `pattern`: with a rank table
    of single bytes, the ids of its chunks are the bytes of the characters it matched."""
    probe = tiktoken.Encoding("class", pat_str=pattern, mergeable_ranks=SINGLE_BYTES, special_tokens={})
    return set(probe.decode(probe.encode_ordinary(EVERY_CODE_POINT)))


@pytest.fixture(scope="module")
def unicode_version_gap() -> set[str]:
    """The code points that one engine's Unicode tables call a letter or a number and the other's leave
    unassigned: characters added in a Unicode version newer than one of the two knows. (regex 2026.5.9 knows
    Unicode 17.0, tiktoken 0.14.0 Unicode 16.0: 4,657 code points, e.g. U+A7CE and CJK Extension J.)"""
    letters_and_numbers = r"[\p{L}\p{N}]"
    ours_only = our_class(letters_and_numbers) & tiktoken_class(r"\p{Cn}")
    theirs_only = tiktoken_class(letters_and_numbers) & our_class(r"\p{Cn}")
    return ours_only | theirs_only


def test_split_classes_differ_from_tiktokens_only_on_characters_one_unicode_version_lacks(unicode_version_gap):
    # every code point U+0000..U+10FFFF, in every class the GPT-2 and GPT-4 patterns use
    assert our_class(r"[\p{L}\p{N}]") ^ tiktoken_class(r"[\p{L}\p{N}]") == unicode_version_gap
    for pattern in PATTERN_CLASSES:
        assert our_class(pattern) ^ tiktoken_class(pattern) <= unicode_version_gap, pattern
    for pattern in (r"\s", r"[\r\n]", r"(?i:[sdmt])", r"(?i:[lver])"):
        assert our_class(pattern) == tiktoken_class(pattern), pattern


def test_ids_differ_from_tiktokens_exactly_on_characters_one_unicode_version_lacks(published, unicode_version_gap):
    ours, reference = published
    # each such character changes the split of "c's": a letter keeps "'s" as a chunk, an unknown one takes "'"
    gap = sorted(unicode_version_gap)
    probes = [f"{c}'s" for c in gap]
    assert all(ours.encode_ordinary(probe) != reference.encode_ordinary(probe) for probe in probes)
    # every other code point gives the same ids, in several contexts (one code point in 16: ours encodes 1.1M
    # distinct chunks at about 8 µs each, too slow for every one; the class sweep above covers them all)
    sample = [c for c in EVERY_CODE_POINT[::16] if c not in unicode_version_gap]
    text = "".join(f"{c}'s a{c}1 {c}\n" for c in sample)
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)
