"""The test run's defaults for the notebooks: smoke mode, a time budget, and a cell timeout that says so.

It lives at the repository root because pytest calls a conftest's per-test hooks only for tests below it.

Smoke mode is the default of a test run: `pytest`, as the README writes it, sets SCRATCHLM_SMOKE=1 unless the
environment already sets it, so every lesson runs with its smallest sizes (seconds). To run the lessons at full
size under pytest, as a reader's machine would, say so: `SCRATCHLM_SMOKE=0 pytest notebooks/` (allow hours on a
CPU; the smoke budget below then does not apply).

nbval runs each notebook cell as a test item; we add up the time of a notebook's items and fail the session if a
lesson takes longer than its budget in smoke mode, so CI stays fast as lessons grow. Notebook cells are exempt
from pytest-timeout's per-test limit: nbval times each cell itself (--nbval-cell-timeout). When a cell runs past
it, nbval interrupts the kernel (SIGINT); a training loop turns that into its own Ctrl-C handling (checkpoint,
then `TrainingInterrupted`), so nbval, which names a timeout only for a bare KeyboardInterrupt, would report an
ordinary exception. `pytest_runtest_makereport` below says first that the cell timed out.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

from scratchlm.runtime import SMOKE_ENV

NOTEBOOK_BUDGET_S = 60.0  # smoke mode, per lesson

os.environ.setdefault(SMOKE_ENV, "1")  # before any kernel starts: the notebooks' kernels inherit it

_notebook_seconds: dict[str, float] = defaultdict(float)
_TIMED_OUT_BEFORE = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # a cell is limited by --nbval-cell-timeout; pytest-timeout's per-test `timeout` (pyproject.toml) is for unit tests
    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.timeout(0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    item.stash[_TIMED_OUT_BEFORE] = getattr(item.parent, "timed_out", False)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A notebook cell that ran past --nbval-cell-timeout fails as a timeout, whatever the interrupted code raised
    (nbval marks its notebook `timed_out` when it had to interrupt the kernel)."""
    outcome = yield
    report = outcome.get_result()
    timed_out = getattr(item.parent, "timed_out", False) and not item.stash.get(_TIMED_OUT_BEFORE, True)
    if report.failed and call.when == "call" and timed_out:
        limit = float(item.config.getoption("nbval_cell_timeout"))
        report.longrepr = (
            f"Timeout: the cell ran past --nbval-cell-timeout={limit:g} s and nbval interrupted its kernel "
            f"(what the interrupted code raised follows)\n{report.longrepr}"
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def _over_budget() -> dict[str, float]:
    if os.environ.get("SCRATCHLM_SMOKE") != "1":
        return {}
    return {nb: s for nb, s in _notebook_seconds.items() if s > NOTEBOOK_BUDGET_S}


def pytest_terminal_summary(terminalreporter) -> None:
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times")
    for nb, seconds in sorted(_notebook_seconds.items()):
        terminalreporter.write_line(f"{nb}: {seconds:.1f} s")
    if over := _over_budget():
        terminalreporter.write_line(
            f"FAILED: over the {NOTEBOOK_BUDGET_S:.0f} s smoke-mode budget: {', '.join(over)}", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _over_budget():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
