"""`python -m scratchlm prepare`: tokenize a corpus, in parallel, into token shards plus a JSON index.

    python -m scratchlm prepare --data python-stdlib --tokenizer r50k_base --out runs/stdlib-r50k
    python -m scratchlm prepare --data my_texts/ --tokenizer runs/bpe.txt --out runs/mine --workers 8

The flags come from `PrepareConfig`'s fields (`scratchlm.options`).
"""

from __future__ import annotations

import argparse
import dataclasses

from scratchlm.options import add_arguments, given_options
from scratchlm.pretraining.shards import PrepareConfig, prepare


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="tokenize a corpus into token shards for pretrain",
        description=(
            "Tokenize a text file, a folder of text files or a registered corpus (python-stdlib: the standard "
            "library's source, the offline default; tinyshakespeare; hf:NAME with `datasets` installed) with "
            "worker processes into fixed-size token shards (uint16 when the vocabulary fits, else uint32), a "
            "train/val split by document, curation (exact and near duplicates, generated files and validation "
            "documents overlapping training dropped, unless --no-curate) and index.json (tokens per shard, "
            "sha256s, the tokenizer's hash). "
            "Running it again on the same input does nothing; a shard that no longer matches its index is an error."
        ),
    )
    add_arguments(p, PrepareConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = PrepareConfig(**given_options(args, PrepareConfig))
    index, stats = prepare(**dataclasses.asdict(config))
    splits = index.index["splits"]
    summary = ", ".join(
        f"{name} {s['tokens']:,} tokens in {len(s['shards'])} shard(s) from {s['documents']:,} documents"
        for name, s in splits.items()
    )
    curation = index.index.get("curation")
    if curation is not None and not stats.up_to_date:
        dropped = [f"{c['documents']} {reason.replace('_', ' ')} ({c['bytes'] / 1e6:.2f} MB)"
                   for reason, c in curation["dropped"].items() if c["documents"]]  # fmt: skip
        print(f"curation dropped {', '.join(dropped) or 'nothing'} (every one listed in index.json)")
    if stats.up_to_date:
        print(f"{config.out_dir} is up to date (shards verified): {summary}")
    else:
        mb = index.index["source"]["bytes"] / 1e6
        print(
            f"tokenized {mb:.1f} MB in {stats.seconds:.1f} s ({stats.mb_per_s:.2f} MB/s, {stats.workers} workers, "
            f"{index.dtype.name}): {summary}; index in {config.out_dir}/index.json"
        )
    return 0
