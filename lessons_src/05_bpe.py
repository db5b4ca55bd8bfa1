# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-id,-colab,-outputId,-executionInfo
#     notebook_metadata_filter: kernelspec,accelerator,colab.gpuType,-jupytext.text_representation.jupytext_version,-language_info.version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Byte-pair encoding
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/05_bpe.ipynb)
#
# So far our models read characters: 65 of them, one token each. That keeps the vocabulary tiny but makes the
# sequences long (every word costs five or six positions of context), and a character the tokenizer never saw
# cannot be encoded at all. Whole words would be short sequences with an enormous vocabulary, and still no
# way to spell a new word. GPT-2, GPT-4 and most models since sit in between with **byte-pair encoding**
# (BPE): start from the 256 possible bytes, so that *any* text can be encoded, then repeatedly glue together
# the pair of adjacent tokens that occurs most often, until the vocabulary has the size you want.
#
# **What you will build**
#
# 1. A feel for Unicode code points and UTF-8 bytes, and why a byte-level vocabulary never meets an unknown
#    symbol.
# 2. BPE by hand: two small pure functions, `get_pair_counts` and `merge_pair`, and a few merges on a toy
#    sentence.
# 3. A simple trainer that recounts every pair after every merge, then the incremental algorithm of the
#    library, with both timed against the vocabulary size.
# 4. Regex pre-splitting, special tokens, and our Shakespeare tokenizers against GPT-2's and GPT-4's
#    vocabularies: how much each compresses which text, and the well-known ways tokenizers trip models up.
# 5. Checks: the notebook's trainer learns exactly the library's merges, and the library encodes exactly like
#    OpenAI's `tiktoken`.
#
# The finished tokenizer is `scratchlm.tokenizers.BPETokenizer`; later lessons import it.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab, install the course library from its repository
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "scratchlm @ git+https://github.com/scratchlm/scratchlm"]
    )

import torch

from scratchlm.runtime import configure_threads, get_device, pick, run_mode, set_seed

device = get_device()
configure_threads()
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %% [markdown]
# Tokenizing is pure Python on the CPU whatever device the setup finds, so the GPU sizes are the CPU ones. The
# rest of the imports, and the sizes that shrink in CI:

# %%
import inspect
import os
import platform
import random
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice, pairwise
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import regex
from matplotlib.ticker import NullLocator
from tqdm.auto import tqdm

from scratchlm.data import fetch, load_text
from scratchlm.errors import TokenizerError
from scratchlm.timing import seconds_per_call
from scratchlm.tokenizers import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, visible
from scratchlm.tokenizers.bpe import count_chunks
from scratchlm.tokenizers.bpe_train import MergeLearner

NAIVE_CHARS = pick(smoke=20_000, cpu=100_000)  # text the simple trainer learns from
NAIVE_VOCAB = pick(smoke=300, cpu=400)
TRAIN_CHARS = pick(smoke=200_000, cpu=None)  # None: the whole training split
NOSPLIT_CHARS = pick(smoke=100_000, cpu=300_000)  # text for the with/without pre-splitting comparison
MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"
Merge = tuple[tuple[int, int], int]  # ((left id, right id), new id), as in BPETokenizer.merges

# %% [markdown]
# ## 1 · Characters, code points and bytes
#
# A Python `str` is a sequence of Unicode **code points**, numbers from 0 to 0x10FFFF; `ord` gives a
# character's number. To store or send text, it is encoded as bytes, nearly always in **UTF-8**, which spends 1
# byte on ASCII and 2 to 4 bytes on every other code point.

# %%
# NBVAL_CHECK_OUTPUT
samples = ["hello", "héllo", "Привет", "你好", "مرحبا", "👋🏽", "🏳️‍🌈"]
print(f"{'text':>8} {'chars':>5} {'bytes':>5}  code points -> UTF-8 bytes")
for s in samples:
    points = " ".join(f"U+{ord(c):04X}" for c in s)
    print(f"{s:>8} {len(s):5} {len(s.encode('utf-8')):5}  {points} -> {list(s.encode('utf-8'))}")

# %% [markdown]
# ASCII letters are one byte each, Cyrillic and Arabic two, Chinese three and emoji four. What looks like one
# emoji can be several code points: a waving hand plus a skin-tone modifier, or a flag, an invisible
# variation selector, a zero-width joiner and a rainbow (14 bytes for one visible symbol).
#
# Why not use code points as the base vocabulary? About 150,000 of them are assigned, most would be seen a
# handful of times or never, and a model would still need an "unknown" token for the rest. Bytes have none of
# those problems: there are exactly 256, and every string, in any script, is a sequence of them.

# %%
s = "naïve café 你好"
data = s.encode("utf-8")
print(list(data))
print(data.decode("utf-8"))
print(data[:-1].decode("utf-8", errors="replace"))  # cut inside the last character

# %% [markdown]
# The round trip is exact. Cut a multi-byte character in half and the bytes are no longer valid UTF-8:
# `errors="replace"` shows the broken end as U+FFFD `�`, which is what a byte-level tokenizer's `decode` does
# with ids that end mid-character.
#
# Our corpus, Tiny Shakespeare, is plain ASCII, so for it bytes and characters coincide:

# %%
text = load_text("tinyshakespeare")
n_train = int(len(text) * 0.9)  # the same 90/10 contiguous split as lessons 01-02
train_text = text[:n_train][:TRAIN_CHARS]
val_text = text[n_train:]
print(
    f"{len(text):,} characters = {len(text.encode('utf-8')):,} bytes; "
    f"training on {len(train_text):,}, validating on {len(val_text):,}"
)

