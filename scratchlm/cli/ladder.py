"""`python -m scratchlm ladder`: train every rung of the ladder on its fixed budget and write the results file.

python -m scratchlm ladder --seeds 0 1                        # the committed results (cpu budget, ~15 min, 1 thread)
python -m scratchlm ladder --budget smoke --out /tmp/l.json   # every rung in seconds
python -m scratchlm ladder --table --plot ladder.png          # print the committed table, draw its plot
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from scratchlm.cli.args import add_threads_argument
from scratchlm.errors import ConfigError
from scratchlm.files import check_writable
from scratchlm.ladder import (
    BUDGETS,
    RESULTS_PATH,
    RUNGS,
    LadderBudget,
    add_result,
    budget,
    check_same_budget,
    ladder_table,
    plot_ladder,
    read_ladder,
    run_ladder,
    write_ladder,
)
from scratchlm.ladder.budget import default_budget_name
from scratchlm.options import add_arguments, given_options
from scratchlm.runtime import THREADS_ENV, configure_threads, get_device, run_mode


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be >= 0, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ladder",
        help="train every lesson's model on one fixed budget and compare them in bits per byte",
        description=(
            "Train every rung of the ladder (the course's models, from the bigram table to the GPT with RoPE and "
            "grouped-query attention) with the same recipe on the same training bytes, score each on the same "
            "held-out text in bits per byte, and add each result to the results file (JSON) as it finishes: a new "
            "(rung, seed) is appended, a measured one replaced, so the file never loses a result, and an "
            "interrupted ladder leaves it with the finished runs added. A file of another budget is refused. "
            f"Without --out the cpu budget updates the committed file ({RESULTS_PATH.name} in the scratchlm.ladder "
            "package)."
        ),
    )
    p.add_argument("--seeds", type=_seed, nargs="+", default=[0, 1], metavar="SEED", help="seeds (default 0 1)")
    p.add_argument("--rungs", nargs="+", choices=RUNGS, metavar="RUNG", help=f"rungs (default all: {', '.join(RUNGS)})")
    p.add_argument(
        "--budget",
        choices=tuple(BUDGETS),
        help="the budget (default: gpu on a GPU, smoke with SCRATCHLM_SMOKE=1, else cpu)",
    )
    p.add_argument("--out", metavar="FILE", help="results file to write (default: the committed file, cpu budget only)")
    p.add_argument(
        "--table", action="store_true", help="train nothing: print the table of --out (or the committed file)"
    )
    p.add_argument("--plot", metavar="PNG", help="also draw the plot into this image file")
    add_threads_argument(p, "one")
    p.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    add_arguments(p, LadderBudget, title="budget settings (override the budget's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = given_options(args, LadderBudget)
    if args.table:
        if overrides or args.rungs or args.budget:
            raise ConfigError("--table reads a results file; it takes no --budget, --rungs or budget settings")
        results = read_ladder(args.out)
        print(ladder_table(results))
        _plot(results, args.plot)
        return 0
    device = get_device(args.device)
    name = args.budget or default_budget_name(run_mode(device))
    chosen = budget(name, **overrides)
    if args.out is None and (name != "cpu" or overrides or args.rungs):
        raise ConfigError(
            "the committed results file holds the whole cpu budget: pass --out FILE for another budget, "
            "overridden settings or a subset of rungs"
        )
    out = check_writable(args.out if args.out is not None else RESULTS_PATH)  # a folder fails now, not after training
    results = read_ladder(out) if out.exists() else []  # a damaged file is refused before training, never replaced
    check_same_budget(results, chosen.to_dict(), out)
    threads = configure_threads(args.threads or (None if os.environ.get(THREADS_ENV) else 1))
    rungs = args.rungs or RUNGS
    kept = f" (adding to its {len(results)} result(s))" if results else ""
    print(
        f"ladder: {len(rungs)} rungs x seeds {' '.join(map(str, args.seeds))} on budget "
        f"'{name}{' (changed)' if overrides else ''}', {device} ({threads} thread(s)); results in {out}{kept}"
    )

    def save(result: dict) -> None:
        nonlocal results
        results = add_result(results, result)  # never shorter: an interrupted ladder keeps what it finished
        write_ladder(results, out)

    start = time.perf_counter()
    done = run_ladder(args.seeds, rungs, chosen, device=device, on_result=save)
    print(f"{len(done)} runs in {time.perf_counter() - start:.0f} s\n")
    print(ladder_table(results))
    _plot(results, args.plot)
    return 0


def _plot(results: list[dict], path: str | None) -> None:
    if path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot_ladder(results)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)
    print(f"plot: {path}")
