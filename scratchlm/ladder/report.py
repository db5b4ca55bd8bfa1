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


def plot_ladder(
    results: Sequence[dict[str, Any]],
    highlight: Iterable[str] = (),
    measured: Sequence[dict[str, Any]] = (),
    ax: Any = None,
):
    """Bits per byte of every rung as horizontal bars from 0 (mean across seeds; the black line spans the
    seeds' lowest to highest), highlighted rungs in colour, freshly `measured` values as markers. Returns the
    Axes (a new figure when `ax` is None)."""
    import matplotlib.pyplot as plt

    highlight = set(highlight)
    groups, fresh = _by_rung(results), _by_rung(measured)
    names = [n for n in RUNGS if n in groups or n in fresh]
    if not names:
        raise DataError(f"no ladder results to plot: make them with `{REGENERATE}`")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.42 * len(names) + 1.6), layout="constrained")
    ys = list(range(len(names)))[::-1]  # the first rung at the top
    top = 0.0
    for y, name in zip(ys, names, strict=True):
        runs = groups.get(name)
        if not runs:
            continue
        values = [r["bits_per_byte"] for r in runs]
        mean = statistics.fmean(values)
        color = "tab:orange" if name in highlight else "tab:blue"
        ax.barh(y, mean, color=color, alpha=0.85, height=0.7)
        if len(values) > 1:
            ax.plot([min(values), max(values)], [y, y], color="black", lw=1.5)
        ax.text(max(values) + 0.03, y, f"{mean:.3f}", va="center", fontsize=8)
        top = max(top, max(values))
    for y, name in zip(ys, names, strict=True):
        if name in fresh:
            values = [r["bits_per_byte"] for r in fresh[name]]
            ax.plot(values, [y] * len(values), "kX", ms=8)
            top = max(top, max(values))
    ax.set_yticks(ys, [f"{n} ({get_rung(n).lesson})" for n in names])
    ax.set_xlim(0, top * 1.3 if top > 0 else 1)
    ax.set_xlabel("held-out bits per byte (lower is better; axis from 0)")
    ax.set_ylabel("rung (lesson)")
    b = (results or measured)[0]
    ax.set_title(
        f"The ladder: every rung on one budget ('{b['budget']}', {len({r['seed'] for r in results}) or 1} seeds)"
    )
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:blue", alpha=0.85, label="mean of seeds (line: their range)")]
    if highlight:
        handles.append(Patch(color="tab:orange", alpha=0.85, label="this lesson's rungs"))
    if fresh:
        (marker,) = ax.plot([], [], "kX", ms=8, label="measured now")
        handles.append(marker)
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.95)
    return ax


def show_ladder(
    highlight: Iterable[str] = (),
    measured: Sequence[dict[str, Any]] = (),
    results: Sequence[dict[str, Any]] | None = None,
    path: str | Path | None = None,
) -> None:
    """For the end of a lesson: print the committed ladder table with the `highlight`ed rungs marked and the
    `measured` results beside the committed ones, and draw the plot.

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
    plot_ladder(results, highlight, measured)
    plt.show()


def mean_bits_per_byte(results: Sequence[dict[str, Any]], rung: str) -> float:
    """Mean bits per byte of `rung` across the seeds in `results` (NaN if it is not there)."""
    values = [r["bits_per_byte"] for r in results if r["rung"] == rung]
    return statistics.fmean(values) if values else math.nan