# %% [markdown]
# With 256 byte tokens the whole play is a million tokens long. BPE shortens it by teaching the tokenizer
# the byte sequences that occur most.
#
# ## 2 · BPE by hand
#
# Start from the bytes of a toy sentence. The first ingredient counts how often each adjacent pair of ids
# occurs.


# %%
def get_pair_counts(ids: Sequence[int]) -> Counter[tuple[int, int]]:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs in `ids`."""
    return Counter(pairwise(ids))


toy = "the cat sat on the mat with the hat"
ids = list(toy.encode("utf-8"))
counts = get_pair_counts(ids)
print(f"{len(ids)} ids, {len(counts)} distinct pairs; the most common:")
print([((chr(a) + chr(b)), n) for (a, b), n in counts.most_common(5)])

# %% [markdown]
# `at` and `th` occur four times each, `he` and `e␣` three times. The second ingredient replaces every
# occurrence of one pair by a new id, scanning left to right (so `aaa` with the pair `aa` becomes `[aa, a]`).


# %%
def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with each occurrence of `pair` replaced by `new_id`, non-overlapping, left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


assert merge_pair([5, 6, 5, 6, 7], (5, 6), 256) == [256, 256, 7]
assert merge_pair([1, 1, 1], (1, 1), 256) == [256, 1]

# %% [markdown]
# Now the whole algorithm: find the most frequent pair, give it the next free id (256, 257, ...), merge it, and
# repeat. The vocabulary `vocab` maps each id to its bytes, so a new token's bytes are its two parts' bytes
# joined. Ties go to the pair with the smallest ids, as in the library, so the run is deterministic.


# %%
def render(token_bytes: list[bytes]) -> str:
    """Tokens separated by |, with whitespace drawn by the library's `visible` (␣ space, ⏎ newline, ⇥ tab)."""
    return "|".join(visible(t.decode("utf-8", errors="replace")) for t in token_bytes)


# %%
# NBVAL_CHECK_OUTPUT
vocab = {i: bytes([i]) for i in range(256)}
toy_merges = []
ids = list(toy.encode("utf-8"))
print(f"start    {len(ids):2} tokens  {render([vocab[i] for i in ids])}")
for new_id in range(256, 262):
    counts = get_pair_counts(ids)
    pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent; on a tie, smallest (left, right)
    vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
    ids = merge_pair(ids, pair, new_id)
    toy_merges.append((pair, new_id))
    print(
        f"{pair} -> {new_id} {vocab[new_id]!r:8} x{counts[pair]}  {len(ids):2} tokens  "
        f"{render([vocab[i] for i in ids])}"
    )

# %% [markdown]
# Each merge shortens the sequence by the number of times its pair occurred, and new tokens are built from
# earlier ones: `at` then `at␣`, `th` then `the␣` then `␣the␣`. Notice the last ones: `at␣` and `␣the␣` glue a
# word to the space *after* it. Section 4 shows why real tokenizers forbid that.
#
# The list of merges *is* the tokenizer. To encode new text, start from its bytes and apply the learned merges,
# always the earliest-learned pair present first:


# %%
def encode_with_merges(text: str, merges: list[Merge]) -> list[int]:
    """Encode `text` by repeatedly merging the present pair that was learned first."""
    new_id_of = dict(merges)
    ids = list(text.encode("utf-8"))
    while len(ids) > 1:
        pair = min(get_pair_counts(ids), key=lambda p: new_id_of.get(p, float("inf")))
        if pair not in new_id_of:
            break  # no learned pair left in the sequence
        ids = merge_pair(ids, pair, new_id_of[pair])
    return ids


new_ids = encode_with_merges("the bat sat on the hat", toy_merges)
print(new_ids, render([vocab[i] for i in new_ids]))

# %% [markdown]
# `bat` was never seen, yet it encodes fine: `b` stays a byte and `at` is a learned token. The library encodes
# with the same rule, phrased with a rank table (token bytes → id, lower id = learned earlier), the format
# OpenAI publishes its vocabularies in. Built from our six merges, it gives the same ids:

# %%
toy_tokenizer = BPETokenizer({token: i for i, token in vocab.items()}, pattern=None)
assert toy_tokenizer.encode("the bat sat on the hat") == new_ids
print(toy_tokenizer)

# %% [markdown]
# ## 3 · Training on real text
#
# ### The simple trainer
#
# On real text we first cut the text into chunks, roughly words with their leading space, using a regular
# expression (section 4 is about why); merges happen only inside a chunk. Then the loop above runs over all
# chunks at once: count every pair of every chunk, pick the best, merge it everywhere, recount. It is written as
# a generator, so we can time every merge as it comes.


# %%
def split_chunks(text: str, pattern: str | None) -> list[str]:
    """The chunks the pre-split pattern cuts `text` into (the whole text if there is no pattern)."""
    return regex.findall(pattern, text) if pattern is not None else [text]


def naive_merges(text: str, pattern: str | None = GPT4_SPLIT_PATTERN) -> Iterator[Merge]:
    """Yield merges ((left id, right id), new id) one at a time, recounting every pair for each."""
    chunks = [list(chunk.encode("utf-8")) for chunk in split_chunks(text, pattern)]
    new_id = 256
    while True:
        counts: Counter[tuple[int, int]] = Counter()
        for chunk in chunks:
            counts.update(pairwise(chunk))  # get_pair_counts(chunk), added up over the chunks
        if not counts:
            return  # every chunk is a single token
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent; on a tie, smallest (left, right)
        chunks = [merge_pair(chunk, pair, new_id) for chunk in chunks]
        yield pair, new_id
        new_id += 1


def train_naive(text: str, vocab_size: int, pattern: str | None = GPT4_SPLIT_PATTERN) -> list[Merge]:
    """The first `vocab_size - 256` merges, in the library's format: [((left, right), new_id), ...]."""
    return list(islice(naive_merges(text, pattern), vocab_size - 256))


