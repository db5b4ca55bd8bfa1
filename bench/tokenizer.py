"""Our byte-level BPE against the Rust libraries, side by side in one run.

    python bench/tokenizer.py [--repeats 3] [--vocab-size 4096] [--naive-merges 3]

Training: `BPETokenizer.train` against HF `tokenizers` (BpeTrainer, same GPT-4 split, byte-level) on Tiny
Shakespeare. With --naive-merges N > 0 it also times N steps of the textbook trainer that recounts every
pair of the corpus after each merge, and extrapolates to the same vocabulary size.
Encoding: `encode_ordinary` against tiktoken with GPT-2's (r50k_base) and GPT-4's (cl100k_base) ranks on
Tiny Shakespeare; the ids must be identical.

Each figure is the best of --repeats runs (time.perf_counter), so that other work on the machine inflates
it as little as possible. Our encoder keeps no cache between calls, so every repeat does the full work.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import scratchlm.tokenizers as tok
from scratchlm.data import fetch


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The shortest of `repeats` timed calls, and the last call's result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def train_with_hf(text: str, vocab_size: int, pattern: str):
    """HF tokenizers' byte-level BPE with the same split pattern and the 256 byte tokens as the alphabet."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator([text], trainer=trainer)
    return tokenizer


def naive_seconds_per_merge(text: str, pattern: str, n_merges: int) -> float:
    """Time the textbook trainer: every chunk of the corpus, every pair recounted after each merge."""
    import regex

    chunks = [list(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text)]
    start = time.perf_counter()
    for new_id in range(256, 256 + n_merges):
        counts = Counter(pair for ids in chunks for pair in pairwise(ids))
        pair = max(counts, key=counts.get)
        for i, ids in enumerate(chunks):
            merged, j = [], 0
            while j < len(ids):
                if j + 1 < len(ids) and (ids[j], ids[j + 1]) == pair:
                    merged.append(new_id)
                    j += 2
                else:
                    merged.append(ids[j])
                    j += 1
            chunks[i] = merged
    return (time.perf_counter() - start) / n_merges


def time_encoding(tokenizer_class, path: Path, pattern: str, text: str, repeats: int) -> tuple[float, float, int]:
    """Best times of our encoder and tiktoken's on `text` with the rank file `path`; the ids must agree."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ours = tokenizer_class.from_tiktoken_file(path, pattern)
    reference = tiktoken.Encoding(
        path.stem, pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens={}
    )
    ours_s, ours_ids = best_of(repeats, lambda: ours.encode_ordinary(text))
    reference_s, reference_ids = best_of(repeats, lambda: reference.encode_ordinary(text))
    assert ours_ids == reference_ids, f"{path.name}: our ids differ from tiktoken's"
    return ours_s, reference_s, len(ours_ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--naive-merges", type=int, default=3, help="0 skips the textbook trainer")
    args = parser.parse_args()

    import tiktoken
    import tokenizers as hf_tokenizers

    text_path, r50k_path, cl100k_path = (fetch(name) for name in ("tinyshakespeare", "r50k_base", "cl100k_base"))
    text = text_path.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, tiktoken {tiktoken.__version__}, "
        f"tokenizers {hf_tokenizers.__version__}; Tiny Shakespeare {megabytes:.2f} MB; best of {args.repeats}"
    )

    print(f"\ntraining, GPT-4 split, vocab {args.vocab_size}")
    ours_s, trained = best_of(
        args.repeats, lambda: tok.BPETokenizer.train(text, args.vocab_size, tok.GPT4_SPLIT_PATTERN, progress=False)
    )
    hf_s, hf = best_of(args.repeats, lambda: train_with_hf(text, args.vocab_size, tok.GPT4_SPLIT_PATTERN))
    assert trained.vocab_size == hf.get_vocab_size() == args.vocab_size
    print(f"  scratchlm               {ours_s:7.2f} s")
    print(f"  HF tokenizers (Rust)    {hf_s:7.2f} s   scratchlm / HF = {ours_s / hf_s:.2f}x")
    if args.naive_merges > 0:
        per_merge = naive_seconds_per_merge(text, tok.GPT4_SPLIT_PATTERN, args.naive_merges)
        estimate = per_merge * (args.vocab_size - 256)
        print(
            f"  textbook recount        {per_merge:7.2f} s per merge ({args.naive_merges} timed), "
            f"~{estimate:.0f} s for vocab {args.vocab_size} = {estimate / ours_s:.0f}x scratchlm"
        )

    print("\nencoding Tiny Shakespeare (encode_ordinary)")
    for name, path, pattern in (
        ("r50k_base", r50k_path, tok.GPT2_SPLIT_PATTERN),
        ("cl100k_base", cl100k_path, tok.GPT4_SPLIT_PATTERN),
    ):
        ours_s, ref_s, n_ids = time_encoding(tok.BPETokenizer, path, pattern, text, args.repeats)
        print(
            f"  {name:<12} scratchlm {megabytes / ours_s:6.2f} MB/s, tiktoken {megabytes / ref_s:6.2f} MB/s, "
            f"time scratchlm / tiktoken = {ours_s / ref_s:.2f}x ({n_ids} identical ids)"
        )

    return 0


if __name__ == "__main__":
    sys.exit(main())
