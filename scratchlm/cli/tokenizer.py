"""`python -m scratchlm tokenizer`: train, inspect and use byte-level BPE tokenizers.

    python -m scratchlm tokenizer train --data tinyshakespeare --vocab-size 4096 --out runs/bpe.txt
    python -m scratchlm tokenizer encode --tokenizer runs/bpe.txt --text "To be, or not to be"
    python -m scratchlm tokenizer decode --tokenizer runs/bpe.txt 2514 387 11 393
    python -m scratchlm tokenizer info --tokenizer cl100k_base

`--tokenizer` takes a tokenizer file (BPE, or a character tokenizer's JSON), a Hugging Face byte-level BPE
(a tokenizer.json, a vocab.json with its merges.txt beside it, or a folder holding either) or the name of a
published vocabulary: r50k_base (GPT-2) or cl100k_base (GPT-4), the same rule as `train --tokenizer`
(`scratchlm.tokenizers.load`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scratchlm.cli.args import existing_file, positive_int
from scratchlm.errors import TokenizerError
from scratchlm.files import check_writable
from scratchlm.tokenizers import load as load_tokenizer
from scratchlm.tokenizers.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PRETRAINED, BPETokenizer
from scratchlm.tokenizers.bpe_ranks import recover_merges

PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "none": None}
SHOWN_MERGES = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train, inspect and use byte-level BPE tokenizers",
        description="Train, inspect and use byte-level BPE tokenizers (GPT-2/GPT-4 style).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser(
        "train",
        help="learn a BPE vocabulary from a text and save it",
        description="Learn a byte-level BPE vocabulary from a text (merges of the most frequent adjacent pairs, "
        "within the chunks of the split pattern) and save it in the scratchlm-bpe text format.",
    )
    train.add_argument("--data", required=True, help="a registered data file (tinyshakespeare) or a text file")
    train.add_argument("--vocab-size", type=positive_int, required=True, help="bytes + merges + special tokens")
    train.add_argument("--out", type=Path, required=True, help="where to write the tokenizer file")
    train.add_argument("--pattern", choices=PATTERNS, default="gpt4", help="pre-split regex (default: gpt4)")
    train.add_argument(
        "--special", action="append", metavar="TOKEN", help="a special token, e.g. '<|endoftext|>' (repeatable)"
    )
    train.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar (default: on)"
    )
    train.set_defaults(func=run_train)

    encode = actions.add_parser(
        "encode",
        help="print the token ids of a text",
        description="Print the token ids of a text (--text) or of a UTF-8 file (--file), separated by spaces.",
    )
    _add_tokenizer_argument(encode)
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to encode")
    source.add_argument("--file", type=existing_file, help="a UTF-8 text file to encode")
    encode.add_argument("--allow-special", action="store_true", help="encode special tokens in the text as their ids")
    encode.set_defaults(func=run_encode)

    decode = actions.add_parser(
        "decode", help="print the text of token ids", description="Print the text that a list of token ids stands for."
    )
    _add_tokenizer_argument(decode)
    decode.add_argument("ids", type=int, nargs="+", metavar="ID", help="token ids")
    decode.set_defaults(func=run_decode)

    info = actions.add_parser(
        "info",
        help="vocabulary size, split pattern, special tokens and first merges",
        description="Print a tokenizer's vocabulary size, split pattern and special tokens, and its first merges "
        "(a character tokenizer: its characters).",
    )
    _add_tokenizer_argument(info)
    info.set_defaults(func=run_info)


def _add_tokenizer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        required=True,
        help=f"a tokenizer file (ours or Hugging Face's tokenizer.json, vocab.json or their folder), or one of: "
        f"{', '.join(PRETRAINED)}",
    )


def run_train(args: argparse.Namespace) -> int:
    from scratchlm.data import load_text

    check_writable(args.out)  # before training, not after: a bad --out must not cost the work
    text = load_text(args.data)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, args.vocab_size, PATTERNS[args.pattern], args.special, progress=args.progress)
    seconds = time.perf_counter() - start
    tokenizer.save(args.out)
    n_tokens = len(tokenizer.encode_ordinary(text))
    print(f"trained {tokenizer!r} in {seconds:.1f} s")
    print(f"{len(text.encode('utf-8'))} bytes of text -> {n_tokens} tokens; saved to {args.out}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from scratchlm.data import load_text

    tokenizer = load_tokenizer(args.tokenizer)
    text = args.text if args.text is not None else load_text(args.file)
    if not isinstance(tokenizer, BPETokenizer):  # characters have no special tokens
        print(" ".join(map(str, tokenizer.encode(text))))
        return 0
    try:
        ids = tokenizer.encode(text, allowed_special="all" if args.allow_special else "none")
    except TokenizerError as e:  # the only one: a special token in the text, which a flag allows
        raise TokenizerError(f"{e} (here: add --allow-special)") from None
    print(" ".join(map(str, ids)))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    print(load_tokenizer(args.tokenizer).decode(args.ids))
    return 0


def run_info(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    if not isinstance(tokenizer, BPETokenizer):
        print(f"tokenizer:      {args.tokenizer}")
        print(f"vocab size:     {tokenizer.vocab_size} characters: {''.join(tokenizer.chars)!r}")
        return 0
    n_merges = len(tokenizer.ranks) - 256
    n_special = len(tokenizer.special_tokens)
    print(f"tokenizer:      {args.tokenizer}")
    print(f"vocab size:     {tokenizer.vocab_size} (256 bytes, {n_merges} merges, {n_special} special)")
    names = {GPT2_SPLIT_PATTERN: "gpt2", GPT4_SPLIT_PATTERN: "gpt4", None: "none"}
    shown = "" if tokenizer.pattern is None else f": {tokenizer.pattern}"
    print(f"pattern:        {names.get(tokenizer.pattern, 'custom')}{shown}")
    specials = ", ".join(f"{name} = {i}" for name, i in tokenizer.special_tokens.items())
    print(f"special tokens: {specials or 'none'}")
    if n_merges:
        # recovering only the first merges keeps this instant for a 100k-token published vocabulary
        print(f"first {min(n_merges, SHOWN_MERGES)} merges:")
        for left, right in recover_merges(tokenizer.ranks, first=SHOWN_MERGES):
            ids = tokenizer.ranks[left], tokenizer.ranks[right], tokenizer.ranks[left + right]
            print(f"  {ids[2]:>6} = {ids[0]:>6} + {ids[1]:<6} {left!r} + {right!r} -> {left + right!r}")
    return 0
