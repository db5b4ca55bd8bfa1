"""Peak memory and throughput of `prepare` on a generated text file of a given size: the memory must not grow
with the corpus (issue 22, item 9: the text file is read in chunks, the workers are fed a bounded window).

Each size gets a text file of blank-line-separated paragraphs under --tmp (made of 2,000 distinct paragraphs
of common English words, each prefixed with its running number so no two documents are equal), then
`python -m scratchlm prepare` runs on it in a child process; its peak resident memory is the child's
`ru_maxrss` (the largest process: the main one with --workers 1) and MB/s is prepare's own figure (tokenizing
and writing; the fingerprinting pass before it not counted). The files are deleted afterwards.

    python bench/prepare_memory.py --sizes-mb 100 1024 --tokenizer r50k_base --workers 1
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WORDS = ("the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look "
         "more day could go come did number sound no most people my over know water than call first who may down "
         "side been now find")  # fmt: skip
WORDS = _WORDS.split()


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    paragraphs = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))).capitalize() + "." for _ in range(2000)
    ]
    written, number = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_bytes:
            block = "".join(f"{number + i}. {rng.choice(paragraphs)}\n\n" for i in range(1000))
            number += 1000
            f.write(block)
            written += len(block)
    return written


def run_prepare(corpus: Path, out: Path, tokenizer: str, workers: int) -> tuple[float, float, float]:
    """(peak RSS MiB of the largest process, prepare's MB/s, wall seconds) of one prepare in a child process."""
    command = [sys.executable, "-m", "scratchlm", "prepare", "--data", str(corpus), "--tokenizer", tokenizer,
               "--out", str(out), "--workers", str(workers), "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over the children so far
    rate = float(re.search(r"\(([\d.]+) MB/s", result.stdout).group(1))
    return peak_kib / 1024, rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024], help="corpus sizes, ascending")
    parser.add_argument("--tokenizer", default="r50k_base")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where the corpora and shards go")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; tokenizer {args.tokenizer}, "
          f"{args.workers} worker(s)")  # fmt: skip
    print(f"{'corpus MB':>10} {'peak RSS MiB':>13} {'MB/s':>7} {'wall s':>8}")
    folder = Path(tempfile.mkdtemp(prefix="prepare-memory-", dir=args.tmp))
    try:
        for size in sorted(args.sizes_mb):  # ascending: ru_maxrss is a running maximum over the children
            corpus = folder / f"corpus-{size}.txt"
            mb = write_corpus(corpus, size * 2**20) / 1e6
            peak, rate, wall = run_prepare(corpus, folder / f"shards-{size}", args.tokenizer, args.workers)
            print(f"{mb:10.0f} {peak:13.0f} {rate:7.2f} {wall:8.0f}", flush=True)
            corpus.unlink()
            shutil.rmtree(folder / f"shards-{size}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
