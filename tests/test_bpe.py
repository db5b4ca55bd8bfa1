"""Byte-level BPE: training, encoding, special tokens, files and the `tokenizer` CLI.

Equality with tiktoken (GPT-2 and GPT-4 ranks, and our own tokenizers exported) is in test_bpe_tiktoken.py.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchlm.cli import main
from scratchlm.data import fetch, load_text
from scratchlm.errors import TokenizerError
from scratchlm.tokenizers import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, tokenizer_from_dict
from scratchlm.tokenizers.bpe import count_chunks
from scratchlm.tokenizers.bpe_ranks import merge_chunk
from scratchlm.tokenizers.bpe_train import MergeLearner

EOT = "<|endoftext|>"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text("tinyshakespeare")


@pytest.fixture(scope="module")
def tok(shakespeare) -> BPETokenizer:
    """A small GPT-4-pattern tokenizer with one special token, trained on the start of Tiny Shakespeare."""
    return BPETokenizer.train(shakespeare[:100_000], 400, special_tokens=[EOT], progress=False)


@pytest.fixture(scope="module")
def reloaded(tok, tmp_path_factory) -> BPETokenizer:
    path = tmp_path_factory.mktemp("bpe") / "tok.bpe"
    tok.save(path)
    return BPETokenizer.load(path)


# ------------------------------------------------------------------------------------------------ training


def test_classic_example_and_tie_break():
    # "aaabdaaabac": ("a","a") occurs 4 times -> 256. Then ("aa","a") and ("a","b") both occur twice; the
    # tie goes to the smaller ids, (97, 98) -> 257. Then ("aa","ab") -> 258.
    tok = BPETokenizer.train("aaabdaaabac", 259, pattern=None, progress=False)
    assert tok.merges == [((97, 97), 256), ((97, 98), 257), ((256, 257), 258)]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_merges_build_the_vocab(tok):
    assert tok.vocab_size == 400 == len(tok.vocab) + 1
    assert tok.special_tokens == {EOT: 399}
    assert len(tok.merges) == 400 - 256 - 1
    for (left, right), new_id in tok.merges:
        assert left < new_id and right < new_id
        assert tok.vocab[new_id] == tok.vocab[left] + tok.vocab[right]
    assert len(set(tok.vocab.values())) == len(tok.vocab)


def test_training_is_deterministic(shakespeare, tok):
    again = BPETokenizer.train(shakespeare[:100_000], 400, special_tokens=[EOT], progress=False)
    assert again.merges == tok.merges


@PROPERTY
@given(text=st.text(alphabet="ab c\n", max_size=120), vocab_extra=st.integers(0, 40))
def test_training_is_deterministic_on_any_text(text, vocab_extra):
    n_possible = len(BPETokenizer.train(text, 256, GPT2_SPLIT_PATTERN, progress=False).merges)
    vocab_size = 256 + min(vocab_extra, n_possible)
    first = BPETokenizer.train(text, vocab_size, GPT2_SPLIT_PATTERN, progress=False)
    second = BPETokenizer.train(text, vocab_size, GPT2_SPLIT_PATTERN, progress=False)
    assert first.merges == second.merges


@PROPERTY
@given(
    text=st.text(alphabet="ab c\n", max_size=200),
    n_merges=st.integers(0, 60),
    pattern=st.sampled_from([None, GPT2_SPLIT_PATTERN]),
)
def test_learner_state_is_what_the_encoder_gives(text, n_merges, pattern):
    # The learner's incremental counts equal a recount, and every chunk's tokens equal the encoder's.
    chunk_counts = count_chunks(text, None if pattern is None else regex.compile(pattern))
    learner = MergeLearner(chunk_counts)
    for _ in range(n_merges):
        if (pair := learner.most_frequent_pair()) is None:
            break
        learner.merge(pair)
    recount: Counter = Counter()
    for chunk, tokens in learner.chunk_tokens().items():
        assert tokens == merge_chunk(chunk, learner.ranks)
        for pair in pairwise(tokens):
            recount[pair] += chunk_counts[chunk]
    assert recount == Counter(learner.counts)


def test_training_shows_a_progress_bar(capsys):
    BPETokenizer.train("hello hello world", 258, progress=True)
    assert "learning BPE merges" in capsys.readouterr().err


def test_without_pattern_merges_cross_spaces():
    tok = BPETokenizer.train("to be or not to be " * 20, 270, pattern=None, progress=False)
    assert any(b" " in token[1:-1] for token in tok.vocab.values())
    assert tok.decode(tok.encode("not to be or")) == "not to be or"


def test_special_tokens_are_cut_out_of_training_text():
    # without the special tokens the text is "one" and "two" 30 times each: exactly four merges
    tok = BPETokenizer.train(f"one{EOT}two{EOT}" * 30, 261, special_tokens=[EOT], progress=False)
    assert {tok.vocab[i] for i in range(256, 260)} == {b"ne", b"one", b"tw", b"two"}
    assert not any(b"|>" in token or b"<|" in token for token in tok.vocab.values())


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("vocab_size", [0, 255, -1, 256.0, "300"])
def test_vocab_size_below_256_is_an_error(vocab_size):
    with pytest.raises(TokenizerError, match="at least 256"):
        BPETokenizer.train("some text", vocab_size, progress=False)


def test_special_tokens_need_room_in_the_vocab():
    with pytest.raises(TokenizerError, match="plus 1 special tokens"):
        BPETokenizer.train("some text", 256, special_tokens=[EOT], progress=False)


def test_unreachable_vocab_size_says_how_many_merges_were_possible():
    # "abab": chunks "abab" -> merges (a,b) then (ab,ab): two merges, then nothing is left to merge.
    assert len(BPETokenizer.train("abab", 258, pattern=None, progress=False).merges) == 2
    with pytest.raises(TokenizerError, match=r"needs 3 merges, but this text allows only 2.*<= 258"):
        BPETokenizer.train("abab", 259, pattern=None, progress=False)


def test_empty_text():
    tok = BPETokenizer.train("", 256, progress=False)
    assert tok.vocab_size == 256 and tok.merges == []
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert tok.decode(tok.encode("still works: é")) == "still works: é"
    with pytest.raises(TokenizerError, match="allows only 0"):
        BPETokenizer.train("", 257, progress=False)


def test_bad_special_tokens_and_patterns():
    with pytest.raises(TokenizerError, match="distinct"):
        BPETokenizer.train("text", 258, special_tokens=[EOT, EOT], progress=False)
    with pytest.raises(TokenizerError, match="list of names"):
        BPETokenizer.train("text", 258, special_tokens={EOT: 5}, progress=False)
    with pytest.raises(TokenizerError, match="invalid split pattern"):
        BPETokenizer.train("text", 256, pattern="(unclosed", progress=False)


# ------------------------------------------------------------------------------------------------ split patterns

# Patterns that match every character, with and without capture groups; chunks are always whole matches.
COVERING_PATTERNS = [
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    None,
    r"(\w)\w*|\s+|[^\w\s]+",
    r"(?:(\p{L})+)|(\p{N}{1,2})|(?P<rest>[\s\S])",
    r"\w+|\W",
]


@pytest.fixture(scope="module", params=COVERING_PATTERNS, ids=lambda p: "none" if p is None else p[:20])
def tok_with_pattern(request, shakespeare) -> BPETokenizer:
    return BPETokenizer.train(shakespeare[:20_000], 300, request.param, [EOT], progress=False)


def test_split_pattern_with_a_capture_group_loses_no_text():
    # findall returns a pattern's groups instead of its matches: "hello world" used to decode to "hw" (one
    # chunk per group: "h", "w", and the space, which the pattern does not match, dropped)
    pattern = r"(\w)\w*|\s"
    tok = BPETokenizer.train("hello world " * 20, 264, pattern, progress=False)
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert b"hello" in tok.ranks and b"world" in tok.ranks  # training, too, counts whole matches
    assert count_chunks("hello world", regex.compile(pattern)) == {b"hello": 1, b" ": 1, b"world": 1}


@pytest.mark.parametrize("pattern", [r"(\w)\w*", r"\w+", r"[a-z]+|!"])
def test_split_pattern_that_leaves_text_unmatched_is_refused(pattern):
    # tiktoken drops text its pattern does not match; a tokenizer here must give it back or refuse
    message = r"matches no chunk at character 5 \(' world!'\).*must not drop text"
    with pytest.raises(TokenizerError, match=message):
        BPETokenizer.train("hello world!", 256, pattern, progress=False)
    tok = BPETokenizer({bytes([b]): b for b in range(256)}, pattern)  # loading such a pattern is allowed...
    with pytest.raises(TokenizerError, match=message):
        tok.encode("hello world!")  # ...but encoding text it does not cover is not
    assert tok.decode(tok.encode("hello")) == "hello"


@PROPERTY
@given(text=st.text())
def test_decode_inverts_encode_for_every_pattern(tok_with_pattern, text):
    ids = tok_with_pattern.encode(text, disallowed_special="none")
    assert tok_with_pattern.decode(ids) == text


@PROPERTY
@given(text=st.text(), pattern=st.sampled_from([r"\w+", r"\w+|\s", r"[a-z ]+", r"(a)|(b)|\s", ""]))
def test_a_pattern_that_does_not_cover_the_text_refuses_instead_of_dropping_it(text, pattern):
    tok = BPETokenizer({bytes([b]): b for b in range(256)}, pattern)
    try:
        ids = tok.encode_ordinary(text)
    except TokenizerError:
        assert sum(len(m.group()) for m in regex.finditer(pattern, text)) < len(text)
    else:
        assert tok.decode(ids) == text


def test_disallowed_special_token_is_a_clear_error(tok):
    text = f"the end{EOT}"
    with pytest.raises(TokenizerError, match=r"special token '<\|endoftext\|>' \(at character 7\)"):
        tok.encode(text)
    assert tok.encode(text, allowed_special="all")[-1] == 399
    assert tok.encode(text, allowed_special={EOT}) == tok.encode(text, allowed_special="all")
    as_text = tok.encode(text, disallowed_special="none")
    assert as_text == tok.encode_ordinary(text) and 399 not in as_text
    with pytest.raises(TokenizerError, match="not special tokens"):
        tok.encode(text, allowed_special={"<|unknown|>"})
    with pytest.raises(TokenizerError, match="the string"):
        tok.encode(text, allowed_special=EOT)


def test_decode_of_invalid_utf8_gives_the_replacement_character(tok):
    euro = tok.encode("€")  # three bytes: E2 82 AC
    assert tok.decode_bytes(euro) == "€".encode()
    assert tok.decode([0xE2]) == "\ufffd"
    assert tok.decode_bytes([0xE2, 0x82]) == b"\xe2\x82"
    assert tok.decode([0xE2, 0x82, ord("x")]) == "\ufffdx"
    with pytest.raises(TokenizerError, match="not in this tokenizer's vocabulary"):
        tok.decode([400])


def test_decode_accepts_tensor_ids(tok):
    torch = pytest.importorskip("torch")
    ids = tok.encode("To be, or not to be")
    assert tok.decode(torch.tensor(ids)) == "To be, or not to be"


def test_repr(tok):
    assert repr(tok) == "BPETokenizer(vocab_size=400, merges=143, special_tokens=1, pattern=GPT4_SPLIT_PATTERN)"


# ------------------------------------------------------------------------------------------------ properties


@PROPERTY
@given(text=st.text())
def test_decode_inverts_encode(tok, text):
    assert tok.decode(tok.encode(text, disallowed_special="none")) == text
    assert tok.decode(tok.encode_ordinary(text)) == text


@PROPERTY
@given(text=st.text())
def test_encode_is_deterministic(tok, reloaded, text):
    ids = tok.encode_ordinary(text)
    assert tok.encode_ordinary(text) == ids
    assert reloaded.encode_ordinary(text) == ids


@PROPERTY
@given(text=st.lists(st.sampled_from(["To be", EOT, " or not", "\n\n", "é😀", "<|", "endoftext|>"])).map("".join))
def test_save_and_load_preserve_every_encoding(tok, reloaded, text):
    for kwargs in ({"allowed_special": "all"}, {"disallowed_special": "none"}):
        assert reloaded.encode(text, **kwargs) == tok.encode(text, **kwargs)
    assert reloaded.decode(tok.encode(text, allowed_special="all")) == text


def test_without_surrogates_lone_ones_become_replacement_characters(tok):
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"


# ------------------------------------------------------------------------------------------------ files


def test_file_format_is_readable_text(tok, tmp_path):
    path = tmp_path / "tok.bpe"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["scratchlm-bpe v1", f"pattern {json.dumps(GPT4_SPLIT_PATTERN)}", "bytes identity"]
    assert lines[3:6] == ["special 1", f'399 "{EOT}"', "merges 143"]
    assert lines[6] == " ".join(map(str, tok.merges[0][0]))
    assert len(lines) == 6 + 143


def test_save_and_load_keep_everything(tok, reloaded):
    assert reloaded.merges == tok.merges
    assert reloaded.vocab == tok.vocab
    assert reloaded.special_tokens == tok.special_tokens
    assert reloaded.pattern == tok.pattern


def test_to_dict_is_plain_data_and_round_trips(tok, tmp_path):
    torch = pytest.importorskip("torch")
    state = tok.to_dict()
    assert state["type"] == "bpe"
    path = tmp_path / "state.pt"
    torch.save({"tokenizer": state}, path)
    loaded = torch.load(path, weights_only=True)["tokenizer"]
    for rebuilt in (BPETokenizer.from_dict(loaded), tokenizer_from_dict(loaded)):
        assert isinstance(rebuilt, BPETokenizer)
        assert rebuilt.merges == tok.merges and rebuilt.special_tokens == tok.special_tokens


def test_pattern_none_round_trips(tmp_path):
    tok = BPETokenizer.train("to be or not to be", 260, pattern=None, special_tokens=["<s>"], progress=False)
    tok.save(tmp_path / "none.bpe")
    assert "pattern none" in (tmp_path / "none.bpe").read_text()
    assert BPETokenizer.load(tmp_path / "none.bpe").pattern is None


def test_from_dict_rejects_malformed_states(tok):
    state = tok.to_dict()
    with pytest.raises(TokenizerError, match="not a scratchlm BPE"):
        BPETokenizer.from_dict({"type": "bpe"})
    with pytest.raises(TokenizerError, match="version"):
        BPETokenizer.from_dict({**state, "version": 2})
    with pytest.raises(TokenizerError, match="merge 1:"):
        BPETokenizer.from_dict({**state, "merges": [[32, 116], [32, 300]]})
    with pytest.raises(TokenizerError, match="already has id"):
        BPETokenizer.from_dict({**state, "merges": [[32, 116], [32, 116]]})


GOOD = [
    "scratchlm-bpe v1",
    'pattern "\\\\s+"',
    "bytes identity",
    "special 1",
    '258 "<s>"',
    "merges 2",
    "97 98",
    "256 99",
]


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "good.bpe"
    path.write_text("\n".join(GOOD) + "\n")
    tok = BPETokenizer.load(path)
    assert tok.pattern == "\\s+" and tok.vocab[257] == b"abc" and tok.special_tokens == {"<s>": 258}


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        (1, "scratchlm-bpe v2", "line 1: version '2' is not supported"),
        (1, "hello", "line 1: not a scratchlm BPE tokenizer file"),
        (2, "pattern \\s+", "line 2: the pattern must be a JSON string"),
        (2, 'pattern "(unclosed"', "invalid split pattern"),
        (3, "bytes 1 2 3", "line 3: expected 256 byte values"),
        (4, "special x", "line 4: expected 'special N'"),
        (5, "258 <s>", "line 5: a special token's name must be a JSON string"),
        (5, '257 "<s>"', "line 5: special token '<s>' has id 257"),
        (6, "merge 2", "line 6: expected a 'merges ...' line"),
        (7, "97", "line 7: expected a merge 'A B'"),
        (8, "256 257", "line 8: a merge must be two ids of earlier tokens"),
        (8, "97 98", "line 8: token b'ab' already has id 256"),
        (9, "1 2", "line 9: unexpected text after the last merge"),
    ],
)
def test_malformed_file_names_the_line(tmp_path, line, replacement, message):
    lines = [*GOOD, ""]  # line 9 is empty unless a case puts something there
    lines[line - 1] = replacement
    path = tmp_path / "bad.bpe"
    path.write_text("\n".join(lines))
    with pytest.raises(TokenizerError, match=re.escape(message)):
        BPETokenizer.load(path)


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "short.bpe"
    path.write_text("\n".join(GOOD[:7]) + "\n")
    with pytest.raises(TokenizerError, match="ends after line 7, expected 2 merges"):
        BPETokenizer.load(path)
    with pytest.raises(TokenizerError, match="no BPE tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.bpe")
    (tmp_path / "binary.bpe").write_bytes(b"\xff\xfe")
    with pytest.raises(TokenizerError, match="not UTF-8"):
        BPETokenizer.load(tmp_path / "binary.bpe")


def test_malformed_tiktoken_file_names_the_line(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nIg== 1\n!!! 2\n")
    with pytest.raises(TokenizerError, match="line 3: '!!!' is not base64"):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)
    path.write_text("IQ== 0\nIg== 0\n")
    with pytest.raises(TokenizerError, match="line 2: rank 0 is given to two tokens"):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)
    path.write_text("IQ== 0\n")
    with pytest.raises(TokenizerError, match="lacks 255 single bytes"):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)


def write_rank_file(path, lines) -> None:
    """A tiktoken rank file: the 256 single bytes with ranks 0..255, then `lines`."""
    single_bytes = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    path.write_text("\n".join(single_bytes + lines) + "\n")


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


def test_tiktoken_file_with_a_missing_rank_is_refused(tmp_path):
    path = tmp_path / "gap.tiktoken"
    write_rank_file(path, [f"{b64(b'ab')} 256", f"{b64(b'abc')} 258"])
    with pytest.raises(TokenizerError, match=r"gap\.tiktoken: the 258 ranks must be 0\.\.257, but rank 257 is missing"):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)
    write_rank_file(path, [f"{b64(b'ab')} 100000000000000"])
    with pytest.raises(TokenizerError, match=r"rank 256 is missing \(the largest is 100000000000000, on line 257\)"):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)
    write_rank_file(path, [f"{b64(b'ab')} 256", f"{b64(b'abc')} 257"])  # in order or not, dense is fine
    assert BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN).vocab_size == 258


def test_tiktoken_file_cut_in_half_is_refused_by_its_special_tokens(tmp_path):
    # half of GPT-2's file is still ranks 0..n-1; its special token's id then lies far beyond the last rank
    lines = fetch("r50k_base").read_bytes().splitlines()
    path = tmp_path / "half.tiktoken"
    path.write_bytes(b"\n".join(lines[: len(lines) // 2]) + b"\n")
    message = f"{path}: special token '{EOT}' has id 50256, but special-token ids must lie below 26153"
    with pytest.raises(TokenizerError, match=re.escape(message)):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN, {EOT: 50256})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["", f"{b64(b'ab')} 256"], "line 257 is blank"),
        (["   "], "line 257 is blank"),
        ([f"{b64(b'ab')} 256", f"{b64(b'ab')} 257"], "line 258: token b'ab' already has rank 256"),
        ([f"{b64(b'ab')} 256", f"{b64(b'cd')} 256"], "line 258: rank 256 is given to two tokens (also on line 257)"),
        ([f"{b64(b'ab')} 7"], "line 257: rank 7 is given to two tokens (also on line 8)"),
        (["YWJ 256"], "line 257: 'YWJ' is not base64"),
        (["Y*Jj 256"], "line 257: 'Y*Jj' is not base64"),
        ([f"{b64(b'ab')} -256"], "line 257: expected 'BASE64 RANK', got 'YWI= -256'"),
        ([f"{b64(b'ab')} 1e14"], "line 257: expected 'BASE64 RANK'"),
        ([f"{b64(b'ab')} 256 extra"], "line 257: expected 'BASE64 RANK'"),
        ([f"{b64(b'ab')}"], "line 257: expected 'BASE64 RANK', got 'YWI='"),
        ([f"{b64(b'ab')} {'9' * 5000}"], "line 257: expected 'BASE64 RANK', got 'YWI= 999"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_malformed_tiktoken_line_is_refused_naming_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.tiktoken"
    write_rank_file(path, lines)
    with pytest.raises(TokenizerError, match=re.escape(f"{path}, {message}")):
        BPETokenizer.from_tiktoken_file(path, GPT2_SPLIT_PATTERN)


def test_empty_tiktoken_file_is_refused(tmp_path):
    (tmp_path / "empty.tiktoken").write_text("")
    with pytest.raises(TokenizerError, match=r"empty\.tiktoken holds no tokens"):
        BPETokenizer.from_tiktoken_file(tmp_path / "empty.tiktoken", GPT2_SPLIT_PATTERN)


BYTES = {bytes([b]): b for b in range(256)}


@pytest.mark.parametrize(
    ("special_tokens", "message"),
    [
        ({EOT: 10**8}, "has id 100000000, but special-token ids must lie below 1281"),
        ({EOT: 10**25}, "has id 10000000000000000000000000, but special-token ids must lie below 1281"),
        ({EOT: 1e8}, "needs a non-negative integer id, got 100000000.0"),
        ({EOT: "256"}, "needs a non-negative integer id, got '256'"),
        ({EOT: True}, "needs a non-negative integer id, got True"),
        ({EOT: -1}, "needs a non-negative integer id, got -1"),
        ({EOT: 65}, "has id 65, which is already b'A'"),
        ({EOT: 256, "<pad>": 256}, "two special tokens have the same id"),
        ({EOT: 256, "<pad>": 256 + 2 + 1024}, "'<pad>' has id 1282, but special-token ids must lie below 1282"),
    ],
)
def test_special_token_ids_that_are_not_just_after_the_ranks_are_refused(special_tokens, message):
    with pytest.raises(TokenizerError, match=re.escape(message)):
        BPETokenizer(BYTES, GPT2_SPLIT_PATTERN, special_tokens)


def test_special_token_ids_may_leave_gaps_like_cl100k_base():
    # cl100k_base: 100256 ranks, specials 100257..100260 and 100276, so 100256 and 100261..100275 are unused
    tok = BPETokenizer(BYTES, None, {EOT: 257, "<a>": 258, "<b>": 256 + 2 + 1023})
    assert tok.vocab_size == 256 + 2 + 1024
    assert tok.decode(tok.encode("x<b>", allowed_special="all")) == "x<b>"


def test_special_token_ids_of_1e8_in_a_tokenizer_file_or_state_are_refused(tmp_path, tok):
    lines = [*GOOD]
    lines[4] = '100000000 "<s>"'
    path = tmp_path / "huge.bpe"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TokenizerError, match=re.escape(f"{path}, line 5: special token '<s>' has id 100000000, but")):
        BPETokenizer.load(path)
    state = tok.to_dict()
    for huge in (10**8, 1e25):
        with pytest.raises(TokenizerError, match=re.escape(f"special token '{EOT}' ")):
            BPETokenizer.from_dict({**state, "special_tokens": [[EOT, huge]]})
        with pytest.raises(TokenizerError, match=re.escape(f"special token '{EOT}' ")):
            tokenizer_from_dict({**state, "special_tokens": [[EOT, huge]]})


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        (5, f'{"9" * 5000} "<s>"', "line 5: expected 'ID NAME' for a special token"),
        (5, '\u00b2 "<s>"', "line 5: expected 'ID NAME' for a special token"),
        (6, "merges \u0663", "line 6: expected 'merges N' with a count N"),
        (7, f"97 {'9' * 5000}", "line 7: expected a merge 'A B'"),
    ],
    ids=["5000-digit id", "superscript two", "arabic-indic three", "5000-digit merge"],
)
def test_numbers_int_cannot_read_in_a_tokenizer_file_are_refused_naming_the_line(tmp_path, line, replacement, message):
    # "²" is a digit to str.isdigit but not to int(); 5000 digits are over int()'s limit: both raised ValueError
    lines = [*GOOD]
    lines[line - 1] = replacement
    path = tmp_path / "bad.bpe"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=re.escape(message)):
        BPETokenizer.load(path)


def test_rank_tables_with_a_gap_are_refused():
    with pytest.raises(TokenizerError, match=r"the 257 token ids must be 0\.\.256, but id 256 is missing"):
        BPETokenizer({**BYTES, b"ab": 10**14}, None)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory, shakespeare):
    folder = tmp_path_factory.mktemp("cli")
    text = folder / "text.txt"
    text.write_text(shakespeare[:20_000], encoding="utf-8")
    out = folder / "tok.bpe"
    argv = ["tokenizer", "train", "--data", str(text), "--vocab-size", "300", "--out", str(out), "--no-progress"]
    assert main([*argv, "--pattern", "gpt2", "--special", EOT]) == 0
    return out


def test_cli_train_writes_a_loadable_tokenizer(trained_file):
    tok = BPETokenizer.load(trained_file)
    assert tok.vocab_size == 300 and tok.pattern == GPT2_SPLIT_PATTERN and tok.special_tokens == {EOT: 299}


def test_cli_encode_decode_round_trip(trained_file, capsys):
    assert main(["tokenizer", "encode", "--tokenizer", str(trained_file), "--text", "To be, or not"]) == 0
    ids = capsys.readouterr().out.split()
    assert [int(i) for i in ids] == BPETokenizer.load(trained_file).encode("To be, or not")
    assert main(["tokenizer", "decode", "--tokenizer", str(trained_file), *ids]) == 0
    assert capsys.readouterr().out == "To be, or not\n"


def test_cli_encode_a_file_and_special_tokens(trained_file, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text(f"Exeunt{EOT}", encoding="utf-8")
    argv = ["tokenizer", "encode", "--tokenizer", str(trained_file), "--file", str(text)]
    assert main(argv) == 2
    assert "--allow-special" in capsys.readouterr().err
    assert main([*argv, "--allow-special"]) == 0
    assert capsys.readouterr().out.split()[-1] == "299"


def test_cli_info(trained_file, capsys):
    assert main(["tokenizer", "info", "--tokenizer", str(trained_file)]) == 0
    out = capsys.readouterr().out
    assert "vocab size:     300 (256 bytes, 43 merges, 1 special)" in out
    assert "pattern:        gpt2" in out and f"{EOT} = 299" in out and "first 10 merges:" in out


def test_cli_published_vocabulary(capsys):
    assert main(["tokenizer", "encode", "--tokenizer", "r50k_base", "--text", "Hello world"]) == 0
    assert capsys.readouterr().out.split() == ["15496", "995"]  # GPT-2's ids for "Hello", " world"
    assert main(["tokenizer", "info", "--tokenizer", "cl100k_base"]) == 0
    assert "vocab size:     100277" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["tokenizer"],
        ["tokenizer", "train", "--data", "tinyshakespeare", "--vocab-size", "0", "--out", "x"],
        ["tokenizer", "train", "--data", "tinyshakespeare", "--vocab-size", "300", "--out", "x", "--pattern", "gpt3"],
        ["tokenizer", "encode", "--tokenizer", "r50k_base"],
        ["tokenizer", "encode", "--tokenizer", "r50k_base", "--text", "a", "--file", "b"],
        ["tokenizer", "decode", "--tokenizer", "r50k_base", "twelve"],
    ],
)
def test_cli_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tokenizer", "info", "--tokenizer", "no/such/file.bpe"], "no BPE tokenizer file"),
        (["tokenizer", "decode", "--tokenizer", "r50k_base", "99999999"], "not in this tokenizer's vocabulary"),
        (["tokenizer", "train", "--data", "no/such.txt", "--vocab-size", "300", "--out", "x"], "no such data file"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_unreachable_vocab_size(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text("abab", encoding="utf-8")
    argv = ["tokenizer", "train", "--data", str(text), "--vocab-size", "400", "--out", str(tmp_path / "t")]
    assert main([*argv, "--no-progress"]) == 2
    assert "allows only" in capsys.readouterr().err
