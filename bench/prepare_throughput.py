"""Tokenization throughput of `prepare` (MB of UTF-8 text per second) against the number of worker processes.

The corpus is python-stdlib (the standard library's source, about 12 MB) with GPT-2's r50k_base by default, each
run into a fresh temporary folder; the time is prepare's own (tokenizing and writing shards; the fingerprinting
pass before it is not counted). Runs alternate between worker counts, and the best of --repeats is reported with
the median. The output is the same for every worker count (checked: the shard sha256s are compared).

    python bench/prepare_throughput.py                       # workers 1 and 2, 3 repeats
    python bench/prepare_throughput.py --workers 1 2 4 8 16  # on a bigger machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from scratchlm.pretraining.shards import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="python-stdlib", help="corpus (default python-stdlib)")
    parser.add_argument("--tokenizer", default="r50k_base", help="tokenizer spec (default r50k_base)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count (default 3)")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; corpus {args.data}, tokenizer {args.tokenizer}"
    )
    rates: dict[int, list[float]] = {w: [] for w in args.workers}
    shards: dict[int, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for workers in args.workers:
                out = Path(tmp) / f"w{workers}-{repeat}"
                index, stats = prepare(args.data, args.tokenizer, out, workers=workers, progress=False)
                rates[workers].append(stats.mb_per_s)
                shards.setdefault(workers, index.index["splits"])
    size = index.index["source"]["bytes"] / 1e6
    same = all(s == shards[args.workers[0]] for s in shards.values())
    print(
        f"{size:.1f} MB, {index.tokens('train') + index.tokens('val'):,} tokens; "
        f"same shards for every worker count: {same}"
    )
    base = max(rates[args.workers[0]])
    print(f"{'workers':>8} {'best MB/s':>10} {'median MB/s':>12} {'speed-up':>9}")
    for workers, r in rates.items():
        print(f"{workers:>8} {max(r):10.2f} {statistics.median(r):12.2f} {max(r) / base:8.2f}x")


if __name__ == "__main__":
    main()
