"""The ladder's committed results and how they are shown: the results file, a table, a plot.

The committed file (`RESULTS_PATH`, inside the package so that an editable install of a fresh clone finds it)
holds the results of `python -m scratchlm ladder`. A lesson ends with `show_ladder(highlight=..., measured=...)`:
the committed table with the lesson's rungs marked and its freshly measured values beside the committed ones,
and the same as a plot.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scratchlm.errors import ConfigError, DataError
from scratchlm.files import atomic_write
from scratchlm.ladder.rungs import RUNGS, get_rung

RESULTS_PATH = Path(__file__).with_name("results.json")
REGENERATE = "python -m scratchlm ladder --seeds 0 1"
_FORMAT = 1


def write_ladder(results: Sequence[dict[str, Any]], path: str | Path | None = None) -> Path:
    """Write `results` (a list of `run_rung` dicts) to `path` (default: the committed file), atomically."""
    path = Path(path) if path is not None else RESULTS_PATH
    for r in results:
        get_rung(r.get("rung", "?"))
    document = {
        "about": "The ladder: every rung on one fixed budget, bits per byte on the same held-out text "
        f"(scratchlm.ladder). Regenerate with: {REGENERATE}",
        "format": _FORMAT,
        "results": list(results),
    }
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    return path


def add_result(results: Sequence[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """`results` with `result` added: a fresh measurement of a (rung, seed) already there takes its place, any
    other is appended. The list never gets shorter, so a file rewritten after each rung only ever gains."""
    key = (result["rung"], result["seed"])
    kept = [r for r in results if (r.get("rung"), r.get("seed")) != key]
    if len(kept) == len(results):
        return [*results, result]
    return [result if (r.get("rung"), r.get("seed")) == key else r for r in results]


def check_same_budget(results: Sequence[dict[str, Any]], budget_config: dict[str, Any], path: str | Path) -> None:
    """Refuse (`ConfigError`) to add results of `budget_config` to a file holding results of another budget:
    their bits per byte are not comparable, and a table of both would mix them."""
    other = next((r for r in results if r.get("budget_config") != budget_config), None)
    if other is not None:
        theirs = other.get("budget_config") or {}
        changed = sorted(k for k in set(theirs) | set(budget_config) if theirs.get(k) != budget_config.get(k))
        raise ConfigError(
            f"{path} holds ladder results of another budget (they differ in {', '.join(changed) or 'budget'}); "
            "choose another --out for this one"
        )


def read_ladder(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The results in `path` (default: the committed file). A missing or unreadable file is a `DataError`
    that says which command makes it."""
    path = Path(path) if path is not None else RESULTS_PATH
    if not path.is_file():
        raise DataError(
            f"no ladder results at {path}: make them with `{REGENERATE}` (about 20 minutes on one CPU thread; "
            f"add `--budget smoke --out FILE` for a quick look in seconds)"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        results = document["results"]
        if document.get("format") != _FORMAT or not isinstance(results, list):
            raise ValueError(f"format {document.get('format')!r}, expected {_FORMAT}")
        for r in results:
            get_rung(r["rung"])
            float(r["bits_per_byte"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a ladder results file ({e}); regenerate it with `{REGENERATE}`") from None
    return results


def _by_rung(results: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Results grouped by rung, in ladder order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        get_rung(r["rung"])
        groups.setdefault(r["rung"], []).append(r)
    return {name: groups[name] for name in RUNGS if name in groups}


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-range): the band a table's "±" and a plot's error bar show."""
    return statistics.fmean(values), (max(values) - min(values)) / 2


def _mean_pm(values: Sequence[float], digits: int = 3) -> str:
    mean, half = _spread(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def _budget_line(results: Sequence[dict[str, Any]]) -> str:
    first = results[0]
    b = first["budget_config"]
    seeds = sorted({r["seed"] for r in results})
    threads = sorted({r["threads"] for r in results})
    return (
        f"budget '{first['budget']}': {b['max_iters']} steps x {b['batch_size']} sequences x {b['block_size']} "
        f"bytes = {b['max_iters'] * b['batch_size'] * b['block_size']:,} training bytes per rung; bits per byte "
        f"on {first['heldout_bytes']:,} held-out bytes; seeds {', '.join(map(str, seeds))}; "
        f"{first['device']}, {'/'.join(map(str, threads))} thread(s)"
    )


def ladder_table(
    results: Sequence[dict[str, Any]],
    highlight: Iterable[str] = (),
    measured: Sequence[dict[str, Any]] = (),
) -> str:
    """A printable table, one row per rung in ladder order: mean ± half-range across seeds of bits per byte and
    val loss (nats per token of the rung's own tokenizer), parameters, training seconds. Rungs in `highlight`
    are marked ▶; `measured` results (fresh runs) get a column beside the committed value."""
    if not results:
        raise DataError(f"no ladder results to show: make them with `{REGENERATE}`")
    highlight = set(highlight)
    for name in highlight:
        get_rung(name)
    groups, fresh = _by_rung(results), _by_rung(measured)
    committed_budget = results[0]["budget"]
    head = f"  {'rung':<21}{'lesson':>6}{'params':>10}  {'bits/byte':>15}  {'val nats/tok':>15}{'train s':>9}"
    if fresh:
        head += f"  {'measured now':>20}"
    lines = [_budget_line(results), "", head, "  " + "-" * (len(head) - 2)]
    for name in RUNGS:
        if name not in groups and name not in fresh:
            continue
        runs = groups.get(name, [])
        mark = "▶ " if name in highlight else "  "
        if runs:
            line = (
                f"{mark}{name:<21}{runs[0]['lesson']:>6}{runs[0]['params']:>10,}  "
                f"{_mean_pm([r['bits_per_byte'] for r in runs]):>15}  {_mean_pm([r['val_loss'] for r in runs]):>15}"
                f"{statistics.fmean(r['seconds'] for r in runs):>9.1f}"
            )
        else:
            line = f"{mark}{name:<21}{get_rung(name).lesson:>6}{'':>10}  {'(not run)':>15}  {'':>15}{'':>9}"
        if name in fresh:
            now = fresh[name]
            budgets = {r["budget"] for r in now}
            tag = "" if budgets == {committed_budget} else f" ({'/'.join(sorted(budgets))})"
            line += f"  {_mean_pm([r['bits_per_byte'] for r in now]) + tag:>20}"
        lines.append(line)
    if fresh and any(r["budget"] != committed_budget for r in measured):
        lines.append(
            f"\n(measured now on another budget than the committed '{committed_budget}' one: not comparable; "
            "run without SCRATCHLM_SMOKE for the committed budget)"
        )
    return "\n".join(lines)


def _rungs_up_to(names: Iterable[str], lesson: str | None) -> list[str]:
    """The rungs (in ladder order) built in lessons up to `lesson` ("09"); all of them when `lesson` is None."""
    return [n for n in names if lesson is None or get_rung(n).lesson <= lesson]


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the seed ranges [min, max] of two rungs overlap: the difference of their means is then a tie."""
    return min(a) <= max(b) and min(b) <= max(a)


def plot_ladder(
    results: Sequence[dict[str, Any]],
    highlight: Iterable[str] = (),
    measured: Sequence[dict[str, Any]] = (),
    ax: Any = None,
    up_to_lesson: str | None = None,
):
    """Bits per byte of every rung (of the lessons up to `up_to_lesson`, if given), one row each in ladder order:
    every seed's value as a dot, the line between them the seeds' range, the mean as a bar; highlighted rungs in
    colour; freshly `measured` values as crosses just above their row. Each row's numbers are written in a column
    to the right of the axes (never under a marker): mean ± half-range, "≈" when the row's seed range overlaps
    the row above it (a difference within the seed spread: a tie), and the measured value. The axis spans the
    data, not 0. Returns the Axes (a new figure when `ax` is None)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    highlight = set(highlight)
    groups, fresh = _by_rung(results), _by_rung(measured)
    names = _rungs_up_to([n for n in RUNGS if n in groups or n in fresh], up_to_lesson)
    if not names:
        raise DataError(f"no ladder results to plot: make them with `{REGENERATE}`")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.9), layout="constrained")
    ys = list(range(len(names)))[::-1]  # the first rung at the top
    values_seen: list[float] = []
    previous: list[float] | None = None
    for y, name in zip(ys, names, strict=True):
        color = "tab:orange" if name in highlight else "tab:blue"
        label = ""
        runs = groups.get(name)
        if runs:
            values = [r["bits_per_byte"] for r in runs]
            mean, half = _spread(values)
            ax.plot([min(values), max(values)], [y, y], color=color, lw=2.5, alpha=0.6, solid_capstyle="butt")
            ax.plot(values, [y] * len(values), "o", color=color, ms=5)
            ax.plot([mean, mean], [y - 0.25, y + 0.25], color="black", lw=1.5)
            label = f"{mean:.3f} ± {half:.3f}" if len(values) > 1 else f"{mean:.3f}"
            if previous is not None and len(values) > 1 and _overlap(values, previous):
                label += "  ≈ above"
            previous = values
            values_seen += values
        if name in fresh:
            now = [r["bits_per_byte"] for r in fresh[name]]
            ax.plot(now, [y + 0.3] * len(now), "kx", ms=7, mew=1.5)
            label += ("   " if label else "") + "now " + "/".join(f"{v:.3f}" for v in now)
            values_seen += now
        ax.annotate(label, xy=(1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    low, high = min(values_seen), max(values_seen)
    pad = max(0.05 * (high - low), 0.02)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.6, len(names) - 0.3)
    ax.set_yticks(ys, [f"{n} ({get_rung(n).lesson})" for n in names])
    ax.set_xlabel("held-out bits per byte (lower is better; the axis spans the data, not 0)")
    ax.set_ylabel("rung (lesson)")
    b = (results or measured)[0]
    seeds = len({r["seed"] for r in results if r["rung"] in names}) or 1  # of the rungs shown
    scope = f", lessons up to {up_to_lesson}" if up_to_lesson is not None else ""
    ax.set_title(f"The ladder: every rung on one budget ('{b['budget']}', {seeds} seeds{scope})")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], color="tab:blue", marker="o", lw=2.5, alpha=0.8, label="one dot per seed, line: their range"),
        Line2D([], [], color="black", marker="|", ls="none", ms=10, label="mean of the seeds"),
    ]
    if highlight:
        handles.append(Line2D([], [], color="tab:orange", marker="o", lw=2.5, label="this lesson's rungs"))
    if fresh:
        handles.append(Line2D([], [], color="black", marker="x", ls="none", ms=7, label="measured now"))
    # below the x-axis label at a fixed distance in points, whatever the figure's height
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-34, units="points")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=len(handles),
              fontsize=8)  # fmt: skip
    return ax


def show_ladder(
    highlight: Iterable[str] = (),
    measured: Sequence[dict[str, Any]] = (),
    results: Sequence[dict[str, Any]] | None = None,
    path: str | Path | None = None,
) -> None:
    """For the end of a lesson: print the committed ladder table with the `highlight`ed rungs marked and the
    `measured` results beside the committed ones, and draw the plot of the rungs up to the latest highlighted
    rung's lesson (rungs of later lessons are the table's).

    results: the committed results to show (default: `read_ladder(path)`). Where no committed file exists (an
    installation without the repository's files) the measured results are shown alone, with a note saying
    which command makes the file; with nothing measured either, that is a `DataError`.
    """
    import matplotlib.pyplot as plt

    highlight = list(highlight)
    measured = list(measured)
    if results is None:
        try:
            results = read_ladder(path)
        except DataError as e:
            if not measured:
                raise
            print(f"{e}\nShowing only the results measured now.")
            results = []
    if results:
        print(ladder_table(results, highlight, measured))
    else:
        print(ladder_table(measured, highlight))
    up_to = max((get_rung(n).lesson for n in highlight), default=None)
    plot_ladder(results, highlight, measured, up_to_lesson=up_to)
    plt.show()


def mean_bits_per_byte(results: Sequence[dict[str, Any]], rung: str) -> float:
    """Mean bits per byte of `rung` across the seeds in `results` (NaN if it is not there)."""
    values = [r["bits_per_byte"] for r in results if r["rung"] == rung]
    return statistics.fmean(values) if values else math.nan