# %% [markdown]
# We run it on the first 100,000 characters of the play (20,000 in CI) up to a vocabulary of 400 (300), timing
# every merge. The course has one timer, `scratchlm.timing.seconds_per_call(fn, repeats, warmup)`: it calls
# `fn` `warmup` times untimed, then times each of `repeats` calls (waiting for a GPU before reading the clock,
# which matters for later lessons, not for this pure-Python code). A merge cannot be repeated, so each merge is
# one timed call with no warm-up; the first call also pays for the pre-split, which the generator does before
# its first merge. Adding the merges' times up gives the time from the start to every vocabulary size.

# %%
naive_text = text[:NAIVE_CHARS]
simple = naive_merges(naive_text)
naive_result, naive_seconds = [], []
for _ in tqdm(range(NAIVE_VOCAB - 256), desc="simple"):
    naive_seconds += seconds_per_call(lambda: naive_result.append(next(simple)), repeats=1, warmup=0)
naive_times = np.cumsum(naive_seconds)  # seconds from the start to each merge
naive_vocab = {i: bytes([i]) for i in range(256)}
for (a, b), new_id in naive_result:
    naive_vocab[new_id] = naive_vocab[a] + naive_vocab[b]
print(
    f"{len(naive_text):,} characters, {len(naive_result)} merges in {naive_times[-1]:.1f} s "
    f"({1000 * naive_times[-1] / len(naive_result):.0f} ms per merge; {MACHINE})"
)
print("first ten:", render([naive_vocab[256 + i] for i in range(10)]))

# %% [markdown]
# The first merges are the commonest pairs of English in this play: `␣t`, `he`, `␣a`... and then the first whole
# words. Every merge costs a full pass over the text, however rare its pair.
#
# The library's trainer, on the same text with the same pattern and the same tie-break (highest count, then
# the smallest `(left id, right id)`, as the docstring of `BPETokenizer.train` says), must learn exactly these
# merges:

# %%
library_tok = BPETokenizer.train(naive_text, NAIVE_VOCAB, progress=False)
assert library_tok.merges == naive_result
print(
    f"identical: {len(naive_result)} merges; the library's last one is {library_tok.merges[-1]} "
    f"= {library_tok.vocab[NAIVE_VOCAB - 1]!r}"
)

# %% [markdown]
# ### The incremental trainer
#
# The library (`scratchlm/tokenizers/bpe_train.py`) learns the same merges with two changes.
#
# **Train on unique chunks, weighted by their count.** After pre-splitting, text is very repetitive: ` the`
# occurs thousands of times. Each distinct chunk is stored once, with its count as a weight.
#
# **Update the counts where a merge happens, instead of recounting.** Merging `(b, c)` into `X` inside a chunk
# that occurs `w` times changes only the pairs that touch it:
#
# ```
#   before:   … a   b   c   d …        pairs (a,b) (b,c) (c,d)   each −w
#   after:    … a   X       d …        pairs (a,X) (X,d)         each +w
# ```
#
# So the trainer keeps, for every pair, its weighted count and the **positions** of its occurrences (an index
# from pair to places in the unique chunks, laid end to end in a linked list). A merge visits exactly the
# positions of its pair: its cost is proportional to how many (unique) occurrences that pair has, not to the
# size of the text. To find the most frequent pair without scanning all of them, pairs sit in a **heap**
# ordered by (−count, left id, right id). Counts change all the time and a heap cannot update an entry in
# place, so a changed pair is simply pushed again with its new count, and an outdated entry is recognised and
# thrown away when it reaches the top (**lazy deletion**).
#
# Watch it on five unique chunks, one merge:

# %%
# NBVAL_CHECK_OUTPUT
learner = MergeLearner({b" the": 50, b" then": 8, b" there": 4, b" they": 10, b" that": 6})
before = dict(learner.counts)
pair = learner.most_frequent_pair()
print("merge", pair, "occurring at positions", sorted(learner.positions[pair]), "with total weight", before[pair])
learner.merge(pair)
after = learner.counts
for p in sorted(before.keys() | after.keys()):
    if before.get(p) != after.get(p):
        print(f"  {p!s:18} {before.get(p, '-')!s:>3} -> {after.get(p, '-')}")
print(
    f"{len(before) - len(after.keys() & before.keys())} pairs gone, {len(after.keys() - before.keys())} new, "
    f"{sum(before.get(p) == after.get(p) for p in after)} untouched"
)

# %% [markdown]
# The pair `(␣, t)` has a weight of 78 but only five positions, one per unique chunk, so the merge did five small
# updates: `(t, h)` disappeared and `(␣t, h)` took its count, and nothing else changed. Here is the method that
# does one such update, and the heap's lazy deletion:

# %%
print(inspect.getsource(MergeLearner._merge_with_following))
print(inspect.getsource(MergeLearner.most_frequent_pair))

# %% [markdown]
# ### Both trainers, timed
#
# We time the library's trainer the same way as ours, merge by merge, from the start (counting the chunks
# included): on the same slice up to the same vocabulary size, and on the whole play up to 4,096 tokens.


# %%
def incremental_times(text: str, vocab_size: int) -> tuple[np.ndarray, list[tuple[bytes, bytes]]]:
    """Seconds from the start to each merge of the library's trainer (counting the chunks and building the
    index are part of the first merge's time, as the pre-split is for the simple trainer), and the merged pairs."""
    learners, pairs = [], []
    setup = seconds_per_call(
        lambda: learners.append(MergeLearner(count_chunks(text, regex.compile(GPT4_SPLIT_PATTERN)))),
        repeats=1,
        warmup=0,
    )
    learner = learners[0]

    def one_merge() -> None:
        pair = learner.most_frequent_pair()
        learner.merge(pair)
        pairs.append(pair)

    seconds = [seconds_per_call(one_merge, repeats=1, warmup=0)[0] for _ in range(vocab_size - 256)]
    seconds[0] += setup[0]
    return np.cumsum(seconds), pairs


FULL_VOCAB = pick(smoke=1024, cpu=4096)
full_text = text[: pick(smoke=200_000, cpu=None)]
inc_slice_times, slice_pairs = incremental_times(naive_text, NAIVE_VOCAB)
inc_full_times, _ = incremental_times(full_text, FULL_VOCAB)
assert [library_tok.vocab[i] for i in range(256, NAIVE_VOCAB)] == [a + b for a, b in slice_pairs]
print(
    f"{len(naive_text):,} characters to vocab {NAIVE_VOCAB}: simple {naive_times[-1]:.2f} s, "
    f"incremental {inc_slice_times[-1]:.3f} s ({naive_times[-1] / inc_slice_times[-1]:.0f}x faster)"
)
print(
    f"{len(full_text):,} characters to vocab {FULL_VOCAB}: incremental {inc_full_times[-1]:.2f} s, the time of "
    f"{inc_full_times[-1] / (naive_times[-1] / len(naive_times)):.0f} simple merges on {len(naive_text):,} characters "
    f"({MACHINE})"
)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
runs = [
    (f"simple, {len(naive_text) // 1000}k chars", naive_times, "tab:red"),
    (f"incremental, {len(naive_text) // 1000}k chars", inc_slice_times, "tab:blue"),
    (f"incremental, {len(full_text) // 1000}k chars", inc_full_times, "tab:green"),
]
for label, times, color in runs:
    sizes = np.arange(257, 257 + len(times))
    ax1.plot(sizes, times, label=label, color=color)
    per_merge = 1000 * np.diff(times)  # ms; the first merge also paid for the set-up, so it is left out
    ax2.plot(sizes[1:], per_merge, ".", ms=2, color=color, alpha=0.3)
    window = min(25, len(per_merge))  # a running median shows the trend through the timer noise
    median = [np.median(per_merge[i : i + window]) for i in range(len(per_merge) - window + 1)]
    ax2.plot(sizes[1 + window // 2 : 1 + window // 2 + len(median)], median, color=color, lw=2, label=label)
ticks = [t for t in (256, 400, 512, 1024, 2048, 4096) if t <= 256 + len(inc_full_times)]
for ax in (ax1, ax2):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("vocabulary size (256 + merges)")
    ax.legend()
ax1.set_ylabel("seconds from the start")
ax1.set_title("Time to train up to a vocabulary size")
ax2.set_ylabel("ms for this merge")
ax2.set_title("Cost of each merge (dots) and its running median")
fig.suptitle(f"BPE training time, GPT-4 pre-split, Tiny Shakespeare ({MACHINE})")
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: the simple trainer's time grows in proportion to the number of merges, a whole pass over the text
# each; the incremental one spends a large part of its time counting chunks and building the index, and after
# that merges are nearly free, so the whole play up to 4,096 tokens takes as long as about ten simple merges on a
# tenth of it (the count printed above). Right: the simple trainer's cost per merge stays flat. Its upper band
# of dots, about six times the median, is not noise in the timer: those are the merges during which Python's
# garbage collector ran, set off by the tens of thousands of small lists each merge allocates (with
# `gc.disable()`, 59 simple merges on this slice showed no merge over 100 ms, against 15 with it on). The
# incremental trainer's cost falls by more than two orders of magnitude as the merges get rarer, because it is
# proportional to each pair's occurrences.
#
# ## 4 · Regex pre-splitting
#
# Why cut text into chunks at all? Without it, merges are free to cross word boundaries, and the commonest
# pairs of English include a letter followed by a space. We train the library's tokenizer on the same text
# with and without the GPT-4 pattern, and count the learned tokens that the pattern would cut in two.

# %%
split_text = text[:NOSPLIT_CHARS]
tok_split = BPETokenizer.train(split_text, 512, GPT4_SPLIT_PATTERN, progress=False)
tok_nosplit = BPETokenizer.train(split_text, 512, pattern=None, progress=False)
splitter = regex.compile(GPT4_SPLIT_PATTERN)
for name, tok in [("with the pattern", tok_split), ("without", tok_nosplit)]:
    learned = [tok.vocab[i].decode("utf-8") for i in range(256, 512)]
    crossing = [t for t in learned if len(splitter.findall(t)) > 1]
    print(f"{name:17} {len(crossing):3} of 256 learned tokens span chunks")
    if crossing:
        print(f"  the first: {crossing[:10]}\n  the longest: {sorted(crossing, key=len)[-6:]}")

# %% [markdown]
# Without the pattern, nearly half the vocabulary is spent on tokens that end one word and start the next:
# word-plus-space fragments such as `'e '` and `'the '`, and even speaker names with their colon and newline.
# The same sentence, tokenized both ways:

# %%
sentence = "The dog sat on the mat. Then the cat ate the dog.\nFirst Citizen:"
for name, tok in [("with the pattern", tok_split), ("without", tok_nosplit)]:
    print(f"{name:17} {render([tok.vocab[i] for i in tok.encode(sentence)])}")

# %% [markdown]
# Without pre-splitting, `the` is `␣the␣` in one place, `the␣` in another and `he␣` after a capital T, so a
# model would have to learn the same word several times over. With the pattern, every `the` after a space is
# the same token `␣the`, whatever comes after it.
#
# ### The GPT-2 and GPT-4 patterns
#
# Both patterns are alternations tried left to right at each position. GPT-2's: English contractions, an
# optional space plus letters, an optional space plus digits, an optional space plus other symbols, and runs of
# whitespace (leaving the last space to start the next word). GPT-4's changes four things: contractions in any
# case, numbers of at most three digits, one leading non-letter (not just a space) may start a word, and line
# breaks are kept apart from spaces.

# %%
print("GPT-2:", GPT2_SPLIT_PATTERN)
print("GPT-4:", GPT4_SPLIT_PATTERN)

# %%
# NBVAL_CHECK_OUTPUT
example = "I'M sure it's 12345 o'clock!!\n\n    def f(x):\treturn x  "
for name, pattern in [("GPT-2", GPT2_SPLIT_PATTERN), ("GPT-4", GPT4_SPLIT_PATTERN)]:
    chunks = split_chunks(example, pattern)
    assert "".join(chunks) == example
    print(f"{name}: {chunks}")

# %% [markdown]
# GPT-2 splits `'M` into `'` and `M` (it only knows lower-case contractions), keeps ` 12345` whole with its
# space and glues the blank line to the indentation. GPT-4 keeps `'M`, cuts `123` + `45` (the space stays
# alone), lets one non-letter lead a word (`(x`, `'clock`, `\treturn`) and keeps `!!\n\n` together. Both leave one
# space to start the next word (`"   "` + `" def"`), and both cover the text completely: joined, the chunks give
# it back (the `assert`).
#
# ## 5 · Special tokens
#
# A training corpus is many documents, and the model should know where one ends. A **special token** such as
# `<|endoftext|>` gets an id of its own that no ordinary text produces. We give our tokenizer one, training on
# the play's speeches as separate documents joined by it (it is cut out before training, so no merge learns to
# spell it).

# %%
speeches = text[:NOSPLIT_CHARS].split("\n\n")
docs_text = "<|endoftext|>".join(speeches)
tok_special = BPETokenizer.train(docs_text, 512, special_tokens=["<|endoftext|>"], progress=False)
assert not any(b"<|" in token for token in tok_special.vocab.values())
print(tok_special, tok_special.special_tokens)

# %% [markdown]
# `vocab_size=512` counts everything: 256 bytes, 255 merges and the special token, which takes the last id. To
# turn the string `<|endoftext|>` into that id, the caller must allow it:

# %%
two_docs = "First Citizen:\nSpeak.<|endoftext|>MENENIUS:\nWhat work's, my countrymen?"
ids = tok_special.encode(two_docs, allowed_special={"<|endoftext|>"})
print(ids)
print(render([tok_special.decode_bytes([i]) for i in ids]))
assert tok_special.decode(ids) == two_docs

# %% [markdown]
# Id 511 sits between the two documents. By default (`allowed_special="none"`, `disallowed_special="all"`) a
# special token in the text is an error: text from a user that contains `<|endoftext|>` must not silently end a
# document.

# %%
try:
    tok_special.encode(two_docs)
except TokenizerError as e:
    print(f"{type(e).__name__}: {e}")

# %%
as_text = tok_special.encode(two_docs, disallowed_special="none")
print(len(as_text), "tokens:", render([tok_special.decode_bytes([i]) for i in as_text]))

# %% [markdown]
# With `disallowed_special="none"` the same string is just text, spelled with ordinary tokens. These are the
# semantics of `tiktoken`, which the library copies. GPT-2's vocabulary has one special token, GPT-4's five:

# %%
# NBVAL_CHECK_OUTPUT
gpt2 = BPETokenizer.from_pretrained("r50k_base")
gpt4 = BPETokenizer.from_pretrained("cl100k_base")
for name, tok in [("GPT-2 (r50k_base)", gpt2), ("GPT-4 (cl100k_base)", gpt4)]:
    print(f"{name}: {tok}\n  {tok.special_tokens}")

# %% [markdown]
# Both are the same `BPETokenizer` class, loaded from OpenAI's published rank files: about 50k and 100k
# tokens, each with its own split pattern.
#
# ## 6 · Our tokenizers against GPT-2's and GPT-4's
#
# We train ours on the training split at 4,096 tokens. Training is greedy and deterministic, so the tokenizer
# of 512 or 1,024 tokens is a *prefix* of it: the first merges. We build those by cutting the rank table, and
# check once that it equals training to 512 directly.

# %%
tok4096 = BPETokenizer.train(train_text, 4096)


def first_tokens(tok: BPETokenizer, vocab_size: int) -> BPETokenizer:
    """The tokenizer made of the first `vocab_size` ids of `tok` (its first merges)."""
    return BPETokenizer({t: i for t, i in tok.ranks.items() if i < vocab_size}, tok.pattern)


ours = {size: first_tokens(tok4096, size) for size in (512, 1024)} | {4096: tok4096}
assert ours[512].merges == BPETokenizer.train(train_text, 512, progress=False).merges

# %% [markdown]
# The texts: the validation split of the play (never seen by our tokenizer), the source of a Python standard
# library module, a few sentences in German, Chinese and Arabic, and a list of numbers.

# %%
set_seed(0)
texts = {
    "Shakespeare (val)": val_text,
    "Python (textwrap.py)": Path(textwrap.__file__).read_text(encoding="utf-8"),
    "German": (
        "Der Zug nach München fährt heute eine halbe Stunde später ab. Während wir warten, trinken wir "
        "einen Kaffee und lesen die Zeitung. Übermorgen beginnt das Wintersemester an der Universität."
    ),
    "Chinese": (
        "今天的天气很好，我们一起去公园散步吧。学习一门新的语言需要耐心和时间。这家书店的书很多，我每个星期都来看看。"
    ),
    "Arabic": (
        "ذهبت إلى السوق صباح اليوم واشتريت خبزا وفاكهة. القراءة غذاء العقل، "
        "ولذلك أقرأ كتابا جديدا كل شهر. الجو جميل في الربيع."
    ),
    "numbers": " ".join(str(random.randint(0, 10 ** random.randint(1, 9))) for _ in range(200)),
}
tokenizers = {f"ours {n}": tok for n, tok in ours.items()} | {"GPT-2": gpt2, "GPT-4": gpt4}
for name, t in texts.items():
    print(f"{name:22} {len(t):7,} chars {len(t.encode('utf-8')):7,} bytes   {t[:48]!r}")

# %%
print(f"bytes per token (higher = shorter sequences)\n{'':22}" + "".join(f"{n:>10}" for n in tokenizers))
compression = {}
for name, t in texts.items():
    n_bytes = len(t.encode("utf-8"))
    compression[name] = {n: n_bytes / len(tok.encode(t)) for n, tok in tokenizers.items()}
    print(f"{name:22}" + "".join(f"{compression[name][n]:10.2f}" for n in tokenizers))

# %% [markdown]
# On Shakespeare, our 4,096 tokens do better than GPT-2's 50,000 and come close to GPT-4's 100,000: they are all
# spent on one author's words and spelling. Everywhere else ours falls back to short pieces, and on Chinese,
# Arabic and digits to exactly one token per byte, since (almost) none of those bytes occur in its training
# text. That is the byte-level fallback at work: nothing is unknown, it is merely long. GPT-4's larger, more
# multilingual vocabulary beats GPT-2's on every text but one, most of all on code (runs of indentation are
# single tokens) and on Chinese. The exception is numbers: GPT-4 never lets a token hold more than three
# digits, a price it pays for splitting numbers consistently (section 8).
#
# ## 7 · What the 4,096-token vocabulary learned
#
# Encode the training text with it and count how often each token is used.

# %%
train_ids = tok4096.encode(train_text)
usage = np.bincount(train_ids, minlength=4096)
print(
    f"{len(train_text.encode('utf-8')):,} bytes -> {len(train_ids):,} tokens "
    f"({len(train_text.encode('utf-8')) / len(train_ids):.2f} bytes per token)"
)
print(
    f"never used: {(usage[:256] == 0).sum()} of the 256 byte tokens, {(usage[256:] == 0).sum()} of the "
    f"{4096 - 256} learned tokens"
)
unused = [i for i in range(256, 4096) if usage[i] == 0]
for i in unused[:6]:
    part = tok4096.vocab[i]
    whole = min((tok4096.vocab[j] for j in range(i + 1, 4096) if part in tok4096.vocab[j] and usage[j]), key=len)
    print(f"  unused {render([part]):8} -> used inside {render([whole])}")

# %% [markdown]
# Three quarters of the byte tokens never occur: the play is ASCII. The unused *learned* tokens are stepping
# stones, fragments of capitalised speaker names merged on the way to the whole name, which then took every one
# of their occurrences. A model trained on this text would never update their embeddings.
#
# The distribution of the tokens that are used:

# %% [markdown]
# Zipf's law says the count of the item of rank $r$ falls as a power, $\text{count} \propto r^{-s}$, with $s$ close to 1
# for the words of a natural language. On a log-log plot that is a straight line of slope $-s$, so we measure
# $s$ by least squares on $(\ln r, \ln \text{count})$. Not over every rank: the first few tokens are few points with
# a life of their own (the comma, the newline), and in the tail counts of a handful are noisy and bend down as the
# vocabulary runs out. We fit ranks 10 to 1,000 (10 to 300 in CI, whose vocabulary is smaller) and report how much of
# the variance of $\ln \text{count}$ the line explains ($R^2$).

# %%
lengths = np.array([len(tok4096.vocab[i]) for i in range(4096)])
freq = np.sort(usage[usage > 0])[::-1]
rank = np.arange(1, len(freq) + 1)
FIT_RANKS = pick(smoke=(10, 300), cpu=(10, 1000))
fitted = slice(FIT_RANKS[0] - 1, FIT_RANKS[1])  # ranks FIT_RANKS[0] .. FIT_RANKS[1] inclusive
log_rank, log_freq = np.log(rank[fitted]), np.log(freq[fitted])
slope, zipf_intercept = np.polyfit(log_rank, log_freq, 1)  # least squares line: ln count = b + slope * ln rank
zipf_s = -slope
residual = log_freq - (zipf_intercept + slope * log_rank)
r_squared = 1 - residual.var() / log_freq.var()
print(
    f"{len(freq):,} tokens used; least squares over ranks {FIT_RANKS[0]}-{FIT_RANKS[1]}: "
    f"count ∝ rank^-{zipf_s:.3f}, R² = {r_squared:.3f}"
)
design = np.stack([np.ones_like(log_rank), log_rank], axis=1)  # the same fit from the normal equations
assert np.allclose(np.linalg.solve(design.T @ design, design.T @ log_freq), [zipf_intercept, slope])
assert 0.3 < zipf_s < 2 and r_squared > 0.9

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.loglog(rank, freq, color="tab:blue", label="token usage")
ax1.loglog(
    rank, np.exp(zipf_intercept) * rank ** (-zipf_s), "--", color="black", label=f"fit: count ∝ rank^-{zipf_s:.2f}"
)
ax1.loglog(rank, freq[0] / rank, ":", color="gray", label="Zipf's ideal: count ∝ 1 / rank")
ax1.axvspan(*FIT_RANKS, color="0.9", zorder=0, label=f"fitted ranks {FIT_RANKS[0]} to {FIT_RANKS[1]}")
ax1.set_xlabel("rank")
ax1.set_ylabel("occurrences in the training text")
ax1.set_title("Rank-frequency of our 4,096 tokens")
ax1.legend()
bins = np.arange(1, lengths.max() + 2) - 0.5
ax2.hist(lengths, bins=bins, alpha=0.6, label="vocabulary (each token once)")
ax2.hist(
    lengths,
    bins=bins,
    weights=usage * len(tok4096.vocab) / usage.sum(),
    alpha=0.6,
    label="usage (weighted, same total)",
)
ax2.set_xlabel("token length in bytes")
ax2.set_ylabel("tokens")
ax2.set_title("Token lengths")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: over ranks 10 to 1,000 token usage is a power law, count ∝ rank^-0.94 ($R^2$ = 0.998 in the stored run),
# a little flatter than the slope of 1 of Zipf's ideal. The line does not hold at the ends: the ten commonest
# tokens (the comma, `:⏎` after a speaker's name, the newline, ` the`) are used a few thousand to twelve thousand
# times each, less than the fit extrapolates, and the last few hundred ranks fall off a cliff (the stepping-stone
# tokens above, used a handful of times or once). The typical token is used a few dozen times. Right: the
# vocabulary's tokens are mostly 3 to 6 bytes long (whole words with their space), but the text is made of
# shorter ones than that, because punctuation and the commonest words are short.
#
# The first merges and the longest tokens:

# %%
print("first 20:", render([tok4096.vocab[256 + i] for i in range(20)]))
longest = sorted(range(4096), key=lambda i: (-lengths[i], i))[:10]
print("longest: ", render([tok4096.vocab[i] for i in longest]))

# %% [markdown]
# The first merges are English spelling and the commonest little words; the longest tokens are the play's
# favourite long words, each with its leading space.
#
# ## 8 · Tokenizer pitfalls, on GPT-2's and GPT-4's vocabularies
#
# Many surprising failures of language models come from the tokenizer. A helper to show tokens with their ids:


# %%
def show_tokens(tok: BPETokenizer, s: str) -> str:
    """Each token of `s` as its text (whitespace drawn by `visible`) and id."""
    return "  ".join(f"{visible(tok.decode([i]))}:{i}" for i in tok.encode(s))


# %% [markdown]
# **Leading spaces and case.** A word at the start of a text, the same word after a space, and its capitalised
# and upper-case forms are different tokens with unrelated ids; the model has to learn from data that they mean
# the same thing.

# %%
# NBVAL_CHECK_OUTPUT
for s in ["hello", " hello", "Hello", " Hello", "HELLO"]:
    print(f"{s!r:9} GPT-2 {show_tokens(gpt2, s):28} GPT-4 {show_tokens(gpt4, s)}")

# %% [markdown]
# `HELLO` is not even one token: upper-case text is rarer, so it is split into pieces that share nothing with
# `hello`.
#
# **Digits.** GPT-2's pattern keeps a number whole and then lets the merges split it wherever they happen to;
# GPT-4's cuts numbers into groups of at most three digits from the left.

# %%
# NBVAL_CHECK_OUTPUT
for s in ["2019", "2023", "12345", "1234567", "3.14159"]:
    print(f"{s!r:10} GPT-2 {show_tokens(gpt2, s):34} GPT-4 {show_tokens(gpt4, s)}")

# %% [markdown]
# For GPT-2, `2019` is one token but `2023` is two, and `12345` is `123|45`: the pieces of a number do not line
# up with its place values, which makes arithmetic harder to learn. GPT-4's groups are consistent, though they
# count from the left, not from the units as we do (`1234567` is `123|456|7`).
#
# **Glitch tokens.** GPT-2's tokenizer was trained on a different corpus from the model. Strings that were
# frequent there, such as the Reddit user name ` SolidGoldMagikarp`, became single tokens, and then hardly ever
# occurred in the model's training text, so their embeddings were barely trained. Prompts that contained them
# made models with this vocabulary (GPT-2, GPT-3) behave bizarrely, for example unable to repeat the string.

# %%
# NBVAL_CHECK_OUTPUT
for s in [" SolidGoldMagikarp", " petertodd", " davidjl"]:
    print(f"{s!r:21} GPT-2 {show_tokens(gpt2, s):30} GPT-4 {show_tokens(gpt4, s)}")

# %% [markdown]
# GPT-4's vocabulary splits the first two into ordinary pieces, but ` davidjl` is a single token in both (it
# was reported to trip up ChatGPT as well). Our own 4,096 ids have the same risk in small:
# the ids that were never used on the training text (counted in section 7) would keep their random
# initial embeddings.
#
# **Trailing whitespace.** In both vocabularies a space belongs to the *next* word. A prompt that ends with a
# space therefore ends with a lone space token, which the model rarely saw in that position, instead of
# leaving the space to the word it should predict.

# %%
# NBVAL_CHECK_OUTPUT
for s in ["Once upon a", "Once upon a ", "Once upon a time"]:
    print(f"{s!r:19} GPT-2 {show_tokens(gpt2, s)}")

# %% [markdown]
# After `Once upon a ` the natural continuation ` time` (one token) is no longer possible; the model must
# produce `time` without its space, a rarer token.
#
# ## 9 · Checks against the library and tiktoken
#
# We have already asserted that the notebook's trainer learns the library's merges with GPT-4's pattern; the
# same holds with GPT-2's pattern and with none (a short text: without a pattern the simple trainer is slow).

# %%
check_text = text[:5_000]
for pattern in [GPT2_SPLIT_PATTERN, None]:
    assert train_naive(check_text, 320, pattern) == BPETokenizer.train(check_text, 320, pattern, progress=False).merges
print("simple trainer = library trainer: OK")

# %% [markdown]
# OpenAI's `tiktoken` is the reference encoder for the published vocabularies: built from the same rank files
# with the same patterns, it must give exactly our ids on any text whose characters both regex engines know. The
# patterns ask whether a character is a letter (`\p{L}`) or a number (`\p{N}`), and the `regex` package behind
# ours and tiktoken's Rust engine each ship their own Unicode tables: a character one calls a letter and the other
# calls unassigned (with regex 2026.5.9 and tiktoken 0.14.0, the 4,657 letters and numbers new in Unicode 17.0)
# splits differently. The texts below contain none of them. (Its own `get_encoding` would download the files;
# building it from the copies we fetched works offline. The library's tests check that our patterns are
# tiktoken's, and that the two differ on exactly those characters.)

# %%
try:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
except ImportError:
    tiktoken = None
    print("tiktoken is not installed (pip install tiktoken); skipping the comparison with it")

hard_strings = [
    "",
    "  leading and trailing spaces  ",
    "line one\r\nline two\n\n\n\tindented",
    "I'M YOU'RE they'll 'S",
    "naïve café 你好 مرحبا Привет",
    "👋🏽 🏳️‍🌈 👨‍👩‍👧‍👦",
    "e\u0301 (e + combining accent) \u200b\ufeff",
    "3.14159265358979 1,000,000 1e-10",
    "<|endoftext|> as plain text",
    "def f(x):\n    return x ** 2  # comment\n",
]

# %%
if tiktoken is not None:
    for name, tok in [("r50k_base", gpt2), ("cl100k_base", gpt4)]:
        reference = tiktoken.Encoding(
            name,
            pat_str=tok.pattern,
            mergeable_ranks=load_tiktoken_bpe(str(fetch(name))),
            special_tokens=tok.special_tokens,
        )
        assert tok.encode(val_text) == reference.encode_ordinary(val_text)
        for s in hard_strings:
            assert tok.encode(s, disallowed_special="none") == reference.encode(s, disallowed_special=())
        print(f"{name}: same ids as tiktoken on {len(val_text):,} characters and {len(hard_strings)} hard strings")
    exported = tok4096.to_tiktoken()
    assert exported.encode_ordinary(val_text) == tok4096.encode(val_text)
    print("our 4096-token tokenizer exported to tiktoken: same ids")

# %% [markdown]
# And the round trip: every tokenizer decodes what it encodes back to the same string, including our
# Shakespeare tokenizer on scripts it has never seen, and a tokenizer saved to a file loads back identical.

# %%
for tok in [gpt2, gpt4, tok4096, tok_nosplit]:
    for s in hard_strings:
        assert tok.decode(tok.encode(s, disallowed_special="none")) == s
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "shakespeare_4096.bpe"
    tok4096.save(path)
    loaded = BPETokenizer.load(path)
    print("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:6]) + "...")
assert loaded.ranks == tok4096.ranks and loaded.merges == tok4096.merges
print("round trips: OK")

# %% [markdown]
# The file is the format of `bpe_files.py`: a header, the pattern, and one line per merge, `left right`. From
# here on the course imports `BPETokenizer` instead of re-deriving it.
#
# ## Summary
#
# - Text is code points; UTF-8 turns each into 1 to 4 bytes. A byte-level BPE starts from the 256 bytes, so it
#   encodes any string with no unknown token, and decodes it back exactly.
# - Training repeats one step: count adjacent pairs (`get_pair_counts`), merge the most frequent into a new
#   token (`merge_pair`). The ordered list of merges is the tokenizer; encoding replays them, earliest first.
# - The simple trainer recounts the whole corpus for every merge. The library trains on unique chunks weighted
#   by count and keeps a pair → positions index with a lazily updated heap, so a merge costs as much as its
#   pair's occurrences; both learn the same merges, and the incremental one is orders of magnitude faster.
# - A regex pre-split (GPT-2's or GPT-4's pattern) keeps merges inside words, numbers and punctuation runs;
#   without it, vocabulary is wasted on fragments like `e␣` and `the␣`.
# - Special tokens such as `<|endoftext|>` have ids of their own and must be allowed explicitly when encoding.
# - Token usage is close to Zipf's law: a power law with a fitted exponent of 0.94 over ranks 10 to 1,000, with
#   a flatter head and a tail of stepping-stone tokens that training left unused.
# - A small vocabulary trained on one author compresses that author well and everything else poorly; a large,
#   multilingual vocabulary (GPT-4's) compresses code and other scripts far better, and numbers a little worse
#   than GPT-2's, because it never puts more than three digits in a token.
# - Pitfalls come from the vocabulary: leading spaces and case give unrelated ids, numbers split arbitrarily
#   (GPT-2), rarely trained tokens behave strangely, and trailing spaces leave the model off-distribution.
#
# ## Exercises
#
# 1. **Vocabulary size vs sequence length.** Train on the training split for vocabulary sizes 256 to 16,384
#    (powers of two) and plot bytes per token on the validation split. Where do the returns diminish, and what
#    would a larger vocabulary cost a model (think of the embedding and output layers)?
# 2. **Your own pattern.** Write a pre-split pattern that cuts numbers into single digits and keeps
#    contractions with their word, train with it, and compare the first 50 merges and the compression of the
#    `numbers` text with GPT-4's pattern.
# 3. **Faster simple trainer.** Make `naive_merges` count pairs over *unique* chunks weighted by their count,
#    without any incremental update. How much of the speed-up of the library does this one change give?
# 4. **Under-trained tokens.** How many of our 4,096 tokens are used fewer than 10 times on the training text?
#    For each unused learned token, find the merge that used it up (hint: `tok4096.merges`). Propose a change to
#    the trainer that would not keep such tokens, and say what it would break in encoding.
